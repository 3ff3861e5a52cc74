// The public surface of bulkmodel. Everything not exported here is internal.
export { BulkClient, type BulkClientOptions, type ConnectionCheck } from './core/client.js';
export type { DbClient, DbPool, Queryable } from './core/db.js';
export { type DecodeOptions, EXACT } from './core/decode.js';
export { BulkError, type BulkErrorCode, ERROR_CODES, isBulkError, RETRIED } from './core/errors.js';
export { JsonText } from './core/jsonText.js';
export { defaultLogger, type Logger, redact, silentLogger } from './core/logger.js';
export type { ColumnMeta, TableMeta } from './core/meta.js';
export {
  type BulkCreateOptions,
  BulkModel,
  type CopyFromOptions,
  type CreateResult,
  type RowsInput,
  type UpdateFieldsOptions,
  type UpdateFieldsResult,
} from './core/model.js';
export type { CopyToOptions } from './core/ops/copyTo.js';
export type { UpdateArgs } from './core/ops/update.js';
export type {
  Columns,
  InsertLikeOptions,
  OnConflictOption,
  WriteOptions,
} from './core/options.js';
export { DEFAULT_RETRY, type RetryPolicy, type RetryRule, TRANSIENT_RULES } from './core/retry.js';
export {
  type Row,
  SIGNAL_NAMES,
  type SignalListener,
  type SignalMap,
  type SignalName,
  Signals,
} from './core/signals.js';
export type { OnConflict } from './core/sql/insert.js';
export type { Where } from './core/sql/where.js';
export { Operation, type OperationResult } from './producer/operation.js';
export {
  BulkProducer,
  type BulkProducerOptions,
  type QueueCopyToOptions,
  type QueueInsertOptions,
  type QueueUpdateFieldsOptions,
  type QueueWriteOptions,
} from './producer/producer.js';
export type { RedisClusterInput, RedisInput } from './queue/connection.js';
export {
  type BulkEventMap,
  type BulkEventName,
  BulkEvents,
  type BulkEventsOptions,
  type OperationEndEvent,
  type ProgressEvent,
} from './queue/events.js';
export { PAYLOAD_VERSION, validatePayload } from './queue/payload.js';
export { PAYLOAD_SCHEMA } from './queue/schema.js';
export type { OperationStatus } from './queue/state.js';
export type { Credentials } from './worker/dashboard/access.js';
export type { Dashboard, DashboardOptions } from './worker/dashboard/server.js';
export { BulkWorker, type BulkWorkerOptions, type WorkerStats } from './worker/worker.js';

/**
 * Serve the dashboard (the Operations page, bull-board, /api/operations, /metrics) in this
 * process, as `bulkmodel dashboard` does. Express and bull-board load only when it is called.
 */
export async function startDashboard(
  options?: import('./worker/dashboard/server.js').DashboardOptions,
): Promise<import('./worker/dashboard/server.js').Dashboard> {
  return (await import('./worker/dashboard/server.js')).startDashboard(options);
}
