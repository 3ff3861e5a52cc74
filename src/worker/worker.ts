import { hostname } from 'node:os';
import { type Job, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { BulkClient, type BulkClientOptions } from '../core/client.js';
import { BulkError, fromPgError } from '../core/errors.js';
import { defaultLogger, type Logger, redact } from '../core/logger.js';
import type { TableMeta } from '../core/meta.js';
import { isOperationId } from '../core/options.js';
import { transientRule } from '../core/retry.js';
import type { Signals } from '../core/signals.js';
import { publishSnapshot } from '../producer/catalog.js';
import { DEFAULT_EVENTS_MAX_LEN, publishEvent } from '../producer/events.js';
import {
  type ChunkPayload,
  type OperationPayload,
  type Payload,
  type SealPayload,
  validatePayload,
} from '../producer/payload.js';
import { connect, describe, jobIds, QueueKeys, type RedisInput } from '../producer/redis.js';
import { Allowlist, canonicalName } from './allowlist.js';
import { openExportTarget, sweepStaleTemps } from './export.js';
import { GuardedWorker, rawFacts } from './jobGuard.js';
import { checkChunk, checkDepth, resolveLimits, type WorkerLimits } from './limits.js';
import { JobObserver, type WorkerMetricsHook } from './observe.js';
import {
  assertLive,
  type Checked,
  failOperation,
  finishOperation,
  type ProcessorContext,
  processChunk,
  processOperation,
  processSeal,
  pruneOperations,
} from './processors.js';

/** The job names bulkmodel enqueues; any other is refused (and labelled 'other'). */
const JOB_NAMES: ReadonlySet<string> = new Set(['chunk', 'operation', 'seal']);

/** A job id as a log line may show it: as it is when plain, else quoted and shortened. */
function shownId(id: string | undefined): string | undefined {
  if (id === undefined || /^[A-Za-z0-9._:-]{1,250}$/.test(id)) return id;
  return JSON.stringify(id.length > 64 ? `${id.slice(0, 64)}…` : id);
}

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
  /**
   * The directory queued copyTo jobs write their files into (created if missing). No default:
   * a worker without one refuses copyTo jobs (EXPORT_DISABLED). Jobs name plain files in it.
   */
  exportDir?: string;
  /** Let a copyTo job replace a file that exists in exportDir. Default false (FILE_EXISTS). */
  exportOverwrite?: boolean;
  /**
   * Keep row values in the errors this worker records and logs (Postgres's detail line, the
   * value a column refused): for debugging only. Default false: table, column, constraint and
   * row index only.
   */
  showValues?: boolean;
  /** What this worker accepts from a job; defaults match the producer's (see WorkerLimits). */
  limits?: Partial<WorkerLimits>;
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

/**
 * The operation a job names when its payload was not read: a well-formed `operationId` in
 * its data, or its parent's job id (a chunk's parent is its operation).
 */
function operationIdOf(job: Job): string | undefined {
  const fromData = (job.data as { operationId?: unknown } | null)?.operationId;
  if (isOperationId(fromData)) return fromData;
  const parent = job.parent?.id;
  return isOperationId(parent) ? parent : undefined;
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
  private readonly worker: GuardedWorker;
  private readonly allowlist: Allowlist;
  private readonly limits: WorkerLimits;
  private readonly ctx: ProcessorContext;
  private readonly observer: JobObserver;
  private readonly opts: BulkWorkerOptions;
  private readonly started: Promise<void>;
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Table names whose catalog snapshot this process has published (producers encode with it). */
  private readonly published = new Set<string>();
  private runLoop: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: BulkWorkerOptions) {
    Allowlist.validate(options?.tables); // before anything is opened
    this.limits = resolveLimits(options.limits);
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
    this.allowlist = new Allowlist(options.tables, this.db, this.db.engine.ledger?.schema);
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
      exportTarget: undefined, // opened by start()
      eventsMaxLen: options.eventsMaxLen ?? DEFAULT_EVENTS_MAX_LEN,
      showValues: options.showValues === true,
      maxNesting: this.limits.maxNesting,
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
    this.worker = new GuardedWorker(queue, (job) => this.process(job), {
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
    this.worker.maxPayloadBytes = this.limits.maxPayloadBytes;
    this.worker.on('error', (err) =>
      this.logger.warn({ err: redact(String(err?.message ?? err)) }, 'worker connection error'),
    );
    this.worker.on('completed', (job, ret) => {
      if (job.name !== 'operation') return;
      const count = (ret as { count?: number } | undefined)?.count ?? 0;
      void finishOperation(this.ctx, job.data as OperationPayload, count).catch((err) =>
        this.logger.warn({ err, jobId: shownId(job.id) }, 'could not record a completed operation'),
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
    if (this.opts.exportDir !== undefined)
      this.ctx.exportTarget = await openExportTarget(
        this.opts.exportDir,
        this.opts.exportOverwrite === true,
      );
    await this.db.ensureConnected({ timeoutMs: 30_000 });
    if (this.db.engine.ledger) await this.db.engine.ledger.ensure(this.db.engine.pool);
    const { missing } = await this.allowlist.resolveAll();
    for (const table of missing) this.logger.warn({ table }, 'allowed table not found (yet)');
    // Producers encode rows as COPY text with these (docs/payload.md, version 2).
    for (const t of this.opts.tables) {
      if (t === '*' || missing.includes(t)) continue;
      const meta = await this.db.meta(t).catch(() => undefined);
      if (meta) this.publishOnce(t, meta);
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
      const target = this.ctx.exportTarget;
      if (target)
        void sweepStaleTemps(target, 3600_000).catch((err) =>
          this.logger.warn({ err }, 'could not sweep stale export files'),
        );
    };
    prune();
    this.pruneTimer = setInterval(prune, 3600_000);
    this.pruneTimer.unref();
    this.runLoop = this.worker.run();
    this.runLoop.catch((err) => this.logger.error({ err }, 'worker stopped'));
    this.logger.info(
      {
        queue: this.keys.queue,
        redis: describe(this.opts.redis),
        tables: this.opts.tables,
        exportDir: this.ctx.exportTarget?.dir ?? null,
      },
      'bulkmodel worker started',
    );
  }

  /**
   * Run one job. Everything in it is untrusted (it may come from anyone who can write to the
   * queue): its data is size-checked before parsing (GuardedWorker), depth-checked, validated
   * against the payload schema and the worker's limits, and its table resolved through the
   * catalog against the allowlist, before anything is written. A refused job fails at once,
   * unrecoverable, with a BulkError code; the worker goes on with the next.
   */
  private async process(job: Job): Promise<unknown> {
    let p: Payload | undefined;
    const startedMs = performance.now();
    const jobName = JOB_NAMES.has(job.name) ? job.name : 'other';
    // What is known of the job so far, for logs, metrics and the operation's record; the table
    // only as the catalog names an allowed one (a job's own spelling never becomes a label).
    const seen: { table?: string; label?: string; kind?: string; operationId?: string } = {};
    try {
      const facts = rawFacts(job);
      if (facts?.refused) {
        // Its data goes from Redis (it may be huge, or unreadable by any list of jobs).
        await job.updateData({ refused: facts.refused.code }).catch(() => {});
        throw new BulkError(facts.refused.code, `job ${jobName}: ${facts.refused.message}`);
      }
      if (!JOB_NAMES.has(job.name))
        throw new BulkError('INVALID_PAYLOAD', 'unknown job name (chunk, operation or seal)');
      checkDepth(job.data, jobName, this.limits);
      p = validatePayload(job.data, job.name, { values: false }); // values: checked as decoded
      if ('seal' in p) {
        if (job.id !== jobIds.seal(p.operationId))
          throw new BulkError(
            'INVALID_PAYLOAD',
            `a seal job of operation ${p.operationId} must have the job id ${jobIds.seal(p.operationId)}`,
          );
        return await processSeal(this.ctx, p as SealPayload);
      }
      const op = p as ChunkPayload | OperationPayload;
      seen.operationId = op.operationId;
      seen.kind = op.kind;
      seen.table = op.table; // schema-checked: a string of 1-200 characters
      // A job's id is its place: `<op>` for an operation, `<op>-c<index>` for a chunk (as
      // BulkProducer and docs/payload.md name them), so that one job cannot pose as another.
      const place =
        job.name === 'chunk'
          ? jobIds.chunk(op.operationId, (op as ChunkPayload).chunk.index)
          : jobIds.parent(op.operationId);
      if (job.id !== place)
        throw new BulkError(
          'INVALID_PAYLOAD',
          `a ${job.name} job of operation ${op.operationId} must have the job id ${place}`,
        );
      if (job.name === 'chunk') checkChunk(op as ChunkPayload, this.limits);
      // The parent of a chunked operation only adds up its chunks' results: no table, no database.
      const touchesDb = job.name === 'chunk' || op.kind === 'update' || op.kind === 'copyTo';
      const checked: Checked = { table: '', fingerprint: facts?.fingerprint };
      if (touchesDb) {
        const meta = await this.allowlist.check(op.table);
        checked.table = canonicalName(meta);
        seen.label = checked.table;
        this.publishOnce(op.table, meta);
      }
      await assertLive(
        this.ctx,
        op.operationId,
        op.table,
        job.name === 'chunk'
          ? { index: (op as ChunkPayload).chunk.index, parentId: job.parent?.id }
          : undefined,
      );
      const info = {
        operationId: op.operationId,
        table: op.table,
        label: checked.table,
        kind: op.kind,
      };
      await this.observer.started(job, info);
      if (touchesDb) await this.db.ensureConnected({ timeoutMs: 10_000 });
      const out =
        job.name === 'chunk'
          ? await processChunk(this.ctx, op as ChunkPayload, checked)
          : await processOperation(this.ctx, op as OperationPayload, job, checked);
      this.stats.completed++;
      this.observer.completed(job, info, out, startedMs);
      this.stats.rows += (out as { count?: number }).count ?? 0;
      return out;
    } catch (err) {
      const bulk = fromPgError(err, { table: seen.table ?? '' });
      // A transient failure that outlasted the core's retry budget (Postgres away longer than
      // retry.maxElapsedMs, or ensureConnected's timeout) is still transient for the job: BullMQ
      // retries it with backoff (its attempts) instead of failing the operation for good.
      const transient =
        transientRule(err) !== undefined ||
        (err instanceof BulkError &&
          (err.code === 'CONNECTION_FAILED' || err.code === 'RETRIES_EXHAUSTED'));
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      // An unreadable job may still name its operation: a valid id in its data, or its parent's.
      const opId = seen.operationId ?? operationIdOf(job);
      const message = bulk.toJSON({ values: this.ctx.showValues }).message as string;
      if (!transient || last) {
        if (opId !== undefined) {
          await failOperation(this.ctx, opId, seen.table ?? '', seen.kind ?? jobName, bulk).catch(
            () => {},
          );
        }
        this.logger.warn(
          {
            jobId: shownId(job.id),
            operationId: opId,
            table: seen.table,
            code: bulk.code,
            err: redact(message),
            ...(this.ctx.showValues && (bulk.detail || bulk.value)
              ? { detail: bulk.detail, value: bulk.value }
              : {}),
          },
          'job failed',
        );
        this.observer.failed(job, { ...seen, operationId: opId }, bulk.code, transient, true);
        if (!transient) throw new UnrecoverableError(`${bulk.code}: ${message}`);
      } else {
        if (opId !== undefined)
          await this.redis
            .multi()
            .hincrby(this.keys.op(opId), 'retries', 1)
            .zadd(this.keys.ops, 'NX', String(Date.now()), opId)
            .exec()
            .catch(() => {});
        this.logger.warn(
          {
            jobId: shownId(job.id),
            operationId: opId,
            attempt: job.attemptsMade + 1,
            err: redact(message),
          },
          'job failed transiently; BullMQ will retry',
        );
        this.observer.failed(job, { ...seen, operationId: opId }, bulk.code, true, false);
      }
      throw err;
    }
  }

  /**
   * Publish an allowed table's catalog snapshot under the name a job used, once per process
   * (at most 1,000 names), so that producers using that name encode rows as COPY text.
   */
  private publishOnce(name: string, meta: TableMeta): void {
    if (this.published.has(name) || this.published.size >= 1000) return;
    this.published.add(name);
    void publishSnapshot(this.redis, this.keys, [name], meta).catch((err) => {
      this.published.delete(name);
      this.logger.warn({ err, table: canonicalName(meta) }, 'could not publish a catalog snapshot');
    });
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
