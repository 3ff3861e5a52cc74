import type { QueueState } from '../../queue/state.js';
import { decodeValue } from '../../queue/values.js';

/** One entry of the events stream, reduced to what a person reads at a glance. */
export interface SignalView {
  id: string;
  /** The queue whose stream it came from. */
  queue: string;
  time: number;
  name: string;
  operationId: string;
  /** The event's scalar fields (table, kind, count, rowsCount, ...), strings cut to 200 chars. */
  fields: Record<string, string | number | boolean>;
}

function scalars(event: unknown): SignalView['fields'] {
  const out: SignalView['fields'] = {};
  if (event === null || typeof event !== 'object') return out;
  for (const [k, v] of Object.entries(event as Record<string, unknown>)) {
    if (k === 'operationId') continue;
    if (typeof v === 'string') out[k] = v.length > 200 ? `${v.slice(0, 200)}…` : v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = v;
    else if (typeof v === 'bigint') out[k] = v.toString();
    else if (k === 'error' && v && typeof v === 'object')
      out.error = String((v as { code?: unknown }).code ?? 'error');
  }
  return out;
}

/** The newest `count` events (signals, progress, ends) over the queues, newest first. */
export async function readSignals(
  states: readonly QueueState[],
  count = 30,
): Promise<SignalView[]> {
  const lists = await Promise.all(states.map((s) => s.recentEvents(count)));
  const all = lists.flatMap((events, i) =>
    events.map((e) => {
      let event: unknown;
      try {
        event = decodeValue(JSON.parse(e.data), e.name);
      } catch {
        event = undefined;
      }
      return {
        id: e.id,
        queue: states[i]!.queue,
        time: e.time,
        name: e.name,
        operationId: e.operationId,
        fields: scalars(event),
      };
    }),
  );
  return all.sort((a, b) => b.time - a.time || newerFirst(a.id, b.id)).slice(0, count);
}

/** Event ids newest first: Redis's `ms-seq`, or the Postgres backend's numbers, compared as numbers. */
function newerFirst(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return bm - am || bs - as;
}
