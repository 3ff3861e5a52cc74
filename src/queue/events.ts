import { EventEmitter } from 'node:events';
import { isBulkError } from '../core/errors.js';
import { checkOptionKeys } from '../core/optionKeys.js';
import { declaredOptions, defaultOf, fromEnv } from '../core/settings.js';
import type { SignalMap, SignalName } from '../core/signals.js';
import { type BackendKind, openBackend, type QueueBackend } from './backend.js';
import type { RedisInput } from './connection.js';
import { queueNames } from './keys.js';
import type { EventReader, QueueState, StoredEvent } from './state.js';
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
export const DEFAULT_EVENTS_MAX_LEN = defaultOf('eventsMaxLen');

/** Append an event to the stream (trimmed to about maxLen entries). Values keep their types. */
export async function publishEvent(
  state: QueueState,
  name: BulkEventName | SignalName,
  event: unknown,
  maxLen = DEFAULT_EVENTS_MAX_LEN,
): Promise<void> {
  const data = JSON.stringify(encodeValue(event, name));
  const op = (event as { operationId?: string }).operationId ?? '';
  await state.publish(name, op, data, maxLen);
}

export interface BulkEventsOptions {
  /** Redis (as BulkProducer's `redis`). */
  redis?: RedisInput;
  /**
   * Where the queues live: 'redis' or 'postgres' (as BulkProducer's `backend`; default
   * BULKMODEL_BACKEND, else 'redis'), or a backend to share (a BulkProducer's `backend`).
   */
  backend?: BackendKind | QueueBackend;
  /** Postgres backend: the database the queues live in (as BulkProducer's `database`). */
  database?: string;
  /** Postgres backend: the queue database, when other than `database`. */
  queueDatabase?: string;
  /** Postgres backend: the schema of the queues. Default 'bulkmodel_queue'. */
  queueSchema?: string;
  /** The queue, or several (a list, or 'a,b'): events of all of them. Default 'bulkmodel'. */
  queue?: string | readonly string[];
  prefix?: string;
  /**
   * Read as a consumer group: every event is delivered to one consumer of the group at least
   * once (unacknowledged events are delivered again after a restart). Without a group, events
   * are best-effort: only those published while this reader runs.
   */
  group?: string;
  /** Consumer name within the group. Default: host and pid (`host:pid`). */
  consumer?: string;
  /**
   * Without a group: '$' (default) reads only new events; '0' replays what the stream holds; an
   * event id read earlier goes on after it (on the Postgres backend, ids are event numbers).
   */
  from?: string;
  /** Milliseconds a blocking read waits before checking for close. Default 1000. */
  blockMs?: number;
}

type Listener = (event: unknown) => void | Promise<void>;

const EVENTS_KEYS = declaredOptions<BulkEventsOptions>()('BulkEvents');

/** Errors a reader does not retry: waitUntilReady() rejects with them. */
const PERMANENT: ReadonlySet<string> = new Set(['QUEUE_SCHEMA', 'INVALID_OPTION']);

/**
 * Follow the signals and progress of bulk operations from any process:
 * `new BulkEvents({ redis, queue }).on('postBulkCreate', (e) => ...)`. They travel on a stream of
 * their own per queue (not BullMQ's events stream, whose trimming other consumers rely on); with
 * several queues, one reader per queue, in the order each queue's events were published.
 */
export class BulkEvents {
  private readonly emitter = new EventEmitter();
  private readonly backend: QueueBackend;
  private readonly ownsBackend: boolean;
  private readonly readers: EventReader[];
  private running = false;
  private closed = false;
  private loops: Promise<void>[] = [];
  private ready: Promise<void> | undefined;

  constructor(options: BulkEventsOptions = {}) {
    checkOptionKeys(options, EVENTS_KEYS, 'BulkEvents');
    const names = queueNames(options.queue, fromEnv('queue')!);
    const shared = typeof options.backend === 'object' && options.backend !== null;
    this.ownsBackend = !shared;
    this.backend = shared
      ? (options.backend as QueueBackend)
      : openBackend(
          { ...options, backend: options.backend as BackendKind | undefined },
          options.database,
          names.length + 1,
        );
    const o = {
      ...(options.group !== undefined ? { group: options.group } : {}),
      ...(options.consumer !== undefined ? { consumer: options.consumer } : {}),
      ...(options.from !== undefined ? { from: options.from } : {}),
      ...(options.blockMs !== undefined ? { blockMs: options.blockMs } : {}),
    };
    // Each reader blocks on a connection of its own.
    this.readers = names.map((n) => this.backend.state(n).eventReader(o));
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

  /** Resolves once every reader is positioned (events published after this are seen). */
  waitUntilReady(): Promise<void> {
    this.start();
    return this.ready!;
  }

  private start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    const ready: Promise<void>[] = [];
    for (const reader of this.readers) {
      let markReady!: () => void;
      let markFailed!: (err: unknown) => void;
      const one = new Promise<void>((r, reject) => {
        markReady = r;
        markFailed = reject;
      });
      one.catch(() => {}); // observed through waitUntilReady()
      ready.push(one);
      // A failed read (Redis restarting, a network blip) is reported and the reader starts
      // again, after a pause growing to 5 s, from where it was: it never stops while open.
      this.loops.push(
        (async () => {
          for (let attempt = 0; !this.closed; attempt++) {
            try {
              await this.backend.prepare();
              await reader.open();
              markReady();
              attempt = 0;
              while (!this.closed) {
                for (const e of await reader.read()) {
                  await this.dispatch(e);
                  await reader.ack(e.id);
                }
              }
              return;
            } catch (err) {
              if (this.closed) return;
              this.emitter.emit('error', err);
              // Waiting cannot mend these (a missing queue schema, a bad option): say so.
              if (isBulkError(err) && PERMANENT.has(err.code)) {
                markFailed(err);
                return;
              }
              await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
            }
          }
        })(),
      );
    }
    this.ready = Promise.all(ready).then(() => {});
    this.ready.catch(() => {}); // rejects only for whoever waits on it
  }

  private async dispatch(e: StoredEvent): Promise<void> {
    let event: unknown;
    try {
      event = decodeValue(JSON.parse(e.data), e.name);
    } catch {
      return;
    }
    for (const l of this.emitter.listeners(e.name) as Listener[]) {
      try {
        await l(event);
      } catch (err) {
        this.emitter.emit('error', err);
      }
    }
    for (const l of this.emitter.listeners('*') as ((n: string, e: unknown) => unknown)[]) {
      try {
        await l(e.name, event);
      } catch (err) {
        this.emitter.emit('error', err);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.readers) r.close();
    await Promise.all(this.loops);
    if (this.ownsBackend) this.backend.disconnect();
    this.emitter.removeAllListeners();
  }
}
