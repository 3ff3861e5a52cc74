import { EventEmitter } from 'node:events';
import { Job, type Queue } from 'bullmq';
import { type DecodeOptions, decoderFor } from '../core/decode.js';
import { BulkError, storedError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RejectedRecord } from '../core/ops/copyText.js';
import { setOwn } from '../core/rows.js';
import type { Row } from '../core/signals.js';
import type { BulkEvents, OperationEndEvent, ProgressEvent } from '../queue/events.js';
import { jobIds } from '../queue/keys.js';
import { type ChunkJobReturn, chunkReturns, type OperationJobReturn } from '../queue/payload.js';
import {
  FINAL_STATES,
  type OperationStatus,
  type OpRecord,
  type QueueState,
  statusOf,
} from '../queue/state.js';
import { decodeRows, decodeValue } from '../queue/values.js';

/** The queue an operation is on, as its handle reaches it. */
export interface OperationQueue {
  name: string;
  bull: Queue;
  state: QueueState;
  events: () => BulkEvents;
}

export interface OperationContext {
  /** The queue holding the operation (known when it was enqueued here, else found by its record). */
  locate: (id: string) => Promise<OperationQueue>;
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
  /**
   * copyFromCsv with onError 'skip': the records left out, in file order (file line, code and
   * reason; the values stay in the file).
   */
  rejected?: RejectedRecord[];
}

/** Skipped records in input order: by file line, else by row index. */
function byPlace(a: RejectedRecord, b: RejectedRecord): number {
  return (a.line ?? a.row ?? 0) - (b.line ?? b.row ?? 0);
}

function noOperation(id: string, q: OperationQueue): BulkError {
  return new BulkError('UNKNOWN_OPERATION', `no operation ${id} on queue ${q.name}`);
}

/**
 * A handle on one queued operation. `done()` resolves with the result once every chunk has
 * committed, or rejects with the BulkError a worker reported; 'progress' events follow the
 * chunks as they commit.
 */
export class Operation extends EventEmitter {
  private where: Promise<OperationQueue> | undefined;
  constructor(
    private readonly ctx: OperationContext,
    readonly id: string,
  ) {
    super();
  }

  /** The name of the queue the operation is on. */
  async queueName(): Promise<string> {
    return (await this.q()).name;
  }

  private q(): Promise<OperationQueue> {
    this.where ??= this.ctx.locate(this.id);
    return this.where;
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
    void this.q().then(
      (q) => this.followOn(q.events()),
      () => {},
    );
  }

  private followOn(events: BulkEvents): void {
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
        if (FINAL_STATES.has(s.state)) stop();
      })
      .catch(() => stop()); // no record (pruned, unknown id): nothing more will come
  }

  /**
   * Wait until no job of this operation is running, up to `timeoutMs` (default 15 s). After a
   * failure, chunks already in flight still commit or roll back (chunks not started are
   * skipped): once settled, `status()` and `committedChunks()` say what stays written. Resolves
   * false if jobs still ran at the deadline (a worker that died holding one, say).
   */
  async settle(timeoutMs = 15_000): Promise<boolean> {
    const q = await this.q();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const running = await q.state.activeWorkers([this.id]);
      if (!running.has(this.id)) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * The indexes of the chunks that have committed, in order (chunk i holds input rows from
   * i × batchSize): after a failure, which rows stay written. Kept as long as the operation's
   * record.
   */
  async committedChunks(): Promise<number[]> {
    const q = await this.q();
    return q.state.doneChunks(this.id);
  }

  /**
   * The records its committed chunks left out (copyFromCsv with onError 'skip'), in file order:
   * after a failure too, when `done()` has nothing to return them in. [] once BullMQ removed
   * the parent job.
   */
  async rejectedRecords(): Promise<RejectedRecord[]> {
    const q = await this.q();
    const parent = await Job.fromId(q.bull, jobIds.parent(this.id));
    if (!parent) return [];
    return (await chunkReturns(parent)).flatMap((c) => c.rejected ?? []).sort(byPlace);
  }

  /** The operation's counters and state as stored beside the queue. */
  async status(): Promise<OperationStatus> {
    const q = await this.q();
    const r = await q.state.record(this.id);
    if (!r) throw noOperation(this.id, q);
    return statusOf(r, q.name);
  }

  /**
   * Wait for the operation to finish. Rejects with a BulkError (code from the worker); with
   * TIMEOUT when `timeoutMs` passes first (the operation goes on); with UNKNOWN_OPERATION when
   * no such operation is recorded.
   */
  async done(options: { timeoutMs?: number } = {}): Promise<OperationResult> {
    const deadline =
      options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
    const q = await this.q();
    const events = q.events();
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
        const r = await this.check(q);
        if (r) return r;
        if (Date.now() >= deadline)
          throw new BulkError(
            'TIMEOUT',
            `operation ${this.id} did not finish within ${options.timeoutMs} ms (it may still finish)`,
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
  private async check(q: OperationQueue): Promise<OperationResult | undefined> {
    const rec = await q.state.record(this.id);
    if (rec?.state === 'failed' || rec?.state === 'cancelled')
      throw storedError(rec.error, `operation ${rec.state}`, this.id);
    // State first, then the job: a job read before it completed carries no return value yet.
    const state = await q.bull.getJobState(jobIds.parent(this.id));
    if (state === 'unknown') {
      if (rec === null) throw noOperation(this.id, q);
      // Completed long ago and its job removed (removeOnComplete): the counters still tell.
      if (rec.state === 'completed') return this.fromCounters(rec);
      return undefined;
    }
    if (state !== 'completed' && state !== 'failed') return undefined;
    const job = await Job.fromId(q.bull, jobIds.parent(this.id));
    if (!job) return undefined;
    if (state === 'failed')
      throw storedError(
        (await q.state.record(this.id))?.error,
        await this.failureReason(q, job),
        this.id,
      );
    const ret = (job.returnvalue ?? { count: 0 }) as OperationJobReturn;
    const out: OperationResult = { count: ret.count };
    if (ret.missing !== undefined) out.missing = decodeValue(ret.missing, 'missing') as Row[];
    if (ret.path !== undefined) out.path = ret.path;
    if (ret.rejected !== undefined) out.rejected = [...ret.rejected].sort(byPlace);
    const data = job.data as { options?: { returning?: unknown } };
    if (data.options?.returning) out.rows = await this.gatherRows(job);
    return out;
  }

  private fromCounters(rec: OpRecord): OperationResult {
    if (rec.returning)
      throw new BulkError(
        'RESULT_EXPIRED',
        `operation ${this.id} completed, but its returned rows were removed from the queue`,
      );
    return { count: rec.rowsDone };
  }

  /**
   * Why the parent job failed. BullMQ fails a parent for its child ("child <key> failed"): the
   * child's own reason says more (a worker's `CODE: message`, or BullMQ's stall limit).
   */
  private async failureReason(q: OperationQueue, parent: Job): Promise<string | undefined> {
    const key = /^child (\S+) failed$/.exec(parent.failedReason ?? '')?.[1];
    if (!key) return parent.failedReason;
    const child = await Job.fromId(q.bull, key.slice(key.lastIndexOf(':') + 1)).catch(
      () => undefined,
    );
    return child?.failedReason || parent.failedReason;
  }

  /** Returned rows of every chunk, in chunk order, decoded as in direct mode. */
  private async gatherRows(parent: Job): Promise<Row[]> {
    const chunks = await chunkReturns(parent);
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
    const q = await this.q();
    const error = JSON.stringify({
      code: 'CANCELLED',
      message: `operation ${this.id} was cancelled`,
    });
    // An operation that has already ended stays as it ended.
    const moved = await q.state.finish(this.id, 'cancelled', { error });
    if (!moved) return;
    const job = await Job.fromId(q.bull, jobIds.parent(this.id));
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
    // Chunks that have not started are refused now (CANCELLED): their data is not needed.
    await q.state.dropChunkData(this.id).catch(() => {});
  }
}
