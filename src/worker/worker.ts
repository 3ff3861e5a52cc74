import { hostname } from 'node:os';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { BulkClient, type BulkClientOptions } from '../core/client.js';
import { BulkError } from '../core/errors.js';
import { defaultLogger, type Logger, redact } from '../core/logger.js';
import { isOperationId } from '../core/options.js';
import { transientRule } from '../core/retry.js';
import type { Signals } from '../core/signals.js';
import { DEFAULT_EVENTS_MAX_LEN, publishEvent } from '../producer/events.js';
import {
  type ChunkPayload,
  type OperationPayload,
  type Payload,
  type SealPayload,
  validatePayload,
} from '../producer/payload.js';
import { connect, describe, QueueKeys, type RedisInput } from '../producer/redis.js';
import { Allowlist } from './allowlist.js';
import { JobObserver, type WorkerMetricsHook } from './observe.js';
import {
  assertLive,
  failOperation,
  finishOperation,
  type ProcessorContext,
  processChunk,
  processOperation,
  processSeal,
  pruneOperations,
} from './processors.js';

export interface BulkWorkerOptions {
  /** Redis URL, ioredis options or instance. Default: REDIS_URL, else redis://127.0.0.1:6379. */
  redis?: RedisInput;
  queue?: string;
  prefix?: string;
  /** Postgres: a connection string, or BulkClient options. Default: DATABASE_URL. */
  database?: string | BulkClientOptions;
  /** Tables this worker may write (`name` or `schema.name`). Required; ['*'] allows every table. */
  tables: string[];
  /** Jobs processed at once. Default 4. */
  concurrency?: number;
  /** This worker's name, recorded on the jobs it processes (BullMQ `processedBy`). Default host:pid. */
  name?: string;
  /** BullMQ lock duration: a job whose worker is silent this long is handed to another. Default 30000. */
  lockDurationMs?: number;
  /** How many times a stalled job is handed out again before it fails. Default 5. */
  maxStalledCount?: number;
  /** close() waits this long for in-flight jobs before leaving them to other workers. Default 30000. */
  closeTimeoutMs?: number;
  /** copyTo jobs write only inside this directory. Default: the current directory. */
  exportDir?: string;
  /** Publish signal payloads with their rows (large); by default events carry counts only. */
  eventRows?: boolean;
  /** Approximate cap on the events stream. Default 10000. */
  eventsMaxLen?: number;
  /** Ledger rows older than this are pruned (hourly). Default 7 days. */
  ledgerRetentionMs?: number;
  logger?: Logger;
  /** Told of every job's outcome (e.g. prom-client metrics: see createWorkerMetrics). */
  metrics?: WorkerMetricsHook;
}

/** Whether `p` settled within `ms` (it keeps running either way). */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Job outcomes counted since start (the dashboard and metrics read these). */
export interface WorkerStats {
  completed: number;
  failed: number;
  retried: number;
  rows: number;
}

/**
 * Pulls chunk jobs from the queue and writes them with the core: allowlisted tables only,
 * exactly-once through the chunk ledger, transient failures retried, permanent ones failing the
 * operation at once. Signals run in-process (`worker.signals`) and are published as events.
 */
export class BulkWorker {
  readonly db: BulkClient;
  readonly logger: Logger;
  readonly keys: QueueKeys;
  readonly stats: WorkerStats = { completed: 0, failed: 0, retried: 0, rows: 0 };
  private readonly redis: Redis;
  private readonly ownsRedis: boolean;
  private readonly worker: Worker;
  private readonly allowlist: Allowlist;
  private readonly ctx: ProcessorContext;
  private readonly observer: JobObserver;
  private readonly opts: BulkWorkerOptions;
  private readonly started: Promise<void>;
  private pruneTimer: NodeJS.Timeout | undefined;
  private runLoop: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: BulkWorkerOptions) {
    Allowlist.validate(options?.tables); // before anything is opened
    this.opts = options;
    this.logger = options.logger ?? defaultLogger;
    const dbOpts: BulkClientOptions =
      typeof options.database === 'string' || options.database === undefined
        ? { connectionString: options.database }
        : options.database;
    const concurrency = options.concurrency ?? 4;
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new BulkError('INVALID_OPTION', 'concurrency must be a positive integer');
    this.db = new BulkClient({ logger: this.logger, poolSize: concurrency + 2, ...dbOpts });
    this.allowlist = new Allowlist(options.tables, this.db);
    const c = connect(options.redis);
    this.redis = c.redis;
    this.ownsRedis = c.owned;
    const queue = options.queue ?? process.env.BULKMODEL_QUEUE ?? 'bulkmodel';
    const prefix = options.prefix ?? 'bull';
    this.keys = new QueueKeys(prefix, queue);
    this.ctx = {
      db: this.db,
      redis: this.redis,
      keys: this.keys,
      exportDir: options.exportDir ?? process.cwd(),
      eventsMaxLen: options.eventsMaxLen ?? DEFAULT_EVENTS_MAX_LEN,
    };
    this.observer = new JobObserver(this.redis, this.keys, this.logger, options.metrics);
    this.db.signals.tap((name, event) => {
      void publishEvent(
        this.redis,
        this.keys,
        name,
        this.eventBody(event),
        this.ctx.eventsMaxLen,
      ).catch((err) => this.logger.warn({ err, signal: name }, 'could not publish signal event'));
    });
    this.worker = new Worker(queue, (job) => this.process(job), {
      connection: this.redis,
      prefix,
      concurrency,
      autorun: false,
      name: options.name ?? `${hostname()}:${process.pid}`,
      lockDuration: options.lockDurationMs ?? 30_000,
      // Look for jobs of dead workers as often as a lock can expire.
      stalledInterval: options.lockDurationMs ?? 30_000,
      maxStalledCount: options.maxStalledCount ?? 5,
    });
    this.worker.on('error', (err) =>
      this.logger.warn({ err: redact(String(err?.message ?? err)) }, 'worker connection error'),
    );
    this.worker.on('completed', (job, ret) => {
      if (job.name !== 'operation') return;
      const count = (ret as { count?: number } | undefined)?.count ?? 0;
      void finishOperation(this.ctx, job.data as OperationPayload, count).catch((err) =>
        this.logger.warn({ err, jobId: job.id }, 'could not record a completed operation'),
      );
    });
    this.worker.on('failed', (job, err) => {
      if (!job) return;
      const final =
        err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
      if (final) this.stats.failed++;
      else this.stats.retried++;
    });
    this.started = this.start();
    this.started.catch(() => {});
  }

  /** In-process signals; pre listeners may change rows before they are written. */
  get signals(): Signals {
    return this.db.signals;
  }

  /**
   * Resolves when the worker stops consuming jobs (after close()), rejects if its loop failed:
   * a process that runs only a worker should exit then.
   */
  async untilStopped(): Promise<void> {
    await this.started;
    await this.runLoop;
  }

  /** Resolves once the worker is consuming jobs; rejects if it could not start. */
  waitUntilReady(): Promise<void> {
    return this.started;
  }

  private eventBody(event: unknown): unknown {
    if (this.opts.eventRows) return event;
    const e = { ...(event as Record<string, unknown>) };
    for (const k of ['rows', 'returned', 'missing'] as const) {
      if (Array.isArray(e[k])) {
        e[`${k}Count`] = (e[k] as unknown[]).length;
        delete e[k];
      }
    }
    return e;
  }

  private async start(): Promise<void> {
    const policy = (await this.redis.config('GET', 'maxmemory-policy').catch(() => null)) as
      | string[]
      | null;
    if (policy?.[1] && policy[1] !== 'noeviction') {
      this.logger.warn(
        { policy: policy[1] },
        `Redis maxmemory-policy is ${policy[1]}: set it to noeviction, or Redis may evict queued jobs`,
      );
    }
    await this.db.ensureConnected({ timeoutMs: 30_000 });
    if (this.db.engine.ledger) await this.db.engine.ledger.ensure(this.db.engine.pool);
    for (const table of await this.allowlist.resolveAll()) {
      this.logger.warn({ table }, 'allowed table not found (yet)');
    }
    // Ledger rows and operation records go together, after the same retention: re-enqueueing an
    // operation id is idempotent for as long as both are kept.
    const retentionMs = this.opts.ledgerRetentionMs ?? 7 * 24 * 3600_000;
    const prune = () => {
      void this.db
        .pruneLedger(retentionMs)
        .catch((err) => this.logger.warn({ err }, 'ledger prune failed'));
      void pruneOperations(this.redis, this.keys, retentionMs).catch((err) =>
        this.logger.warn({ err }, 'operation records prune failed'),
      );
    };
    prune();
    this.pruneTimer = setInterval(prune, 3600_000);
    this.pruneTimer.unref();
    this.runLoop = this.worker.run();
    this.runLoop.catch((err) => this.logger.error({ err }, 'worker stopped'));
    this.logger.info(
      { queue: this.keys.queue, redis: describe(this.opts.redis), tables: this.opts.tables },
      'bulkmodel worker started',
    );
  }

  private async process(job: Job): Promise<unknown> {
    let p: Payload | undefined;
    const startedMs = performance.now();
    try {
      p = validatePayload(job.data, job.name, { values: false }); // values: checked as they are decoded
      if ('seal' in p) return await processSeal(this.ctx, p as SealPayload);
      const op = p as ChunkPayload | OperationPayload;
      // The parent of a chunked operation only adds up its chunks' results: no table, no database.
      const touchesDb = job.name === 'chunk' || op.kind === 'update' || op.kind === 'copyTo';
      if (touchesDb) await this.allowlist.check(op.table);
      await assertLive(this.ctx, op.operationId, op.table);
      await this.observer.started(job, op);
      if (touchesDb) await this.db.ensureConnected({ timeoutMs: 10_000 });
      const out =
        job.name === 'chunk'
          ? await processChunk(this.ctx, op as ChunkPayload)
          : await processOperation(this.ctx, op as OperationPayload, job);
      this.stats.completed++;
      this.observer.completed(job, op, out, startedMs);
      this.stats.rows += (out as { count?: number }).count ?? 0;
      return out;
    } catch (err) {
      const bulk =
        err instanceof BulkError
          ? err
          : new BulkError('DATABASE_ERROR', String((err as Error)?.message ?? err), { cause: err });
      // A transient failure that outlasted the core's retry budget (Postgres away longer than
      // retry.maxElapsedMs, or ensureConnected's timeout) is still transient for the job: BullMQ
      // retries it with backoff (its attempts) instead of failing the operation for good.
      const transient =
        transientRule(err) !== undefined ||
        (err instanceof BulkError &&
          (err.code === 'CONNECTION_FAILED' || err.code === 'RETRIES_EXHAUSTED'));
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      // An invalid payload may carry any operationId: only a well-formed one names an operation.
      const rawId =
        (p as { operationId?: string } | undefined)?.operationId ??
        (job.data as { operationId?: unknown } | null)?.operationId;
      const opId = isOperationId(rawId) ? rawId : undefined;
      const known = (p ?? {}) as { table?: string; kind?: string };
      const seen = { table: known.table, kind: known.kind, operationId: opId };
      if (!transient || last) {
        if (typeof opId === 'string') {
          const table = (p as { table?: string } | undefined)?.table ?? '';
          await failOperation(
            this.ctx,
            opId,
            table,
            (p as { kind?: string } | undefined)?.kind ?? job.name,
            bulk,
          ).catch(() => {});
        }
        this.logger.warn(
          { jobId: job.id, operationId: opId, code: bulk.code, err: redact(bulk.message) },
          'job failed',
        );
        this.observer.failed(job, seen, bulk.code, transient, true);
        if (!transient) throw new UnrecoverableError(`${bulk.code}: ${bulk.message}`);
      } else {
        if (typeof opId === 'string')
          await this.redis.hincrby(this.keys.op(opId), 'retries', 1).catch(() => {});
        this.logger.warn(
          {
            jobId: job.id,
            operationId: opId,
            attempt: job.attemptsMade + 1,
            err: redact(bulk.message),
          },
          'job failed transiently; BullMQ will retry',
        );
        this.observer.failed(job, seen, bulk.code, true, false);
      }
      throw err;
    }
  }

  /**
   * Stop taking jobs and wait for in-flight ones, up to closeTimeoutMs; past that, leave them
   * (their locks expire and another worker replays them, safely, through the ledger).
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.pruneTimer);
      await this.started.catch(() => {});
      const timeout = this.opts.closeTimeoutMs ?? 30_000;
      if (await within(this.worker.close(), timeout)) {
        await this.db.close();
      } else {
        this.logger.warn(
          { timeoutMs: timeout },
          'in-flight jobs did not finish in time; leaving them to other workers',
        );
        await this.leave();
      }
      if (this.ownsRedis) await this.redis.quit().catch(() => this.redis.disconnect());
    })();
    return this.closing;
  }

  /**
   * Stop without waiting for in-flight jobs. Their connections stay busy (a pool ends only once
   * every client is back), so waiting for them is bounded too: their transactions roll back when
   * this process exits, and another worker replays those chunks through the ledger.
   */
  private async leave(): Promise<void> {
    await within(this.worker.close(true), 5_000);
    if (!(await within(this.db.close(), 1_000)))
      this.logger.warn({}, 'leaving database connections of unfinished chunks open');
  }

  /** Close at once, leaving in-flight jobs to be replayed elsewhere. */
  async forceClose(): Promise<void> {
    clearInterval(this.pruneTimer);
    await this.leave();
    if (this.ownsRedis) this.redis.disconnect();
  }
}
