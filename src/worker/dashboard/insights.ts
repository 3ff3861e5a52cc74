import { Job } from 'bullmq';
import { jobIds } from '../../queue/keys.js';
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
  getRanges(types: string[], start?: number, end?: number, asc?: boolean): Promise<string[]>;
  getWorkers(): Promise<Record<string, string>[]>;
}

/** What the dashboard keeps of a job: never its data (a chunk's can be megabytes). */
export interface JobFacts {
  name: string;
  processedBy: string | undefined;
  processedOn: number | undefined;
  finishedOn: number | undefined;
  failedReason: string | undefined;
  attemptsMade: number;
  count: number | undefined;
}

/**
 * Jobs' facts by id, read once a job has finished (finished jobs do not change): each poll
 * reads only the jobs it has not seen finish. Bounded: the oldest entries go first.
 */
export class JobFactsCache {
  private readonly done = new Map<string, JobFacts>();
  constructor(private readonly max = 20_000) {}

  async get(queue: Parameters<typeof Job.fromId>[0], id: string): Promise<JobFacts | undefined> {
    const hit = this.done.get(`${queue.name}\u0000${id}`);
    if (hit) return hit;
    const j = await Job.fromId(queue, id).catch(() => undefined);
    if (!j) return undefined;
    const ret = j.returnvalue as { count?: unknown } | null;
    const facts: JobFacts = {
      name: j.name,
      processedBy: j.processedBy ?? undefined,
      processedOn: j.processedOn ?? undefined,
      finishedOn: j.finishedOn ?? undefined,
      failedReason: j.failedReason || undefined,
      attemptsMade: j.attemptsMade,
      count: typeof ret?.count === 'number' ? ret.count : undefined,
    };
    if (facts.finishedOn) {
      this.done.set(`${queue.name}\u0000${id}`, facts);
      if (this.done.size > this.max) this.done.delete(this.done.keys().next().value!);
    }
    return facts;
  }
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
  /** Jobs it runs at once, per queue, as it announced (undefined for a worker that did not). */
  concurrency: number | undefined;
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
  states: readonly QueueState[],
  cache: JobFactsCache,
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
        concurrency: undefined,
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
    // Ids first; a job is read only until it has finished (then its facts are cached).
    const [activeIds, doneIds] = await Promise.all([
      q.getRanges(['active'], 0, 199).catch(() => [] as string[]),
      q.getRanges(['completed'], 0, 299).catch(() => [] as string[]),
    ]);
    const reader = q as unknown as Parameters<typeof Job.fromId>[0];
    const [active, done] = await Promise.all([
      Promise.all(activeIds.map(async (id) => [id, await cache.get(reader, id)] as const)),
      Promise.all(doneIds.map((id) => cache.get(reader, id))),
    ]);
    for (const [id, j] of active) {
      if (!j?.processedBy) continue;
      const w = get(j.processedBy);
      if (!w.queues.includes(q.name)) w.queues.push(q.name);
      w.running.push(id);
      w.busySince = Math.min(w.busySince ?? now, j.processedOn ?? now);
    }
    for (const j of done) {
      if (!j?.processedBy || !j.finishedOn) continue;
      const w = get(j.processedBy);
      if (!w.queues.includes(q.name)) w.queues.push(q.name);
      w.lastDone = Math.max(w.lastDone ?? 0, j.finishedOn);
      w.lastSeen = Math.max(w.lastSeen ?? 0, j.finishedOn);
      if (j.name === 'chunk' && j.count !== undefined && j.finishedOn > now - 60_000)
        w.rowsPerSec += j.count / 60;
    }
  }
  // Host, pid and concurrency as each worker announced them (its name may be any --name).
  const names = [...by.keys()];
  for (const st of states) {
    const info = await st.workerInfo(names).catch(() => new Map<string, string>());
    for (const [name, json] of info) {
      const w = by.get(name);
      if (!w) continue;
      try {
        const v = JSON.parse(json) as { host?: unknown; pid?: unknown; concurrency?: unknown };
        if (typeof v.host === 'string') w.host = v.host;
        if (typeof v.pid === 'number') w.pid = String(v.pid);
        if (typeof v.concurrency === 'number') w.concurrency = v.concurrency;
      } catch {
        // an announcement this version cannot read: the name's own host:pid stays
      }
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

/**
 * An operation's chunks (the first `max`), by index: those counted done (the operation's done
 * marks) and, once it has ended, the rest are read from BullMQ (cached once finished); while
 * it runs, the first `pendingReads` not done are read each time (the running ones, usually),
 * the others shown as waiting without a read.
 */
export async function readChunks(
  queue: Parameters<typeof Job.fromId>[0],
  rec: OpRecord,
  done: ReadonlySet<number>,
  cache: JobFactsCache,
  max = 500,
  pendingReads = 20,
): Promise<ChunkView[]> {
  const n = Math.min(rec.totalChunks ?? Math.max(rec.chunksDone, ...done, -1) + 1, max);
  const final = rec.finishedAt !== undefined;
  let pending = 0;
  return Promise.all(
    Array.from({ length: n }, async (_, i): Promise<ChunkView> => {
      const jobId = jobIds.chunk(rec.id, i);
      const read = done.has(i) || final || pending++ < pendingReads;
      const j = read ? await cache.get(queue, jobId) : undefined;
      if (!j)
        return {
          index: i,
          state: done.has(i) ? 'completed' : 'waiting',
          rows: undefined,
          durationMs: undefined,
          attempts: 0,
          worker: undefined,
          error: undefined,
          jobId,
        };
      const state =
        j.failedReason && j.finishedOn
          ? 'failed'
          : j.finishedOn || done.has(i)
            ? 'completed'
            : j.processedOn
              ? 'active'
              : 'waiting';
      return {
        index: i,
        state,
        rows: j.count,
        durationMs:
          j.processedOn && j.finishedOn ? Math.max(0, j.finishedOn - j.processedOn) : undefined,
        attempts: j.attemptsMade,
        worker: j.processedBy,
        error: j.failedReason,
        jobId,
      };
    }),
  );
}
