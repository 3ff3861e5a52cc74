import {
  FINAL_STATES,
  type OperationStatus,
  type OpRecord,
  type QueueState,
  statusOf,
} from '../../queue/state.js';
import type { RateTracker } from './rates.js';

/** One operation as the Operations page shows it: its status, its rate and its workers. */
export interface OperationView extends OperationStatus {
  /** Recent rate while running (else the average from start to end). */
  rowsPerSec?: number;
  /** Seconds left at the current rate, while running and the total is known. */
  etaSec?: number;
  /** Names of the workers running its jobs right now (BullMQ processedBy of active jobs). */
  workers: string[];
}

function view(
  r: OpRecord,
  queue: string,
  workers: string[] | undefined,
  rates: RateTracker,
  now: number,
): OperationView {
  const v: OperationView = { ...statusOf(r, queue), workers: workers ?? [] };
  const running = v.finishedAt === undefined && !FINAL_STATES.has(v.state);
  const since = v.startedAt ?? v.createdAt;
  if (running) {
    const recent = rates.sample(`${queue}\u0000${r.id}`, v.rowsDone, now);
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

/** The `limit` most recent operations over the queues, newest first. */
export async function readOperations(
  states: readonly QueueState[],
  rates: RateTracker,
  limit = 200,
): Promise<OperationView[]> {
  const now = Date.now();
  const all: OperationView[] = [];
  await Promise.all(
    states.map(async (s) => {
      const records = await s.records(limit);
      // Workers only matter while an operation runs.
      const running = records.filter((r) => !FINAL_STATES.has(r.state)).map((r) => r.id);
      const workers = await s.activeWorkers(running);
      for (const r of records) all.push(view(r, s.queue, workers.get(r.id), rates, now));
    }),
  );
  all.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0));
  const out = all.slice(0, limit);
  rates.keepOnly(
    new Set(out.filter((o) => o.finishedAt === undefined).map((o) => `${o.queue}\u0000${o.id}`)),
  );
  return out;
}
