import type { Redis } from 'ioredis';
import type { QueueKeys } from '../../producer/redis.js';
import { decodeValue } from '../../producer/values.js';

/** One entry of the events stream, reduced to what a person reads at a glance. */
export interface SignalView {
  id: string;
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

/** The newest `count` events (signals, progress, ends), newest first. */
export async function readSignals(
  redis: Redis,
  keys: QueueKeys,
  count = 30,
): Promise<SignalView[]> {
  const entries = (await redis.xrevrange(keys.events, '+', '-', 'COUNT', count)) as [
    string,
    string[],
  ][];
  return entries.map(([id, flat]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
    let event: unknown;
    try {
      event = decodeValue(JSON.parse(f.data ?? 'null'), f.name ?? 'event');
    } catch {
      event = undefined;
    }
    return {
      id,
      time: Number(id.split('-')[0]),
      name: f.name ?? '',
      operationId: f.op ?? '',
      fields: scalars(event),
    };
  });
}
