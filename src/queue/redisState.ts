import { hostname } from 'node:os';
import { defaultOf } from '../core/settings.js';
import type { RedisClient } from './connection.js';
import type { QueueKeys } from './keys.js';
import {
  type Counters,
  type EventReader,
  type EventReaderOptions,
  type OpRecord,
  type QueueState,
  type StoredEvent,
  storedNumber,
  storedTotals,
  toOpRecord,
} from './state.js';

/**
 * QueueState in Redis, beside BullMQ's keys and in the same hash slot (QueueKeys): a hash per
 * operation (`…:bm:op:<id>`), a bitmap of counted chunks (`…:done`), a hash of running jobs
 * (`…:active`), a hash of its chunks' data (`…:data`, payload version 3), a sorted set
 * indexing operations by creation time (`…:bm:ops`), a hash of catalog snapshots and a stream
 * of events. Every step that reads and writes is one script, so that it is atomic; every
 * script touches only one queue's keys (one slot on a cluster).
 */

const FINAL = `local function final(s) return s == 'completed' or s == 'failed' or s == 'cancelled' end
`;

const REGISTER = `
if redis.call('hsetnx', KEYS[1], 'identity', ARGV[1]) == 0 then
  return {0, redis.call('hget', KEYS[1], 'identity'), redis.call('hget', KEYS[1], 'sealed'), redis.call('hget', KEYS[1], 'state'), redis.call('hget', KEYS[1], 'encoding')}
end
redis.call('hset', KEYS[1], 'kind', ARGV[4], 'table', ARGV[5], 'createdAt', ARGV[2], 'state', 'enqueueing', 'rowsDone', '0', 'chunksDone', '0')
if ARGV[6] == '1' then redis.call('hset', KEYS[1], 'returning', '1') end
if ARGV[7] ~= '' then redis.call('hset', KEYS[1], 'encoding', ARGV[7]) end
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
return {1}`;

const SEAL = `
redis.call('hset', KEYS[1], unpack(ARGV))
if redis.call('hget', KEYS[1], 'state') == 'enqueueing' then redis.call('hset', KEYS[1], 'state', 'queued') end`;

const FINISH = `${FINAL}
if final(redis.call('hget', KEYS[1], 'state')) then return 0 end
redis.call('hset', KEYS[1], unpack(ARGV))
return 1`;

const FAIL = `${FINAL}
redis.call('zadd', KEYS[2], 'NX', ARGV[2], ARGV[3])
local set = redis.call('hsetnx', KEYS[1], 'error', ARGV[1])
if final(redis.call('hget', KEYS[1], 'state')) then return 0 end
redis.call('hset', KEYS[1], 'state', 'failed', 'finishedAt', ARGV[2])
return set`;

const JOB_STARTED = `
redis.call('hset', KEYS[3], ARGV[3], ARGV[4])
if redis.call('hsetnx', KEYS[1], 'startedAt', ARGV[1]) == 0 then return {0} end
redis.call('zadd', KEYS[2], 'NX', ARGV[1], ARGV[2])
return {1, redis.call('hget', KEYS[1], 'totalRows'), redis.call('hget', KEYS[1], 'totalChunks')}`;

const CHUNK_DONE = `${FINAL}
redis.call('zadd', KEYS[3], 'NX', ARGV[3], ARGV[4])
redis.call('hdel', KEYS[4], ARGV[5])
if redis.call('setbit', KEYS[2], ARGV[1], 1) == 0 then
  redis.call('hincrby', KEYS[1], 'rowsDone', ARGV[2])
  redis.call('hincrby', KEYS[1], 'chunksDone', 1)
  if not final(redis.call('hget', KEYS[1], 'state')) then redis.call('hset', KEYS[1], 'state', 'running') end
end
return redis.call('hmget', KEYS[1], 'rowsDone', 'chunksDone', 'totalRows', 'totalChunks')`;

// A chunk's data unless it is missing (nil) or over the limit (its size, not read).
const CHUNK_DATA = `
local n = redis.call('hstrlen', KEYS[1], ARGV[1])
if n == 0 then return false end
if n > tonumber(ARGV[2]) then return n end
return redis.call('hget', KEYS[1], ARGV[1])`;

const FIELDS = [
  'kind',
  'table',
  'state',
  'identity',
  'sealed',
  'returning',
  'encoding',
  'rowsDone',
  'chunksDone',
  'retries',
  'totalRows',
  'totalChunks',
  'createdAt',
  'startedAt',
  'finishedAt',
  'error',
] as const;

function toRecord(id: string, h: (string | null)[]): OpRecord | null {
  if (h.every((x) => x === null)) return null;
  const f = Object.fromEntries(FIELDS.map((k, i) => [k, h[i] ?? null])) as Record<
    (typeof FIELDS)[number],
    string | null
  >;
  return toOpRecord(id, { ...f, sealed: f.sealed === '1', returning: f.returning === '1' });
}

function toEvent(id: string, flat: string[] | null): StoredEvent | undefined {
  if (!flat) return undefined;
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
  if (!f.name || f.data === undefined) return undefined;
  return {
    id,
    time: Number(id.split('-')[0]),
    name: f.name,
    operationId: f.op ?? '',
    data: f.data,
  };
}

export class RedisQueueState implements QueueState {
  readonly queue: string;
  constructor(
    private readonly redis: RedisClient,
    readonly keys: QueueKeys,
  ) {
    this.queue = keys.queue;
  }

  async register(
    id: string,
    identity: string,
    fields: { kind: string; table: string; returning: boolean; encoding?: string },
  ) {
    const res = (await this.redis.eval(
      REGISTER,
      2,
      this.keys.op(id),
      this.keys.ops,
      identity,
      String(Date.now()),
      id,
      fields.kind,
      fields.table,
      fields.returning ? '1' : '0',
      fields.encoding ?? '',
    )) as [number, string | null, string | null, string | null, string | null];
    if (res[0] === 1)
      return {
        created: true,
        identity,
        sealed: false,
        state: 'enqueueing',
        encoding: fields.encoding ?? null,
      };
    return {
      created: false,
      identity: res[1] ?? null,
      sealed: res[2] === '1',
      state: res[3] ?? null,
      encoding: res[4] ?? null,
    };
  }

  async chunkFingerprint(id: string, index: number) {
    const [fp, state] = await this.redis.hmget(this.keys.op(id), `fp${index}`, 'state');
    return { fp: fp ?? null, state: state ?? null };
  }

  async setChunkFingerprint(id: string, index: number, fp: string): Promise<void> {
    await this.redis.hset(this.keys.op(id), `fp${index}`, fp);
  }

  async stateOf(id: string): Promise<string | null> {
    return this.redis.hget(this.keys.op(id), 'state');
  }

  async seal(id: string, totals: { totalRows: number; totalChunks: number } | undefined) {
    const fields: string[] = ['sealed', '1'];
    if (totals)
      fields.push('totalRows', String(totals.totalRows), 'totalChunks', String(totals.totalChunks));
    await this.redis.eval(SEAL, 1, this.keys.op(id), ...fields);
  }

  async record(id: string): Promise<OpRecord | null> {
    return toRecord(id, await this.redis.hmget(this.keys.op(id), ...FIELDS));
  }

  async records(limit: number): Promise<OpRecord[]> {
    const ids = await this.redis.zrevrange(this.keys.ops, 0, Math.max(0, limit - 1));
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hmget(this.keys.op(id), ...FIELDS);
    const res = (await pipe.exec()) ?? [];
    const out: OpRecord[] = [];
    ids.forEach((id, i) => {
      const r = toRecord(id, (res[i]?.[1] as (string | null)[] | undefined) ?? []);
      if (r) out.push(r); // removed meanwhile
    });
    return out;
  }

  async finish(
    id: string,
    to: 'completed' | 'failed' | 'cancelled',
    extra: { error?: string; rowsDone?: number } = {},
  ): Promise<boolean> {
    const fields = ['state', to, 'finishedAt', String(Date.now())];
    if (extra.error !== undefined) fields.push('error', extra.error);
    if (extra.rowsDone !== undefined) fields.push('rowsDone', String(extra.rowsDone));
    return (await this.redis.eval(FINISH, 1, this.keys.op(id), ...fields)) === 1;
  }

  async fail(id: string, error: string): Promise<boolean> {
    const r = await this.redis.eval(
      FAIL,
      2,
      this.keys.op(id),
      this.keys.ops,
      error,
      String(Date.now()),
      id,
    );
    return r === 1;
  }

  async jobStarted(id: string, jobId: string, worker: string) {
    const now = String(Date.now());
    const r = (await this.redis.eval(
      JOB_STARTED,
      3,
      this.keys.op(id),
      this.keys.ops,
      this.keys.opActive(id),
      now,
      id,
      jobId,
      worker,
    )) as [number, string | null, string | null];
    if (r[0] !== 1) return { first: false };
    return { first: true, ...storedTotals(r[1], r[2]) };
  }

  async jobEnded(id: string, jobId: string): Promise<void> {
    await this.redis.hdel(this.keys.opActive(id), jobId);
  }

  async chunkDone(id: string, index: number, rows: number, jobId: string): Promise<Counters> {
    const [rowsDone, chunksDone, totalRows, totalChunks] = (await this.redis.eval(
      CHUNK_DONE,
      4,
      this.keys.op(id),
      this.keys.opDone(id),
      this.keys.ops,
      this.keys.opActive(id),
      String(index),
      String(rows),
      String(Date.now()),
      id,
      jobId,
    )) as (string | null)[];
    return {
      rowsDone: storedNumber(rowsDone) ?? 0,
      chunksDone: storedNumber(chunksDone) ?? 0,
      ...storedTotals(totalRows, totalChunks),
    };
  }

  async doneChunks(id: string): Promise<number[]> {
    // The done marks are a bitmap, bit i for chunk i (most significant bit of byte 0 first).
    const bits = await this.redis.getBuffer(this.keys.opDone(id));
    const out: number[] = [];
    if (!bits) return out;
    for (let b = 0; b < bits.length; b++) {
      const byte = bits[b]!;
      if (byte === 0) continue;
      for (let k = 0; k < 8; k++) if (byte & (0x80 >> k)) out.push(b * 8 + k);
    }
    return out;
  }

  async countRetry(id: string): Promise<void> {
    await this.redis
      .multi()
      .hincrby(this.keys.op(id), 'retries', 1)
      .zadd(this.keys.ops, 'NX', String(Date.now()), id)
      .exec();
  }

  async claimEndLog(id: string): Promise<boolean> {
    return (await this.redis.hsetnx(this.keys.op(id), 'endLogged', '1')) === 1;
  }

  async setExport(id: string, identity: string, count: number): Promise<void> {
    await this.redis
      .multi()
      .hset(this.keys.op(id), `export:${identity}`, String(count))
      .zadd(this.keys.ops, 'NX', String(Date.now()), id)
      .exec();
  }

  async getExport(id: string, identity: string): Promise<number | undefined> {
    const v = await this.redis.hget(this.keys.op(id), `export:${identity}`);
    return v === null ? undefined : Number(v);
  }

  async activeWorkers(ids: readonly string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (ids.length === 0) return out;
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hvals(this.keys.opActive(id));
    const res = (await pipe.exec()) ?? [];
    ids.forEach((id, i) => {
      const names = (res[i]?.[1] as string[] | undefined) ?? [];
      if (names.length > 0) out.set(id, [...new Set(names)].sort());
    });
    return out;
  }

  async prune(cutoffMs: number): Promise<number> {
    let removed = 0;
    for (;;) {
      const ids = await this.redis.zrangebyscore(
        this.keys.ops,
        '-inf',
        String(cutoffMs),
        'LIMIT',
        0,
        500,
      );
      if (ids.length === 0) return removed;
      const m = this.redis.multi();
      for (const id of ids)
        m.del(
          this.keys.op(id),
          this.keys.opDone(id),
          this.keys.opActive(id),
          this.keys.opData(id),
        ).zrem(this.keys.ops, id);
      await m.exec();
      removed += ids.length;
    }
  }

  async putChunkData(id: string, index: number, data: Buffer): Promise<void> {
    await this.redis.hsetnx(this.keys.opData(id), String(index), data);
  }

  async chunkData(
    id: string,
    index: number,
    maxBytes: number,
  ): Promise<Buffer | null | { bytes: number }> {
    const r = (await this.redis.callBuffer(
      'eval',
      CHUNK_DATA,
      '1',
      this.keys.opData(id),
      String(index),
      String(maxBytes),
    )) as Buffer | number | null;
    if (r === null) return null;
    return typeof r === 'number' ? { bytes: r } : r;
  }

  async dropChunkData(id: string, index?: number): Promise<void> {
    if (index === undefined) await this.redis.del(this.keys.opData(id));
    else await this.redis.hdel(this.keys.opData(id), String(index));
  }

  async publishSnapshot(names: readonly string[], snapshotJson: string): Promise<void> {
    const fields: string[] = [];
    for (const n of new Set(names)) fields.push(n, snapshotJson);
    if (fields.length > 0) await this.redis.hset(this.keys.catalog, ...fields);
  }

  snapshot(table: string): Promise<string | null> {
    return this.redis.hget(this.keys.catalog, table);
  }

  async announceWorker(name: string, infoJson: string): Promise<void> {
    await this.redis.hset(this.keys.catalog, `worker:${name}`, infoJson);
  }

  async workerInfo(names: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (names.length === 0) return out;
    const vals = await this.redis.hmget(this.keys.catalog, ...names.map((n) => `worker:${n}`));
    names.forEach((n, i) => {
      if (vals[i]) out.set(n, vals[i]!);
    });
    return out;
  }

  async publish(name: string, operationId: string, data: string, maxLen: number): Promise<void> {
    await this.redis.xadd(
      this.keys.events,
      'MAXLEN',
      '~',
      String(maxLen),
      '*',
      'name',
      name,
      'op',
      operationId,
      'data',
      data,
    );
  }

  async recentEvents(count: number): Promise<StoredEvent[]> {
    const entries = (await this.redis.xrevrange(this.keys.events, '+', '-', 'COUNT', count)) as [
      string,
      string[],
    ][];
    return entries.map(([id, f]) => toEvent(id, f)).filter((e): e is StoredEvent => !!e);
  }

  eventReader(options: EventReaderOptions): EventReader {
    return new RedisEventReader(this.redis, this.keys.events, options);
  }
}

/** Reads one stream with a duplicate connection (its reads block). */
class RedisEventReader implements EventReader {
  private conn: RedisClient | undefined;
  private closed = false;
  /** Without a group: the id of the last event read (kept across re-opens). */
  private last: string | undefined;
  /** In a group: '0' (our pending entries first), then '>'. */
  private cursor = '0';
  private readonly block: string;

  constructor(
    private readonly base: RedisClient,
    private readonly key: string,
    private readonly o: EventReaderOptions,
  ) {
    this.block = String(o.blockMs ?? defaultOf('blockMs'));
  }

  private connection(): RedisClient {
    if (!this.conn) {
      this.conn = this.base.duplicate();
      this.conn.on('error', () => {}); // read() rejects; the caller reports and re-opens
    }
    return this.conn;
  }

  private async createGroup(): Promise<void> {
    try {
      await this.connection().xgroup('CREATE', this.key, this.o.group!, '$', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }

  async open(): Promise<void> {
    if (this.o.group) {
      await this.createGroup();
      this.cursor = '0';
      return;
    }
    if (this.last !== undefined) return;
    let from = this.o.from ?? defaultOf('from');
    if (from === '$') {
      // Resolve '$' to a concrete id now, so that nothing published after open() is missed.
      const tail = (await this.connection().xrevrange(this.key, '+', '-', 'COUNT', 1)) as [
        string,
        string[],
      ][];
      from = tail[0]?.[0] ?? '0-0';
    }
    this.last = from;
  }

  async read(): Promise<StoredEvent[]> {
    const c = this.connection();
    if (this.o.group) {
      let res: [string, [string, string[] | null][]][] | null;
      try {
        res = (await c.xreadgroup(
          'GROUP',
          this.o.group,
          this.o.consumer ?? `${hostname()}:${process.pid}`,
          'COUNT',
          '100',
          'BLOCK',
          this.block,
          'STREAMS',
          this.key,
          this.cursor,
        )) as typeof res;
      } catch (err) {
        // The stream (and its group) was deleted: start again from what comes next.
        if (!this.closed && String((err as Error).message).includes('NOGROUP')) {
          await this.createGroup();
          return [];
        }
        throw err;
      }
      const entries = res?.[0]?.[1] ?? [];
      if (this.cursor === '0' && entries.length === 0) this.cursor = '>';
      const out: StoredEvent[] = [];
      for (const [id, fields] of entries) {
        const e = toEvent(id, fields);
        // A pending entry trimmed from the stream comes back without fields: nothing to deliver.
        if (e) out.push(e);
        else await c.xack(this.key, this.o.group, id);
      }
      return out;
    }
    const res = (await c.xread(
      'COUNT',
      100,
      'BLOCK',
      this.block,
      'STREAMS',
      this.key,
      this.last ?? '$',
    )) as [string, [string, string[]][]][] | null;
    const out: StoredEvent[] = [];
    for (const [id, fields] of res?.[0]?.[1] ?? []) {
      this.last = id;
      const e = toEvent(id, fields);
      if (e) out.push(e);
    }
    return out;
  }

  async ack(id: string): Promise<void> {
    if (this.o.group) await this.connection().xack(this.key, this.o.group, id);
  }

  close(): void {
    this.closed = true;
    // Disconnect ends a blocking read at once.
    this.conn?.disconnect();
  }
}
