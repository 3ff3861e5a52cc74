import { Counter, Histogram, type Registry } from 'prom-client';
import type { WorkerMetricsHook } from './observe.js';

/**
 * A worker's Prometheus metrics, registered on `registry`, as the hook BulkWorker calls:
 * rows written by table and operation kind, chunk durations, retries, errors by code.
 */
export function createWorkerMetrics(registry: Registry): WorkerMetricsHook {
  const registers = [registry];
  const rows = new Counter({
    name: 'bulkmodel_rows_written_total',
    help: 'Rows committed by this worker (copyTo: rows exported), by table and operation kind',
    labelNames: ['table', 'kind'],
    registers,
  });
  const chunks = new Histogram({
    name: 'bulkmodel_chunk_duration_seconds',
    help: 'Time to run one chunk job (decode, write, ledger, commit), by table and kind',
    labelNames: ['table', 'kind'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const retries = new Counter({
    name: 'bulkmodel_job_retries_total',
    help: 'Job attempts that failed transiently and are retried by BullMQ, by table',
    labelNames: ['table'],
    registers,
  });
  const errors = new Counter({
    name: 'bulkmodel_errors_total',
    help: 'Jobs that failed for good, by BulkError code',
    labelNames: ['code'],
    registers,
  });
  return {
    jobCompleted(e) {
      rows.inc({ table: e.table, kind: e.kind }, e.rows);
      if (e.job === 'chunk') chunks.observe({ table: e.table, kind: e.kind }, e.seconds);
    },
    jobFailed(e) {
      if (e.transient) retries.inc({ table: e.table });
      else errors.inc({ code: e.code });
    },
  };
}
