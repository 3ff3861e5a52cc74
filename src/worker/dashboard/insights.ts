import { Job } from 'bullmq';
import { jobIds } from '../../queue/keys.js';
import type { ChunkJobReturn } from '../../queue/payload.js';
import type { OpRecord, QueueState } from '../../queue/state.js';
import { decodeValue } from '../../queue/values.js';

/**
 * What the dashboard's charts, worker table and operation page show, from data the workers
 * already record: progress events (rows committed, with their time), BullMQ's jobs (who ran a
 * chunk, when, how long, how many attempts, why it failed) and BullMQ's worker list. Job
 * counts over time are sampled by the dashboard itself (history starts when it starts).
 */

/** The BullMQ queue methods read here (a LenientQueue, on either backend). */
export interface QueueReader {
  readonly name: string;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  getJobs(types: string[], start?: number, end?: number, asc?: boolean): Promise<Job[]>;
  getWorkers(): Promise<Record<string, string>[]>;
}

export const WINDOW_MS = 3600_000;
export const BUCKET_MS = 10_000;
const SAMPLE_MS = 5_000;
/** How long a vanished worker stays listed (as gone). */
const GONE_SHOWN_MS = 10 * 60_000;
const STATES = ['waiting', 'active', 'completed', 'failed', 'delayed', 'waiting-children'];

/**
 * Rows committed per second from progress events, in buckets: by default 10 s buckets over the
 * last hour; for one operation, `from`-`to` in about 60 buckets (at least 1 s each).
 */
export function rowsPerSecond(
  events: { time: number; operationId: string; rowsDone: number }[],
  now: number,
  operationId?: string,
  window?: { from: number; to: number },
): [number, number][] {
  const bucket = window
    ? Math.max(1000, Math.ceil((window.to - window.from) / 60 / 1000) * 1000)
    : BUCKET_MS;
  const start = Math.floor((window ? window.from : now - WINDOW_MS) / bucket) * bucket;
  const end = window ? window.to : now;
  const n = Math.max(1, Math.ceil((end - start) / bucket));
  const rows = new Array<number>(n).fill(0);
  const last = new Map<string, number>();
  for (const e of [...events].sort((a, b) => a.time - b.time)) {
    if (operationId !== undefined && e.operationId !== operationId) continue;
    const before = last.get(e.operationId) ?? 0;
    last.set(e.operationId, Math.max(before, e.rowsDone));
    const delta = e.rowsDone - before;
    const b = Math.floor((e.time - start) / bucket);
    if (delta > 0 && b >= 0 && b < n) rows[b]! += delta;
  }
  return rows.map((r, i) => [start + i * bucket, r / (bucket / 1000)]);
}

/** The progress events of the queues' recent stream, decoded. */
export async function progressEvents(
  states: readonly QueueState[],
  count = 5000,
): Promise<{ time: number; operationId: string; rowsDone: number }[]> {
  const lists = await Promise.all(states.map((s) => s.recentEvents(count).catch(() => [])));
  const out: { time: number; operationId: string; rowsDone: number }[] = [];
  for (const list of lists)
    for (const e of list) {
      if (e.name !== 'progress') continue;
      try {
        const v = decodeValue(JSON.parse(e.data), 'progress') as { rowsDone?: unknown };
        if (typeof v?.rowsDone === 'number')
          out.push({ time: e.time, operationId: e.operationId, rowsDone: v.rowsDone });
      } catch {
        // an event this version cannot read: left out of the chart
      }
    }
  return out;
}

export interface JobSample {
  time: number;
  counts: Record<string, number>;
  /** Job attempts retried so far, over the recent operations (their `retries`). */
  retries: number;
}

/** Job counts by state, every 5 s, over the last hour (while the dashboard runs). */
export class JobSampler {
  readonly samples: JobSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly queues: readonly QueueReader[],
    private readonly retries: () => Promise<number>,
  ) {}

  start(): void {
    const tick = () => {
      void this.sample().catch(() => {});
    };
    tick();
    this.timer = setInterval(tick, SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async sample(): Promise<void> {
    const counts: Record<string, number> = {};
    for (const q of this.queues) {
      const c = await q.getJobCounts(...STATES);
      for (const [k, v] of Object.entries(c)) counts[k] = (counts[k] ?? 0) + (v ?? 0);
    }
    const retries = await this.retries().catch(() => 0);
    const now = Date.now();
    this.samples.push({ time: now, counts, retries });
    while (this.samples.length > 0 && this.samples[0]!.time < now - WINDOW_MS) this.samples.shift();
  }
}

export interface WorkerView {
  name: string;
  host: string;
  pid: string;
  queues: string[];
  /** Rows its chunk jobs committed in the last minute, per second. */
  rowsPerSec: number;
  /** The chunks it runs now (job ids). */
  running: string[];
  /** Epoch ms it was last seen: connected (BullMQ's list) or finishing a job. */
  lastSeen: number | undefined;
  /** connected, busy for a while without finishing anything (stuck?), or gone. */
  status: 'ok' | 'stuck' | 'gone';
}

/** One row per worker process: from BullMQ's worker list and the jobs it ran lately. */
export async function readWorkers(
  queues: readonly QueueReader[],
  now: number,
  stuckAfterMs = 120_000,
): Promise<WorkerView[]> {
  const by = new Map<string, WorkerView & { busySince?: number; lastDone?: number }>();
  const get = (name: string) => {
    let w = by.get(name);
    if (!w) {
      const m = /^(.*):(\d+)$/.exec(name);
      w = {
        name,
        host: m ? m[1]! : name,
        pid: m ? m[2]! : '',
        queues: [],
        rowsPerSec: 0,
        running: [],
        lastSeen: undefined,
        status: 'gone',
      };
      by.set(name, w);
    }
    return w;
  };
  for (const q of queues) {
    const connected = await q.getWorkers().catch(() => []);
    for (const c of connected) {
      // BullMQ names a worker's connection <prefix>:<queue>:w:<worker name>.
      const raw = c.rawname ?? '';
      const at = raw.indexOf(':w:');
      const name = at >= 0 ? raw.slice(at + 3) : '';
      if (!name) continue;
      const w = get(name);
      if (!w.queues.includes(q.name)) w.queues.push(q.name);
      w.status = 'ok';
      const idle = Number(c.idle);
      w.lastSeen = Math.max(w.lastSeen ?? 0, Number.isFinite(idle) ? now - idle * 1000 : now);
    }
    const [active, done] = await Promise.all([
      q.getJobs(['active'], 0, 199).catch(() => [] as Job[]),
      q.getJobs(['completed'], 0, 499).catch(() => [] as Job[]),
    ]);
    for (const j of active) {
      if (!j?.processedBy) continue;
      const w = get(j.processedBy);
      if (!w.queues.includes(q.name)) w.queues.push(q.name);
      if (j.id) w.running.push(j.id);
      w.busySince = Math.min(w.busySince ?? now, j.processedOn ?? now);
    }
    for (const j of done) {
      if (!j?.processedBy || !j.finishedOn) continue;
      const w = get(j.processedBy);
      if (!w.queues.includes(q.name)) w.queues.push(q.name);
      w.lastDone = Math.max(w.lastDone ?? 0, j.finishedOn);
      w.lastSeen = Math.max(w.lastSeen ?? 0, j.finishedOn);
      const count = (j.returnvalue as { count?: unknown } | null)?.count;
      if (j.name === 'chunk' && typeof count === 'number' && j.finishedOn > now - 60_000)
        w.rowsPerSec += count / 60;
    }
  }
  const out = [...by.values()].map(({ busySince, lastDone, ...w }) => {
    if (
      w.status === 'ok' &&
      busySince !== undefined &&
      now - busySince > stuckAfterMs &&
      (lastDone === undefined || now - lastDone > stuckAfterMs)
    )
      w.status = 'stuck';
    w.rowsPerSec = Math.round(w.rowsPerSec);
    return w;
  });
  // A worker gone a while ago (seen only in old completed jobs) is not worth a row.
  return out
    .filter((w) => w.status !== 'gone' || (w.lastSeen ?? 0) > now - GONE_SHOWN_MS)
    .sort((a, b) => a.name.localeCompare(b.name));
}

export interface ChunkView {
  index: number;
  state: 'waiting' | 'active' | 'completed' | 'failed';
  rows: number | undefined;
  durationMs: number | undefined;
  attempts: number;
  worker: string | undefined;
  /** BullMQ's reason, as the worker failed it: `CODE: message` (values hidden). */
  error: string | undefined;
  jobId: string;
}

/** An operation's chunks as BullMQ holds them (the first `max`), by index. */
export async function readChunks(
  queue: Parameters<typeof Job.fromId>[0],
  rec: OpRecord,
  max = 500,
): Promise<ChunkView[]> {
  const n = Math.min(rec.totalChunks ?? rec.chunksDone, max);
  const ids = Array.from({ length: n }, (_, i) => jobIds.chunk(rec.id, i));
  const jobs = await Promise.all(ids.map((id) => Job.fromId(queue, id).catch(() => undefined)));
  return jobs.map((j, i) => {
    if (!j)
      return {
        index: i,
        state: 'waiting',
        rows: undefined,
        durationMs: undefined,
        attempts: 0,
        worker: undefined,
        error: undefined,
        jobId: ids[i]!,
      };
    const ret = j.returnvalue as ChunkJobReturn | null;
    const state =
      j.failedReason && j.finishedOn
        ? 'failed'
        : j.finishedOn
          ? 'completed'
          : j.processedOn
            ? 'active'
            : 'waiting';
    return {
      index: i,
      state,
      rows: typeof ret?.count === 'number' ? ret.count : undefined,
      durationMs:
        j.processedOn && j.finishedOn ? Math.max(0, j.finishedOn - j.processedOn) : undefined,
      attempts: j.attemptsMade,
      worker: j.processedBy ?? undefined,
      error: j.failedReason || undefined,
      jobId: ids[i]!,
    };
  });
}
