import { Readable } from 'node:stream';
import type { BulkClient } from './client.js';
import type { DbClient } from './db.js';
import { BulkError } from './errors.js';
import type { TableMeta } from './meta.js';
import { bulkCreateSteps } from './ops/bulkCreate.js';
import type { OpContext } from './ops/context.js';
import { copyFromSteps } from './ops/copyFrom.js';
import { type CopyToOptions, copyToIterate } from './ops/copyTo.js';
import type { InsertChunkResult } from './ops/insertCommon.js';
import { planInsert } from './ops/insertCommon.js';
import { keyBatches, planUpdate, type UpdateArgs, updateSteps } from './ops/update.js';
import { planUpdateFields, updateFieldsSteps } from './ops/updateFields.js';
import {
  BULK_CREATE_OPTIONS,
  type Columns,
  INSERT_OPTIONS,
  type InsertLikeOptions,
  type ResolvedWrite,
  resolveWrite,
  type WriteOptions,
} from './options.js';
import {
  type ChunkResultBase,
  type ChunkSteps,
  chunked,
  runChunks,
  runInOneTransaction,
  type Source,
} from './runner.js';
import type { Row } from './signals.js';

export type RowsInput<T> = readonly T[] | Iterable<T> | AsyncIterable<T>;

export interface BulkCreateOptions extends InsertLikeOptions {
  /**
   * 'auto' (default): COPY without onConflict (the fastest), INSERT ... SELECT with it.
   * 'copy' or 'insert' to choose; both give the same rows, counts and errors.
   */
  strategy?: 'auto' | 'copy' | 'insert';
}
export interface CopyFromOptions extends InsertLikeOptions {}

export interface UpdateFieldsOptions extends WriteOptions {
  /** Columns to write (default: every column the rows carry, except the key). */
  fields?: Columns;
  /** Columns that match rows (default: the primary key). */
  key?: Columns;
}

export interface CreateResult<T> {
  /** Rows inserted (or, with onConflict update, inserted or updated). */
  count: number;
  /** With `returning`: the rows written, in input order; rows skipped by ON CONFLICT are absent. */
  rows?: T[];
}

export interface UpdateFieldsResult {
  count: number;
  /** Keys (as given) that matched no row. */
  missing: Row[];
}

function isRowsInput(v: unknown): v is RowsInput<unknown> {
  return (
    Array.isArray(v) ||
    (v !== null &&
      typeof v === 'object' &&
      (typeof (v as Iterable<unknown>)[Symbol.iterator] === 'function' ||
        typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'))
  );
}

/** The bulk operations of one table. Every write splits its input into chunks of `batchSize`. */
export class BulkModel<T extends Row = Row> {
  constructor(
    private readonly db: BulkClient,
    readonly table: string,
  ) {}

  /** Table metadata (columns, types, primary key) from the catalog. */
  meta(): Promise<TableMeta> {
    return this.db.meta(this.table);
  }

  private context(op: ResolvedWrite): OpContext {
    return {
      engine: this.db.engine,
      op,
      signals: op.signals ? this.db.signals : null,
      decode: this.db.decode,
    };
  }

  private async run<P, R extends ChunkResultBase>(
    meta: TableMeta,
    op: ResolvedWrite,
    input: RowsInput<Row>,
    steps: ChunkSteps<P, R>,
  ): Promise<R[]> {
    if (!isRowsInput(input)) {
      throw new BulkError(
        'INVALID_OPTION',
        `${meta.displayName}: rows must be an array or an (async) iterable of row objects`,
        {
          table: meta.displayName,
        },
      );
    }
    const chunks = () => chunked(input as Iterable<Row>, op.batchSize);
    return this.execute(meta, op, steps, chunks, chunks, Array.isArray(input));
  }

  /**
   * Run an operation's chunks: all in one transaction (`transaction: 'operation'`, the source
   * read on that transaction's client, `replayable` when it can be read again for a retry), or
   * each in its own; then forget the ledger rows of a call that has no caller-given id.
   */
  private async execute<P, R extends ChunkResultBase>(
    meta: TableMeta,
    op: ResolvedWrite,
    steps: ChunkSteps<P, R>,
    inOne: (client: DbClient) => Source,
    separately: () => Source,
    replayable: boolean,
  ): Promise<R[]> {
    const engine = this.db.engine;
    if (engine.ledger) await engine.ledger.ensure(engine.pool);
    const runOpts = {
      operationId: op.operationId,
      fingerprint: op.fingerprint,
      concurrency: op.concurrency,
      transaction: op.transaction,
      table: meta.displayName,
      onChunk: op.onProgress,
    };
    const results =
      op.transaction === 'operation'
        ? await runInOneTransaction(engine, inOne, replayable, steps, runOpts)
        : await runChunks(engine, separately(), steps, runOpts);
    if (engine.ledger && op.ephemeralId && results.length > 0) {
      // The call is over: its ledger rows only mattered while a chunk could still be retried.
      await engine.ledger.forget(engine.pool, op.operationId).catch((err) => {
        this.db.logger.warn(
          { err, operationId: op.operationId },
          'could not clear ledger rows; pruneLedger() will',
        );
      });
    }
    return results;
  }

  private static gather<T>(results: InsertChunkResult[], returning: boolean): CreateResult<T> {
    let count = 0;
    const rows: T[] = [];
    for (const r of results) {
      count += r.count;
      if (r.returned) for (const x of r.returned) if (x !== undefined) rows.push(x as T);
    }
    return returning ? { count, rows } : { count };
  }

  /**
   * Insert rows in chunks. Rows that omit a column get its default. With `returning`, the
   * created rows come back in input order with their generated keys and defaults, paired by
   * key. `strategy` 'auto' writes with COPY, or with one `INSERT ... SELECT` per chunk (values as
   * one JSON document: no parameter limit) when `onConflict` is given.
   */
  bulkCreate(
    rows: RowsInput<Partial<T>>,
    options: BulkCreateOptions = {},
  ): Promise<CreateResult<T>> {
    return this.insertRows('bulkCreate', rows, options);
  }

  /**
   * COPY rows in with `COPY ... FROM STDIN` (text format), streamed chunk by chunk: an async
   * iterable of any length uses memory bounded by batchSize and concurrency. `returning` and
   * `onConflict` work as for bulkCreate.
   */
  copyFrom(rows: RowsInput<Partial<T>>, options: CopyFromOptions = {}): Promise<CreateResult<T>> {
    return this.insertRows('copyFrom', rows, options);
  }

  private async insertRows(
    kind: 'bulkCreate' | 'copyFrom',
    rows: RowsInput<Partial<T>>,
    options: BulkCreateOptions,
  ): Promise<CreateResult<T>> {
    this.db.assertOpen();
    const op = resolveWrite(options, kind === 'bulkCreate' ? BULK_CREATE_OPTIONS : INSERT_OPTIONS);
    const meta = await this.meta();
    const plan = planInsert(
      meta,
      kind === 'bulkCreate' ? options : { ...options, strategy: 'copy' },
      this.db.decode,
    );
    const steps =
      kind === 'bulkCreate'
        ? bulkCreateSteps(this.context(op), plan)
        : copyFromSteps(this.context(op), plan);
    const results = await this.run(meta, op, rows as RowsInput<Row>, steps);
    return BulkModel.gather<T>(results, plan.returning !== undefined);
  }

  /**
   * Heterogeneous update: every row gets its own values, one UPDATE ... FROM per chunk, rows
   * matched by primary key (or `key`). `null` writes NULL. Reports keys that matched no row.
   */
  async updateFields(
    rows: RowsInput<Partial<T>>,
    options: UpdateFieldsOptions = {},
  ): Promise<UpdateFieldsResult> {
    this.db.assertOpen();
    const { fields, key, ...rest } = options;
    const op = resolveWrite(rest);
    const meta = await this.meta();
    // Duplicate keys are found across the whole call for arrays, within each chunk for streams.
    const plan = planUpdateFields(meta, { fields, key, acrossChunks: Array.isArray(rows) });
    const results = await this.run(
      meta,
      op,
      rows as RowsInput<Row>,
      updateFieldsSteps(this.context(op), plan),
    );
    let count = 0;
    const missing: Row[] = [];
    for (const r of results) {
      count += r.count;
      missing.push(...r.missing);
    }
    return { count, missing };
  }

  /**
   * Homogeneous update: set the same values on every row the filter matches, in batches of
   * `batchSize` primary keys (each batch its own transaction), so no single lock is held long.
   */
  async update(args: UpdateArgs, options: WriteOptions = {}): Promise<{ count: number }> {
    this.db.assertOpen();
    const op = resolveWrite(options);
    const meta = await this.meta();
    let plan = planUpdate(meta, args);
    const signals = op.signals ? this.db.signals : null;
    const base = {
      table: meta.displayName,
      operationId: op.operationId,
      chunkIndex: -1,
      batchSize: op.batchSize,
    };
    let set = args.set;
    if (signals) {
      const all = plan.where === undefined;
      const ev = { ...base, where: plan.where, all, set: { ...args.set } };
      await signals.emitPre('preUpdate', ev);
      plan = planUpdate(
        meta,
        ev.all === true ? { all: true, set: ev.set } : { where: ev.where as Row, set: ev.set },
      );
      set = ev.set; // what a listener changed is what was written, and what postUpdate reports
    }
    const engine = this.db.engine;
    const results = await this.execute(
      meta,
      op,
      updateSteps(plan),
      (client) => keyBatches(engine, plan, op.batchSize, undefined, client),
      // An operation id of the caller's (a queue job) may run again: resume its batches.
      () =>
        keyBatches(
          engine,
          plan,
          op.batchSize,
          op.ephemeralId ? undefined : { operationId: op.operationId, fingerprint: op.fingerprint },
        ),
      true,
    );
    const count = results.reduce((n, r) => n + r.count, 0);
    if (signals)
      await signals.emitPost('postUpdate', {
        ...base,
        where: plan.where,
        all: plan.where === undefined,
        set,
        count,
      });
    return { count };
  }

  /**
   * Stream rows out with COPY TO STDOUT: decoded row objects (default), or with
   * `format: 'csv' | 'text'` the raw output as Buffers, for export. The generator's return
   * value (seen when iterating by hand) is `{ count }`, the rows Postgres sent.
   */
  copyTo(options?: CopyToOptions & { format?: 'rows' }): AsyncGenerator<T, { count: number }>;
  copyTo(
    options: CopyToOptions & { format: 'csv' | 'text' },
  ): AsyncGenerator<Buffer, { count: number }>;
  copyTo(options: CopyToOptions & { format: 'ndjson' }): AsyncGenerator<string, { count: number }>;
  copyTo(options: CopyToOptions = {}): AsyncGenerator<T | Buffer | string, { count: number }> {
    const db = this.db;
    const table = this.table;
    const { signals: sig, ...rest } = options;
    // One generator, not a wrapper around one: each row is one await, not two.
    return copyToIterate(
      {
        engine: db.engine,
        signals: sig === false ? null : db.signals,
        decode: db.decode,
        meta: () => {
          db.assertOpen();
          return db.meta(table);
        },
        operationId: globalThis.crypto.randomUUID(),
      },
      rest,
    ) as AsyncGenerator<T, { count: number }>;
  }

  /** copyTo as a Node Readable of raw CSV (header included), COPY text or NDJSON, to pipe to a file. */
  copyToStream(options: CopyToOptions & { format: 'csv' | 'text' | 'ndjson' }): Readable {
    return Readable.from(this.copyTo(options as CopyToOptions & { format: 'csv' }));
  }
}
