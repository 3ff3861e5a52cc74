import type { BulkClient } from './client.js';
import { type CsvDialect, checkCsvDialect } from './csvDialect.js';
import { type ColumnType, columnType } from './decode.js';
import { bulkCreateSteps } from './ops/bulkCreate.js';
import type { OpContext } from './ops/context.js';
import { copyFromSteps } from './ops/copyFrom.js';
import {
  type CopyTextGroup,
  checkCopyGroups,
  copyTextSteps,
  type RejectedRecord,
} from './ops/copyText.js';
import { planInsert, rowText } from './ops/insertCommon.js';
import { planUpdateFields, updateFieldsSteps } from './ops/updateFields.js';
import { type InsertLikeOptions, QUEUE_DEFAULT_BATCH_SIZE, resolveWrite } from './options.js';
import { runOneChunk } from './runner.js';
import type { Row } from './signals.js';
import type { OnConflict } from './sql/insert.js';

export type ChunkKind = 'bulkCreate' | 'updateFields' | 'copyFrom';

export interface ChunkJobOptions extends InsertLikeOptions {
  fields?: string[];
  operationId: string;
  batchSize?: number;
  /** With returning: also give Postgres's text of the returned rows (`text`). */
  rowText?: boolean;
}

export interface ChunkJobResult {
  count: number;
  /** bulkCreate/copyFrom with returning: rows written, in input order. */
  rows?: Row[];
  /** With `rowText`: the returned rows as Postgres's text, with their columns' names and types. */
  text?: { names: string[]; types: ColumnType[]; rows: (string | null)[][] };
  /** updateFields: keys that matched no row. */
  missing?: Row[];
}

/**
 * Run one chunk of an operation whose chunks are spread over queue jobs: the same steps as the
 * direct-mode call, under the ledger keyed by (operationId, chunk index), so a chunk delivered
 * twice writes once.
 */
export async function executeChunk(
  db: BulkClient,
  kind: ChunkKind,
  table: string,
  rows: Row[],
  chunk: { index: number; offset: number },
  options: ChunkJobOptions,
): Promise<ChunkJobResult> {
  db.assertOpen();
  const { fields, key, returning, onConflict, rowText: keepText, ...rest } = options;
  // A chunk job holds QUEUE_DEFAULT_BATCH_SIZE rows unless the producer said otherwise.
  const op = resolveWrite({ ...rest, batchSize: rest.batchSize ?? QUEUE_DEFAULT_BATCH_SIZE });
  const meta = await db.meta(table);
  const engine = db.engine;
  if (engine.ledger) await engine.ledger.ensure(engine.pool);
  const ctx: OpContext = { engine, op, signals: op.signals ? db.signals : null, decode: db.decode };
  const c = { index: chunk.index, offset: chunk.offset, rows };
  const at = {
    operationId: op.operationId,
    table: meta.displayName,
    fingerprint: op.fingerprint,
  };
  if (kind === 'updateFields') {
    const plan = planUpdateFields(meta, { fields, key, acrossChunks: false });
    const r = await runOneChunk(engine, c, updateFieldsSteps(ctx, plan), at);
    return { count: r.count, missing: r.missing };
  }
  const plan = planInsert(
    meta,
    { key, returning, onConflict, ...(kind === 'copyFrom' ? { strategy: 'copy' as const } : {}) },
    db.decode,
  );
  if (keepText) plan.keepText = true;
  const steps = kind === 'bulkCreate' ? bulkCreateSteps(ctx, plan) : copyFromSteps(ctx, plan);
  const r = await runOneChunk(engine, c, steps, at);
  if (!plan.returning) return { count: r.count };
  const out = (r.returned ?? []).filter((x): x is Row => x !== undefined);
  if (!keepText) return { count: r.count, rows: out };
  const cols = plan.returning.columns;
  return {
    count: r.count,
    rows: out,
    text: {
      names: cols.map((c) => c.name),
      types: cols.map(columnType),
      rows: out.map((row) => rowText(row) ?? cols.map(() => null)),
    },
  };
}

export interface CopyChunkOptions {
  operationId: string;
  fingerprint?: string | undefined;
  format: 'text' | 'csv';
  /** CSV: the file's delimiter and NULL text, when not COPY's defaults. */
  csv?: CsvDialect | undefined;
  onConflict?: OnConflict | undefined;
  /** CSV from a file: the file line of the chunk's first record. */
  firstLine?: number | undefined;
  /** CSV without onConflict: leave out records Postgres refuses, up to maxErrors (default 0). */
  onError?: 'skip' | undefined;
  maxErrors?: number | undefined;
  /**
   * The data was encoded for the column types this worker's catalog has: check in the chunk's
   * transaction that the table still has them (CATALOG_MISMATCH, rolled back, if not).
   */
  verifyTypes?: boolean;
  /** The caller ran checkCopyGroups on these groups already (they are scanned once). */
  groupsChecked?: boolean;
}

/**
 * Run one chunk whose rows arrive as COPY data (a queue chunk the producer encoded, records of
 * a CSV file): checked (row counts, no end-of-data marker, writable columns), then streamed
 * into COPY as it is, under the ledger like any chunk. No signals: a worker whose process
 * listens for them decodes the rows and uses executeChunk instead.
 */
export async function executeCopyChunk(
  db: BulkClient,
  table: string,
  groups: CopyTextGroup[],
  chunk: { index: number; offset: number },
  options: CopyChunkOptions,
): Promise<{ count: number; rejected?: RejectedRecord[] }> {
  db.assertOpen();
  const meta = await db.meta(table);
  if (!options.groupsChecked) checkCopyGroups(groups, options.format, meta.displayName);
  const engine = db.engine;
  if (engine.ledger) await engine.ledger.ensure(engine.pool);
  // onConflict checked as for rows (target and update columns exist, ...).
  const { onConflict } = planInsert(meta, { onConflict: options.onConflict }, db.decode);
  const steps = copyTextSteps(
    {
      meta,
      format: options.format,
      csv: options.format === 'csv' ? checkCsvDialect(options.csv) : undefined,
      onConflict,
      firstLine: options.firstLine,
      onError: options.onError,
      maxErrors: options.maxErrors,
      verifyTypes: options.verifyTypes === true,
    },
    groups,
  );
  const at = {
    operationId: options.operationId,
    table: meta.displayName,
    fingerprint: options.fingerprint,
  };
  return runOneChunk(engine, { index: chunk.index, offset: chunk.offset, rows: [] }, steps, at);
}
