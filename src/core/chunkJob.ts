import type { BulkClient } from './client.js';
import { bulkCreateSteps } from './ops/bulkCreate.js';
import type { OpContext } from './ops/context.js';
import { copyFromSteps } from './ops/copyFrom.js';
import { planInsert } from './ops/insertCommon.js';
import { planUpdateFields, updateFieldsSteps } from './ops/updateFields.js';
import { type InsertLikeOptions, QUEUE_DEFAULT_BATCH_SIZE, resolveWrite } from './options.js';
import { runOneChunk } from './runner.js';
import type { Row } from './signals.js';

export type ChunkKind = 'bulkCreate' | 'updateFields' | 'copyFrom';

export interface ChunkJobOptions extends InsertLikeOptions {
  fields?: string[];
  operationId: string;
  batchSize?: number;
}

export interface ChunkJobResult {
  count: number;
  /** bulkCreate/copyFrom with returning: rows written, in input order. */
  rows?: Row[];
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
  const { fields, key, returning, onConflict, ...rest } = options;
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
  const steps = kind === 'bulkCreate' ? bulkCreateSteps(ctx, plan) : copyFromSteps(ctx, plan);
  const r = await runOneChunk(engine, c, steps, at);
  if (!plan.returning) return { count: r.count };
  return { count: r.count, rows: (r.returned ?? []).filter((x): x is Row => x !== undefined) };
}
