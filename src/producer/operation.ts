import { EventEmitter } from 'node:events';
import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { type ColumnType, type DecodeOptions, decoderFor } from '../core/decode.js';
import { BulkError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { setOwn } from '../core/rows.js';
import type { Row } from '../core/signals.js';
import type { BulkEvents, OperationEndEvent, ProgressEvent } from './events.js';
import { jobIds, moveState, type QueueKeys } from './redis.js';
import { decodeRows, decodeValue } from './values.js';

export interface OperationContext {
  queue: Queue;
  redis: Redis;
  keys: QueueKeys;
  events: () => BulkEvents;
  logger: Logger;
  /** How returned rows are decoded (as BulkClient's `decode`). */
  decode: DecodeOptions;
}

/** Returned rows from Postgres's text, decoded by column type as direct mode decodes them. */
function decodeText(r: NonNullable<ChunkJobReturn['returned']>, decode: DecodeOptions): Row[] {
  const decoders = r.types.map((t) => decoderFor(t, decode));
  const plain = r.names.map((n) => n !== '__proto__');
  return r.rows.map((texts) => {
    const row: Row = {};
    for (let j = 0; j < r.names.length; j++) {
      const v = decoders[j]!(texts[j] ?? null);
      if (plain[j]) row[r.names[j]!] = v;
      else setOwn(row, r.names[j]!, v);
    }
    return row;
  });
}

export interface OperationResult {
  count: number;
  /** bulkCreate/copyFrom with returning: the rows written, in input order. */
  rows?: Row[];
  /** updateFields: keys that matched no row. */
  missing?: Row[];
  /** copyTo: the file written. */
  path?: string;
}

export interface OperationStatus {
  id: string;
  kind: string;
  table: string;
  state: string;
  rowsDone: number;
  chunksDone: number;
  /** Job attempts that failed transiently and were retried. */
  retries: number;
  totalRows?: number;
  totalChunks?: number;
  createdAt?: number;
  finishedAt?: number;
  error?: { code: string; message: string };
}

/** What a chunk job returns (see the worker). */
export interface ChunkJobReturn {
  index: number;
  count: number;
  /** Returned rows as Postgres's text, with their columns' names and types. */
  returned?: { names: string[]; types: ColumnType[]; rows: (string | null)[][] };
  /** (Workers before `returned`: rows in the payload's value encoding.) */
  columns?: string[];
  rows?: unknown[][];
  missing?: unknown;
}

/** What the parent job returns once every chunk committed. */
export interface OperationJobReturn {
  count: number;
  chunks?: number;
  missing?: unknown;
  path?: string;
}

function num(v: string | null | undefined): number | undefined {
  return v === null || v === undefined || v === '' ? undefined : Number(v);
}

/**
 * A handle on one queued operation. `done()` resolves with the result once every chunk has
 * committed, or rejects with the BulkError a worker reported; 'progress' events follow the
 * chunks as they commit.
 */
export class Operation extends EventEmitter {
  constructor(
    private readonly ctx: OperationContext,
    readonly id: string,
  ) {
    super();
  }

  override on(event: 'progress', listener: (p: ProgressEvent) => void): this;
  override on(event: string, listener: (...args: never[]) => void): this;
  override on(event: string, listener: (...args: never[]) => void): this {
    super.on(event, listener as (...args: unknown[]) => void);
    if (event === 'progress') this.follow();
    return this;
  }

  private following = false;
  private follow(): void {
    if (this.following) return;
    this.following = true;
    const events = this.ctx.events();
    // Progress only moves forward: the snapshot below and the live events may cross.
    let lastChunks = 0;
    const emitProgress = (e: ProgressEvent) => {
      if (e.chunksDone <= lastChunks) return;
      lastChunks = e.chunksDone;
      this.emit('progress', e);
    };
    const onProgress = (e: ProgressEvent) => {
      if (e.operationId === this.id) emitProgress(e);
    };
    // Stop following once the operation has ended, so a long-lived producer does not gather
    // one listener per operation it ever watched.
    const stop = () => {
      events.off('progress', onProgress);
      events.off('completed', onEnd);
      events.off('failed', onEnd);
    };
    const onEnd = (e: OperationEndEvent) => {
      if (e.operationId === this.id) stop();
    };
    events.on('progress', onProgress);
    events.on('completed', onEnd);
    events.on('failed', onEnd);
    // A listener added after chunks committed (or after the end) first gets the counters as
    // they stand, read once the event reader is live so that nothing falls in between.
    void events
      .waitUntilReady()
      .then(() => this.status())
      .then((s) => {
        const { totalRows, totalChunks } = s;
        emitProgress({
          operationId: this.id,
          table: s.table,
          kind: s.kind,
          rowsDone: s.rowsDone,
          chunksDone: s.chunksDone,
          ...(totalRows !== undefined ? { totalRows } : {}),
          ...(totalChunks !== undefined ? { totalChunks } : {}),
        });
        // Ended before the reader was live: its end event will not come.
        if (s.state === 'completed' || s.state === 'failed' || s.state === 'cancelled') stop();
      })
      .catch(() => stop()); // no record (pruned, unknown id): nothing more will come
  }

  /** The operation's counters and state as stored beside the queue. */
  async status(): Promise<OperationStatus> {
    const h = await this.ctx.redis.hgetall(this.ctx.keys.op(this.id));
    if (!h || Object.keys(h).length === 0)
      throw new BulkError(
        'INVALID_OPTION',
        `no operation ${this.id} on queue ${this.ctx.keys.queue}`,
      );
    const s: OperationStatus = {
      id: this.id,
      kind: h.kind ?? '',
      table: h.table ?? '',
      state: h.state ?? 'unknown',
      rowsDone: num(h.rowsDone) ?? 0,
      chunksDone: num(h.chunksDone) ?? 0,
      retries: num(h.retries) ?? 0,
    };
    const optional = {
      totalRows: num(h.totalRows),
      totalChunks: num(h.totalChunks),
      createdAt: num(h.createdAt),
      finishedAt: num(h.finishedAt),
    };
    for (const [k, v] of Object.entries(optional))
      if (v !== undefined) (s as unknown as Record<string, number>)[k] = v;
    if (h.error) s.error = JSON.parse(h.error);
    return s;
  }

  /** Wait for the operation to finish. Rejects with a BulkError (code from the worker). */
  async done(options: { timeoutMs?: number } = {}): Promise<OperationResult> {
    const deadline =
      options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
    const events = this.ctx.events();
    // An end event may arrive while check() is in flight: remember it, so it is not lost.
    let ended = false;
    let wake: (() => void) | undefined;
    const onEnd = (e: OperationEndEvent) => {
      if (e.operationId !== this.id) return;
      ended = true;
      wake?.();
    };
    events.on('completed', onEnd);
    events.on('failed', onEnd);
    try {
      // Events only wake us early; without them (Redis slow to answer) the poll below still works,
      // and the deadline still holds.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        events.waitUntilReady(),
        new Promise((r) => {
          timer = setTimeout(r, Math.min(5000, Math.max(0, deadline - Date.now())));
        }),
      ]);
      clearTimeout(timer);
      for (;;) {
        const r = await this.check();
        if (r) return r;
        if (Date.now() >= deadline)
          throw new BulkError(
            'CANCELLED',
            `operation ${this.id} did not finish within ${options.timeoutMs} ms`,
          );
        // Events wake us early; the poll covers a missed event.
        if (!ended)
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, Math.min(1000, Math.max(1, deadline - Date.now())));
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
        wake = undefined;
        ended = false;
      }
    } finally {
      events.off('completed', onEnd);
      events.off('failed', onEnd);
    }
  }

  /** The result if the operation has ended (throws its error if it failed), else undefined. */
  private async check(): Promise<OperationResult | undefined> {
    const h = await this.ctx.redis.hmget(this.ctx.keys.op(this.id), 'state', 'error');
    if (h[0] === 'failed' || h[0] === 'cancelled') throw this.errorOf(h[1], h[0]);
    // State first, then the job: a job read before it completed carries no return value yet.
    const state = await this.ctx.queue.getJobState(jobIds.parent(this.id));
    if (state === 'unknown') {
      if (h[0] === null)
        throw new BulkError(
          'INVALID_OPTION',
          `no operation ${this.id} on queue ${this.ctx.keys.queue}`,
        );
      // Completed long ago and its job removed (removeOnComplete): the counters still tell.
      if (h[0] === 'completed') return this.fromCounters();
      return undefined;
    }
    if (state !== 'completed' && state !== 'failed') return undefined;
    const job = await Job.fromId(this.ctx.queue, jobIds.parent(this.id));
    if (!job) return undefined;
    if (state === 'failed')
      throw this.errorOf(
        (await this.ctx.redis.hget(this.ctx.keys.op(this.id), 'error')) ?? null,
        job.failedReason,
      );
    const ret = (job.returnvalue ?? { count: 0 }) as OperationJobReturn;
    const out: OperationResult = { count: ret.count };
    if (ret.missing !== undefined) out.missing = decodeValue(ret.missing, 'missing') as Row[];
    if (ret.path !== undefined) out.path = ret.path;
    const data = job.data as { options?: { returning?: unknown } };
    if (data.options?.returning) out.rows = await this.gatherRows(job);
    return out;
  }

  private async fromCounters(): Promise<OperationResult> {
    const [rowsDone, returning] = await this.ctx.redis.hmget(
      this.ctx.keys.op(this.id),
      'rowsDone',
      'returning',
    );
    if (returning === '1')
      throw new BulkError(
        'INVALID_OPTION',
        `operation ${this.id} completed, but its returned rows were removed from the queue`,
      );
    return { count: Number(rowsDone ?? 0) };
  }

  private errorOf(
    stored: string | null | undefined,
    fallback: string | null | undefined,
  ): BulkError {
    if (stored) return BulkError.fromJSON(JSON.parse(stored));
    return new BulkError(
      'DATABASE_ERROR',
      `operation ${this.id} failed: ${fallback ?? 'unknown reason'}`,
    );
  }

  /** Returned rows of every chunk, in chunk order, decoded as in direct mode. */
  private async gatherRows(parent: Job): Promise<Row[]> {
    const values = (await parent.getChildrenValues()) as Record<
      string,
      ChunkJobReturn | { seal: true }
    >;
    const chunks = Object.values(values)
      .filter((v): v is ChunkJobReturn => typeof (v as ChunkJobReturn).index === 'number')
      .sort((a, b) => a.index - b.index);
    const rows: Row[] = [];
    for (const c of chunks) {
      if (c.returned) rows.push(...decodeText(c.returned, this.ctx.decode));
      else if (c.columns && c.rows) rows.push(...decodeRows(c.columns, c.rows, 0));
    }
    return rows;
  }

  /**
   * Cancel: chunks not yet started are removed and the operation fails with CANCELLED; chunks
   * already committed stay committed.
   */
  async cancel(): Promise<void> {
    const key = this.ctx.keys.op(this.id);
    const error = JSON.stringify({
      code: 'CANCELLED',
      message: `operation ${this.id} was cancelled`,
    });
    // An operation that has already ended stays as it ended.
    const moved = await moveState(this.ctx.redis, key, {
      state: 'cancelled',
      error,
      finishedAt: String(Date.now()),
    });
    if (!moved) return;
    const job = await Job.fromId(this.ctx.queue, jobIds.parent(this.id));
    if (job) {
      try {
        await job.removeUnprocessedChildren();
      } catch (err) {
        this.ctx.logger.warn(
          { err, operationId: this.id },
          'could not remove unprocessed chunks; workers will skip them',
        );
      }
    }
  }
}
