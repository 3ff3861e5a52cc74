import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueueKeys } from '../../producer/redis.js';
import type { RateTracker } from './rates.js';

/** One operation as the Operations page shows it. */
export interface OperationView {
  id: string;
  kind: string;
  table: string;
  state: string;
  rowsDone: number;
  totalRows?: number;
  chunksDone: number;
  totalChunks?: number;
  retries: number;
  createdAt?: number;
  startedAt?: number;
  finishedAt?: number;
  /** Recent rate while running (else the average from start to end). */
  rowsPerSec?: number;
  /** Seconds left at the current rate, while running and the total is known. */
  etaSec?: number;
  /** Names of the workers running its jobs right now (BullMQ processedBy of active jobs). */
  workers: string[];
  error?: { code: string; message: string };
}

const FIELDS = [
  'kind',
  'table',
  'state',
  'rowsDone',
  'chunksDone',
  'totalRows',
  'totalChunks',
  'retries',
  'createdAt',
  'startedAt',
  'finishedAt',
  'error',
] as const;

function num(v: string | null | undefined): number | undefined {
  return v === null || v === undefined || v === '' ? undefined : Number(v);
}

function parseError(raw: string | null | undefined): OperationView['error'] {
  if (!raw) return undefined;
  try {
    const e = JSON.parse(raw) as { code?: unknown; message?: unknown };
    return { code: String(e.code ?? 'UNKNOWN'), message: String(e.message ?? '') };
  } catch {
    return { code: 'UNKNOWN', message: raw };
  }
}

/** Active jobs' workers, grouped by operation id (chunk ids are `<op>-c<n>`, parents `<op>`). */
async function activeWorkers(redis: Redis, queue: Queue): Promise<Map<string, Set<string>>> {
  const ids = await redis.lrange(queue.keys.active!, 0, 999);
  const out = new Map<string, Set<string>>();
  if (ids.length === 0) return out;
  const pipe = redis.pipeline();
  // BullMQ keeps a job's processedBy in the field 'pb' of its hash (Job.fromJSON reads it).
  for (const id of ids) pipe.hmget(queue.toKey(id), 'pb', 'processedBy');
  const res = (await pipe.exec()) ?? [];
  ids.forEach((id, i) => {
    const [pb, processedBy] = (res[i]?.[1] ?? []) as (string | null)[];
    const by = pb || processedBy;
    if (!by) return;
    const op = id.replace(/-(c\d+|seal)$/, '');
    const set = out.get(op) ?? new Set<string>();
    set.add(by);
    out.set(op, set);
  });
  return out;
}

function view(
  id: string,
  h: (string | null)[],
  workers: Set<string> | undefined,
  rates: RateTracker,
  now: number,
): OperationView {
  const f = Object.fromEntries(FIELDS.map((k, i) => [k, h[i]])) as Record<
    (typeof FIELDS)[number],
    string | null | undefined
  >;
  const v: OperationView = {
    id,
    kind: f.kind ?? '',
    table: f.table ?? '',
    state: f.state ?? 'unknown',
    rowsDone: num(f.rowsDone) ?? 0,
    chunksDone: num(f.chunksDone) ?? 0,
    retries: num(f.retries) ?? 0,
    workers: [...(workers ?? [])].sort(),
  };
  const opt = {
    totalRows: num(f.totalRows),
    totalChunks: num(f.totalChunks),
    createdAt: num(f.createdAt),
    startedAt: num(f.startedAt),
    finishedAt: num(f.finishedAt),
  };
  for (const [k, x] of Object.entries(opt))
    if (x !== undefined) (v as unknown as Record<string, number>)[k] = x;
  const error = parseError(f.error);
  if (error) v.error = error;
  const running =
    v.finishedAt === undefined && !['completed', 'failed', 'cancelled'].includes(v.state);
  const since = v.startedAt ?? v.createdAt;
  if (running) {
    const recent = rates.sample(id, v.rowsDone, now);
    const average = since && now > since ? (v.rowsDone * 1000) / (now - since) : undefined;
    const rate = recent ?? average;
    if (rate !== undefined) v.rowsPerSec = Math.round(rate);
    if (rate && v.totalRows !== undefined)
      v.etaSec = Math.max(0, Math.ceil((v.totalRows - v.rowsDone) / rate));
  } else if (since && v.finishedAt && v.finishedAt > since) {
    v.rowsPerSec = Math.round((v.rowsDone * 1000) / (v.finishedAt - since));
  }
  return v;
}

/** The `limit` most recent operations of the queue, newest first. */
export async function readOperations(
  redis: Redis,
  keys: QueueKeys,
  queue: Queue,
  rates: RateTracker,
  limit = 200,
): Promise<OperationView[]> {
  const ids = await redis.zrevrange(keys.ops, 0, limit - 1);
  const pipe = redis.pipeline();
  for (const id of ids) pipe.hmget(keys.op(id), ...FIELDS);
  const [res, workers] = await Promise.all([pipe.exec(), activeWorkers(redis, queue)]);
  const now = Date.now();
  const out: OperationView[] = [];
  ids.forEach((id, i) => {
    const h = res?.[i]?.[1] as (string | null)[] | undefined;
    if (!h || h.every((x) => x === null)) return; // hash expired or removed
    out.push(view(id, h, workers.get(id), rates, now));
  });
  rates.keepOnly(new Set(out.filter((o) => o.finishedAt === undefined).map((o) => o.id)));
  return out;
}
