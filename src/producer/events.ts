import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { SignalMap, SignalName } from '../core/signals.js';
import { connect, QueueKeys, type RedisInput } from './redis.js';
import { decodeValue, encodeValue } from './values.js';

/** Progress of an operation, published after each committed chunk. */
export interface ProgressEvent {
  operationId: string;
  table: string;
  kind: string;
  rowsDone: number;
  chunksDone: number;
  /** Known once enqueueing has finished. */
  totalRows?: number;
  totalChunks?: number;
}

/** An operation finished. */
export interface OperationEndEvent {
  operationId: string;
  table: string;
  kind: string;
  state: 'completed' | 'failed';
  count?: number;
  error?: { code: string; message: string };
}

/** Everything published on an operation's queue: the signals, progress, and ends. */
export type BulkEventMap = SignalMap & {
  progress: ProgressEvent;
  completed: OperationEndEvent;
  failed: OperationEndEvent;
};
export type BulkEventName = keyof BulkEventMap;

/** Approximate cap on the events stream, for workers and producers alike. */
export const DEFAULT_EVENTS_MAX_LEN = 10_000;

/** Append an event to the stream (trimmed to about maxLen entries). Values keep their types. */
export async function publishEvent(
  redis: Redis,
  keys: QueueKeys,
  name: BulkEventName | SignalName,
  event: unknown,
  maxLen = DEFAULT_EVENTS_MAX_LEN,
): Promise<void> {
  const data = JSON.stringify(encodeValue(event, name));
  const op = (event as { operationId?: string }).operationId ?? '';
  await redis.xadd(
    keys.events,
    'MAXLEN',
    '~',
    String(maxLen),
    '*',
    'name',
    name,
    'op',
    op,
    'data',
    data,
  );
}

export interface BulkEventsOptions {
  redis?: RedisInput;
  queue?: string;
  prefix?: string;
  /**
   * Read as a consumer group: every event is delivered to one consumer of the group at least
   * once (unacknowledged events are delivered again after a restart). Without a group, events
   * are best-effort: only those published while this reader runs.
   */
  group?: string;
  /** Consumer name within the group. Default: host and pid. */
  consumer?: string;
  /** Without a group: '$' (default) reads only new events; '0' replays what the stream holds. */
  from?: string;
  /** Milliseconds a blocking read waits before checking for close. Default 1000. */
  blockMs?: number;
}

type Listener = (event: unknown) => void | Promise<void>;

/**
 * Follow the signals and progress of bulk operations from any process:
 * `new BulkEvents({ redis, queue }).on('postBulkCreate', (e) => ...)`. They travel on a stream of
 * their own (not BullMQ's events stream, whose trimming other consumers rely on).
 */
export class BulkEvents {
  private readonly emitter = new EventEmitter();
  private readonly redis: Redis;
  private readonly owned: boolean;
  private readonly keys: QueueKeys;
  private running = false;
  private closed = false;
  private loop: Promise<void> | undefined;
  private readonly opts: BulkEventsOptions;
  private ready: Promise<void> | undefined;
  /** Without a group: the id of the last event read, kept across restarts of the reader. */
  private last: string | undefined;

  constructor(options: BulkEventsOptions = {}) {
    this.opts = options;
    // A blocking reader needs its own connection.
    const c = connect(options.redis);
    this.redis = c.owned ? c.redis : c.redis.duplicate();
    this.owned = true;
    this.keys = new QueueKeys(options.prefix ?? 'bull', options.queue ?? 'bulkmodel');
    this.emitter.on('error', () => {});
    // Every pending done() and followed operation listens here: many at once is normal.
    this.emitter.setMaxListeners(0);
  }

  /** Listen to one event; '*' receives (name, event) for every event. */
  on<K extends BulkEventName>(
    name: K,
    listener: (event: BulkEventMap[K]) => void | Promise<void>,
  ): this;
  on(name: '*', listener: (name: string, event: unknown) => void | Promise<void>): this;
  on(name: 'error', listener: (err: Error) => void): this;
  on(name: string, listener: (...args: never[]) => unknown): this {
    this.emitter.on(name, listener as (...args: unknown[]) => void);
    if (name !== 'error') this.start();
    return this;
  }

  off(name: string, listener: (...args: never[]) => unknown): this {
    this.emitter.off(name, listener as (...args: unknown[]) => void);
    return this;
  }

  /** Resolves once the reader is positioned (events published after this are seen). */
  waitUntilReady(): Promise<void> {
    this.start();
    return this.ready!;
  }

  private start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    let markReady!: () => void;
    this.ready = new Promise((r) => {
      markReady = r;
    });
    // A failed read (Redis restarting, a network blip) is reported and the reader starts again,
    // after a pause growing to 5 s, from where it was: it never stops while open.
    this.loop = (async () => {
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          await this.run(markReady);
          return;
        } catch (err) {
          if (this.closed) return;
          this.emitter.emit('error', err);
          await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
        }
      }
    })();
  }

  private async dispatch(fields: string[]): Promise<void> {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    const name = f.name;
    if (!name || f.data === undefined) return;
    let event: unknown;
    try {
      event = decodeValue(JSON.parse(f.data), name);
    } catch {
      return;
    }
    for (const l of this.emitter.listeners(name) as Listener[]) {
      try {
        await l(event);
      } catch (err) {
        this.emitter.emit('error', err);
      }
    }
    for (const l of this.emitter.listeners('*') as ((n: string, e: unknown) => unknown)[]) {
      try {
        await l(name, event);
      } catch (err) {
        this.emitter.emit('error', err);
      }
    }
  }

  private async run(markReady: () => void): Promise<void> {
    const block = String(this.opts.blockMs ?? 1000);
    const key = this.keys.events;
    if (this.opts.group) {
      const group = this.opts.group;
      const consumer = this.opts.consumer ?? `${process.pid}`;
      const createGroup = async () => {
        try {
          await this.redis.xgroup('CREATE', key, group, '$', 'MKSTREAM');
        } catch (err) {
          if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
        }
      };
      await createGroup();
      markReady();
      let cursor = '0'; // first our own pending entries, then new ones
      while (!this.closed) {
        let res: [string, [string, string[] | null][]][] | null;
        try {
          res = (await this.redis.xreadgroup(
            'GROUP',
            group,
            consumer,
            'COUNT',
            '100',
            'BLOCK',
            block,
            'STREAMS',
            key,
            cursor,
          )) as typeof res;
        } catch (err) {
          if (this.closed) return;
          // The stream (and its group) was deleted: start again from what comes next.
          if (String((err as Error).message).includes('NOGROUP')) {
            await createGroup();
            continue;
          }
          throw err;
        }
        const entries = res?.[0]?.[1] ?? [];
        if (cursor === '0' && entries.length === 0) cursor = '>';
        for (const [id, fields] of entries) {
          // A pending entry trimmed from the stream comes back without fields: nothing to deliver.
          if (fields) await this.dispatch(fields);
          await this.redis.xack(key, group, id);
        }
      }
      return;
    }
    if (this.last === undefined) {
      let from = this.opts.from ?? '$';
      if (from === '$') {
        // Resolve '$' to a concrete id now, so nothing published after ready is missed.
        const tail = (await this.redis.xrevrange(key, '+', '-', 'COUNT', 1)) as [
          string,
          string[],
        ][];
        from = tail[0]?.[0] ?? '0-0';
      }
      this.last = from;
    }
    markReady();
    while (!this.closed) {
      const res = (await this.redis.xread(
        'COUNT',
        100,
        'BLOCK',
        block,
        'STREAMS',
        key,
        this.last,
      )) as [string, [string, string[]][]][] | null;
      for (const [id, fields] of res?.[0]?.[1] ?? []) {
        this.last = id;
        await this.dispatch(fields);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Disconnect ends the blocking read at once.
    if (this.owned) this.redis.disconnect();
    await this.loop;
    this.emitter.removeAllListeners();
  }
}
