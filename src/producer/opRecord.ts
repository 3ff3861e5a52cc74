import { createHash } from 'node:crypto';
import { type FlowProducer, Job, type JobsOptions, type Queue } from 'bullmq';
import { BulkError } from '../core/errors.js';
import { defaultOf } from '../core/settings.js';
import { publishEvent } from '../queue/events.js';
import { jobIds } from '../queue/keys.js';
import type { OperationPayload, SealPayload } from '../queue/payload.js';
import type { QueueState } from '../queue/state.js';

/**
 * An operation's record beside the queue and its jobs: who enqueued it as what, its state, the
 * seal. Everything the producer does beside adding chunk jobs.
 */

/** As long as the ledger keeps its rows: re-enqueueing an operation id stays idempotent. */
const RETENTION_S = defaultOf('ledgerRetentionMs') / 1000;

/** Parents stay a week (done() reads their result); chunk data goes soon (it can be large). */
export const PARENT_JOB: JobsOptions = {
  attempts: defaultOf('attempts'),
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: RETENTION_S, count: 10_000 },
  removeOnFail: { age: RETENTION_S },
};

export function chunkJobOptions(
  id: string,
  index: number,
  qualifiedQueue: string,
  attempts: number,
): JobsOptions {
  return {
    jobId: jobIds.chunk(id, index),
    parent: { id: jobIds.parent(id), queue: qualifiedQueue },
    failParentOnFailure: true,
    attempts,
    backoff: { type: 'exponential', delay: 1000 },
    removeOnComplete: { count: 1000 },
    removeOnFail: { age: RETENTION_S },
  };
}

/**
 * Record the operation under its id, or find the earlier record: the same id for another
 * operation (kind, table, options or, for update/copyTo, what they do) is OPERATION_CONFLICT.
 * `created` says whether this call made the record (and so may fail it if enqueueing stops).
 */
export async function register(
  state: QueueState,
  id: string,
  identityOf: object,
  fields: { kind: string; table: string; returning?: boolean; encoding?: string },
): Promise<{ created: boolean; sealed: boolean; state: string | null }> {
  // A digest: the identity holds an update's or a copyTo's filter values, kept out of the store.
  const identity = createHash('sha256').update(JSON.stringify(identityOf)).digest('base64url');
  const r = await state.register(id, identity, {
    kind: fields.kind,
    table: fields.table,
    returning: fields.returning === true,
    ...(fields.encoding !== undefined ? { encoding: fields.encoding } : {}),
  });
  if (!r.created && r.identity !== identity)
    throw new BulkError(
      'OPERATION_CONFLICT',
      `operation ${id} was enqueued before as a different operation`,
      { table: fields.table },
    );
  // Chunks encoded another way than the first time would differ: say why, not "chunk 0 differs".
  if (!r.created && fields.encoding !== undefined && (r.encoding ?? 'v1') !== fields.encoding)
    throw new BulkError(
      'OPERATION_CONFLICT',
      `operation ${id} was enqueued before with its rows encoded as ${r.encoding ?? 'v1'}, and they would now be ${fields.encoding} (the table's columns changed, or its catalog snapshot was not yet published then): enqueue it under a new id`,
      { table: fields.table },
    );
  return { created: r.created, sealed: r.sealed, state: r.state };
}

/** The parent job with its delayed seal child: the parent cannot finish before the seal runs. */
export async function addFlow(
  flows: FlowProducer,
  queue: string,
  parent: OperationPayload,
  sealTimeoutMs: number,
): Promise<void> {
  const id = parent.operationId;
  const seal: SealPayload = { v: 1, operationId: id, seal: true };
  await flows.add({
    name: 'operation',
    queueName: queue,
    data: parent,
    opts: { jobId: jobIds.parent(id), ...PARENT_JOB },
    children: [
      {
        name: 'seal',
        queueName: queue,
        data: seal,
        opts: {
          jobId: jobIds.seal(id),
          delay: sealTimeoutMs,
          failParentOnFailure: true,
          removeOnComplete: true,
        },
      },
    ],
  });
}

/** Let the seal run now (once enqueueing ended). Another producer may have promoted it already. */
export async function promoteSeal(queue: Queue, id: string): Promise<void> {
  const sealJob = await Job.fromId(queue, jobIds.seal(id));
  if (!sealJob || (await sealJob.getState()) !== 'delayed') return;
  try {
    await sealJob.promote();
  } catch (err) {
    if ((await sealJob.getState()) === 'delayed') throw err;
  }
}

/** Fail an operation whose enqueueing stopped (bad row, payload too large, source error). */
export async function abandon(
  state: QueueState,
  queue: Queue,
  op: { id: string; table: string; kind: string },
  err: unknown,
): Promise<void> {
  const bulk =
    err instanceof BulkError
      ? err
      : new BulkError(
          'ENQUEUE_STOPPED',
          `operation ${op.id}: enqueueing stopped: ${String((err as Error)?.message ?? err)}`,
          {
            table: op.table,
            cause: err,
          },
        );
  if (await state.fail(op.id, JSON.stringify(bulk.toJSON())))
    await publishEvent(state, 'failed', {
      operationId: op.id,
      table: op.table,
      kind: op.kind,
      state: 'failed',
      error: { code: bulk.code, message: bulk.message },
    });
  // Its chunks are refused from now on: their data (version 3) is not needed.
  await state.dropChunkData(op.id).catch(() => {});
  // The seal now fails (never sealed), failing the parent job and releasing it.
  await promoteSeal(queue, op.id);
}
