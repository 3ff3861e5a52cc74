import { BulkError } from './errors.js';
import type { Logger } from './logger.js';

export type Row = Record<string, unknown>;

/** What every signal carries. Signals fire once per chunk (per call for update and copyTo). */
export interface SignalBase {
  table: string;
  operationId: string;
  /** Chunk index within the operation; -1 for signals sent once per call. */
  chunkIndex: number;
  batchSize: number;
}

/**
 * The signals, after django-bulkmodel's. A `pre*` listener runs before the chunk is written and
 * may change `rows` (mutate them or assign a new array); a listener that throws stops the
 * operation with SIGNAL_REJECTED and that chunk writes nothing. A `post*` listener runs after
 * the chunk committed; if it throws, the error is logged and the write stands.
 */
export interface SignalMap {
  /** Before a chunk of bulkCreate is inserted. */
  preBulkCreate: SignalBase & { rows: Row[] };
  /** After a chunk of bulkCreate committed; `returned` holds the created rows when asked for. */
  postBulkCreate: SignalBase & { rows: Row[]; count: number; returned?: Row[] };
  /** Before update(): the filter and the values; `set` may be changed. */
  /** `where` is undefined and `all` true for an update of every row (`all: true`). */
  preUpdate: SignalBase & { where: Row | undefined; all: boolean; set: Row };
  /** After update() finished: rows changed in all batches. */
  postUpdate: SignalBase & { where: Row | undefined; all: boolean; set: Row; count: number };
  /** Before a chunk of updateFields is written. */
  preUpdateFields: SignalBase & { rows: Row[]; fields: string[] | undefined; key: string[] };
  /** After a chunk of updateFields committed; `missing` lists keys that matched no row. */
  postUpdateFields: SignalBase & {
    rows: Row[];
    fields: string[] | undefined;
    key: string[];
    count: number;
    missing: Row[];
  };
  /** Before a chunk of copyFrom is copied. */
  preCopyFrom: SignalBase & { rows: Row[] };
  /** After a chunk of copyFrom committed. */
  postCopyFrom: SignalBase & { rows: Row[]; count: number; returned?: Row[] };
  /** Before copyTo starts reading. */
  preCopyTo: SignalBase & { columns: string[]; where: Row | undefined };
  /** After copyTo has read every row. */
  postCopyTo: SignalBase & { columns: string[]; where: Row | undefined; count: number };
}

export type SignalName = keyof SignalMap;
export const SIGNAL_NAMES: readonly SignalName[] = [
  'preBulkCreate',
  'postBulkCreate',
  'preUpdate',
  'postUpdate',
  'preUpdateFields',
  'postUpdateFields',
  'preCopyFrom',
  'postCopyFrom',
  'preCopyTo',
  'postCopyTo',
];

export type SignalListener<K extends SignalName> = (event: SignalMap[K]) => void | Promise<void>;

/** A typed emitter whose listeners are awaited in order, and whose post listeners cannot break a write. */
export class Signals {
  private readonly listeners = new Map<SignalName, SignalListener<SignalName>[]>();
  /** Extra sinks (the worker publishes every signal as a queue event). */
  private readonly taps: ((name: SignalName, event: unknown) => void)[] = [];

  constructor(private readonly logger: Logger) {}

  on<K extends SignalName>(name: K, listener: SignalListener<K>): this {
    if (!SIGNAL_NAMES.includes(name))
      throw new BulkError('INVALID_OPTION', `unknown signal ${JSON.stringify(name)}`);
    const list = this.listeners.get(name) ?? [];
    list.push(listener as SignalListener<SignalName>);
    this.listeners.set(name, list);
    return this;
  }

  off<K extends SignalName>(name: K, listener: SignalListener<K>): this {
    const list = this.listeners.get(name);
    if (list)
      this.listeners.set(
        name,
        list.filter((l) => l !== listener),
      );
    return this;
  }

  /** Receive every signal emitted (after the listeners), e.g. to publish it elsewhere. */
  tap(fn: (name: SignalName, event: unknown) => void): () => void {
    this.taps.push(fn);
    return () => {
      const i = this.taps.indexOf(fn);
      if (i >= 0) this.taps.splice(i, 1);
    };
  }

  /** Listeners of `name` in this process (taps, which only observe, not counted). */
  listenerCount(name: SignalName): number {
    return this.listeners.get(name)?.length ?? 0;
  }

  hasListeners(name: SignalName): boolean {
    return (this.listeners.get(name)?.length ?? 0) > 0 || this.taps.length > 0;
  }

  /** Run pre listeners in order; the first that throws stops the operation. */
  async emitPre<K extends SignalName>(name: K, event: SignalMap[K]): Promise<void> {
    for (const l of this.listeners.get(name) ?? []) {
      try {
        await l(event);
      } catch (err) {
        throw new BulkError(
          'SIGNAL_REJECTED',
          `${event.table}: ${name} listener rejected: ${(err as Error)?.message ?? err}`,
          {
            table: event.table,
            cause: err,
          },
        );
      }
    }
    this.runTaps(name, event);
  }

  /** Run post listeners; a throw is logged and swallowed. */
  async emitPost<K extends SignalName>(name: K, event: SignalMap[K]): Promise<void> {
    for (const l of this.listeners.get(name) ?? []) {
      try {
        await l(event);
      } catch (err) {
        this.logger.error(
          { err, signal: name, table: event.table },
          'signal listener threw; the write stands',
        );
      }
    }
    this.runTaps(name, event);
  }

  private runTaps(name: SignalName, event: unknown): void {
    for (const t of this.taps) {
      try {
        t(name, event);
      } catch (err) {
        this.logger.error({ err, signal: name }, 'signal tap threw');
      }
    }
  }
}
