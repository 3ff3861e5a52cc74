import { AsyncLocalStorage } from 'node:async_hooks';
import { hostname } from 'node:os';
import { type Job, UnrecoverableError } from 'bullmq';
import { BulkClient, type BulkClientOptions } from '../core/client.js';
import { BulkError, fromPgError, RETRIED } from '../core/errors.js';
import { defaultLogger, type Logger, redact } from '../core/logger.js';
import type { TableMeta } from '../core/meta.js';
import { checkOptionKeys } from '../core/optionKeys.js';
import { isOperationId } from '../core/options.js';
import { transientRule } from '../core/retry.js';
import { declaredOptions, defaultOf, fromEnv } from '../core/settings.js';
import type { Signals } from '../core/signals.js';
import { type BackendKind, backendKind, openBackend, type QueueBackend } from '../queue/backend.js';
import { publishSnapshot } from '../queue/catalog.js';
import type { RedisInput } from '../queue/connection.js';
import { DEFAULT_EVENTS_MAX_LEN, publishEvent } from '../queue/events.js';
import { jobIds, queueNames } from '../queue/keys.js';
import {
  type ChunkPayload,
  type DataChunkPayload,
  type OperationPayload,
  type Payload,
  type SealPayload,
  validatePayload,
} from '../queue/payload.js';
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
} from './processors.js';

/** The job names bulkmodel enqueues; any other is refused (and labelled 'other'). */
const JOB_NAMES: ReadonlySet<string> = new Set(['chunk', 'operation', 'seal']);

/** A job id as a log line may show it: as it is when plain, else quoted and shortened. */
function shownId(id: string | undefined): string | undefined {
  if (id === undefined || /^[A-Za-z0-9._:-]{1,250}$/.test(id)) return id;
  return JSON.stringify(id.length > 64 ? `${id.slice(0, 64)}…` : id);
}

export interface BulkWorkerOptions {
  /**
   * Where the queues live: 'redis' (default) or 'postgres' (BullMQ's PostgreSQL backend, no
   * Redis at all). Default: BULKMODEL_BACKEND, else 'redis'.
   */
  backend?: BackendKind;
  /**
   * Postgres backend: the database the queues live in, when other than `database` (a
   * connection string). Default: BULKMODEL_QUEUE_DATABASE, else `database`.
   */
  queueDatabase?: string;
  /** Postgres backend: the schema of the queues. Default 'bulkmodel_queue' (BULKMODEL_QUEUE_SCHEMA). */
  queueSchema?: string;
  /** Postgres backend: create or upgrade the queue schema at start. Default false (QUEUE_SCHEMA). */
  migrate?: boolean;
  /**
   * Redis: a URL, ioredis options, a cluster's nodes (`{ cluster: 'host:port,...' }`) or an
   * ioredis `Redis` or `Cluster`. Default: REDIS_CLUSTER, else REDIS_URL, else
   * redis://127.0.0.1:6379.
   */
  redis?: RedisInput;
  /**
   * The queue to serve, or several (a list, or 'a,b'): one BullMQ worker per queue, each
   * running up to `concurrency` jobs. Default 'bulkmodel' (BULKMODEL_QUEUE).
   */
  queue?: string | readonly string[];
  /** BullMQ key prefix (Redis only: on Postgres the queue schema keeps queues apart). Default 'bull'. */
  prefix?: string;
  /** Postgres: a connection string, or BulkClient options. Default: DATABASE_URL. */
  database?: string | BulkClientOptions;
  /** Tables this worker may write (`name` or `schema.name`). Required; ['*'] allows every table. */
  tables: string[];
  /** Jobs processed at once, per queue. Default 4. */
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

/** One queue this worker serves: its BullMQ worker and the state beside it. */
interface Lane {
  name: string;
  worker: GuardedWorker;
  ctx: ProcessorContext;
  observer: JobObserver;
  /** Table names whose catalog snapshot this process published on this queue. */
  published: Set<string>;
}

const WORKER_KEYS = declaredOptions<BulkWorkerOptions>()('BulkWorker');

/**
 * Pulls chunk jobs from the queue and writes them with the core: allowlisted tables only,
 * exactly-once through the chunk ledger, transient failures retried, permanent ones failing the
 * operation at once. Signals run in-process (`worker.signals`) and are published as events.
 */
export class BulkWorker {
  readonly db: BulkClient;
  readonly logger: Logger;
  /** Where the queues live. */
  readonly backend: QueueBackend;
  /** The queues this worker serves. */
  readonly queues: readonly string[];
  /** This worker's name (recorded on the jobs it runs). */
  readonly name: string;
  readonly stats: WorkerStats = { completed: 0, failed: 0, retried: 0, rows: 0 };
  private readonly lanes: Lane[];
  /** The lane of the job running in this async context (signals go to its queue's stream). */
  private readonly current = new AsyncLocalStorage<Lane>();
  private readonly allowlist: Allowlist;
  private readonly limits: WorkerLimits;
  private readonly opts: BulkWorkerOptions;
  private readonly started: Promise<void>;
  private pruneTimer: NodeJS.Timeout | undefined;
  private runLoop: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: BulkWorkerOptions) {
    checkOptionKeys(options, WORKER_KEYS, 'BulkWorker');
    Allowlist.validate(options?.tables); // before anything is opened
    this.limits = resolveLimits(options.limits);
    this.opts = options;
    this.logger = options.logger ?? defaultLogger;
    const dbOpts: BulkClientOptions =
      typeof options.database === 'string' || options.database === undefined
        ? { connectionString: options.database }
        : options.database;
    const concurrency = options.concurrency ?? defaultOf('concurrency');
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new BulkError('INVALID_OPTION', 'concurrency must be a positive integer');
    this.queues = queueNames(options.queue, fromEnv('queue')!);
    this.db = new BulkClient({
      logger: this.logger,
      poolSize: concurrency * this.queues.length + 2,
      ...dbOpts,
    });
    this.allowlist = new Allowlist(options.tables, this.db, this.db.engine.ledger?.schema);
    // The Postgres backend's queues live in the target database unless told otherwise; a
    // given pool has no connection string to open the queue's own connections with.
    const target = dbOpts.connectionString ?? (dbOpts.pool ? undefined : process.env.DATABASE_URL);
    if (
      backendKind(options.backend) === 'postgres' &&
      !target &&
      dbOpts.pool &&
      !options.queueDatabase &&
      !process.env.BULKMODEL_QUEUE_DATABASE
    )
      throw new BulkError(
        'INVALID_OPTION',
        'with database: { pool }, the Postgres backend needs queueDatabase (a connection string)',
      );
    this.backend = openBackend(options, target, this.queues.length + 3);
    this.name = options.name ?? `${hostname()}:${process.pid}`;
    this.lanes = this.queues.map((name) => this.lane(name, concurrency));
    this.db.signals.tap((name, event) => {
      const lane = this.current.getStore() ?? this.lanes[0]!;
      void publishEvent(lane.ctx.state, name, this.eventBody(event), lane.ctx.eventsMaxLen).catch(
        (err) => this.logger.warn({ err, signal: name }, 'could not publish signal event'),
      );
    });
    this.started = this.start();
    this.started.catch(() => {});
  }

  private lane(name: string, concurrency: number): Lane {
    const options = this.opts;
    const state = this.backend.state(name);
    const ctx: ProcessorContext = {
      db: this.db,
      state,
      exportTarget: undefined, // opened by start()
      eventsMaxLen: options.eventsMaxLen ?? DEFAULT_EVENTS_MAX_LEN,
      showValues: options.showValues === true,
      maxNesting: this.limits.maxNesting,
      maxPayloadBytes: this.limits.maxPayloadBytes,
    };
    const observer = new JobObserver(state, this.logger, options.metrics, this.name);
    const lane: Lane = {
      name,
      ctx,
      observer,
      published: new Set(),
      worker: undefined as unknown as GuardedWorker,
    };
    const worker = new GuardedWorker(
      name,
      (job) => this.current.run(lane, () => this.process(job, lane)),
      {
        ...this.backend.bullOptions(name, concurrency + 2),
        concurrency,
        autorun: false,
        name: this.name,
        lockDuration: options.lockDurationMs ?? defaultOf('lockDurationMs'),
        // Look for jobs of dead workers as often as a lock can expire.
        stalledInterval: options.lockDurationMs ?? defaultOf('lockDurationMs'),
        maxStalledCount: options.maxStalledCount ?? defaultOf('maxStalledCount'),
      },
      this.backend.bullFactory,
    );
    lane.worker = worker;
    worker.maxPayloadBytes = this.limits.maxPayloadBytes;
    worker.on('error', (err) =>
      this.logger.warn(
        { err: redact(String(err?.message ?? err)), queue: name },
        'worker connection error',
      ),
    );
    worker.on('completed', (job, ret) => {
      // A completed chunk is never run again (a stall replays only running jobs): its data
      // (version 3) goes now, so that a queue holds the data of chunks not yet written only.
      const data = job.data as Partial<DataChunkPayload> | null;
      if (job.name === 'chunk' && data?.v === 3 && typeof data.operationId === 'string')
        void ctx.state
          .dropChunkData(data.operationId, data.chunk!.index)
          .catch((err) =>
            this.logger.warn({ err, jobId: shownId(job.id) }, "could not drop a chunk's data"),
          );
      if (job.name !== 'operation') return;
      const count = (ret as { count?: number } | undefined)?.count ?? 0;
      void finishOperation(ctx, job.data as OperationPayload, count).catch((err) =>
        this.logger.warn({ err, jobId: shownId(job.id) }, 'could not record a completed operation'),
      );
    });
    worker.on('failed', (job, err) => {
      if (!job) return;
      const final =
        err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
      if (final) this.stats.failed++;
      else this.stats.retried++;
    });
    return lane;
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
    await this.backend.prepare();
    for (const w of await this.backend.configWarnings().catch(() => [])) this.logger.warn({}, w);
    if (this.opts.exportDir !== undefined) {
      const target = await openExportTarget(
        this.opts.exportDir,
        this.opts.exportOverwrite === true,
      );
      for (const lane of this.lanes) lane.ctx.exportTarget = target;
    }
    await this.db.ensureConnected({ timeoutMs: 30_000 });
    if (this.db.engine.ledger) await this.db.engine.ledger.ensure(this.db.engine.pool);
    const { missing } = await this.allowlist.resolveAll();
    for (const table of missing) this.logger.warn({ table }, 'allowed table not found (yet)');
    // The dashboard's worker table shows what it cannot learn from BullMQ: host, pid, concurrency.
    const info = JSON.stringify({
      host: hostname(),
      pid: process.pid,
      concurrency: this.opts.concurrency ?? defaultOf('concurrency'),
      queues: this.queues,
      startedAt: Date.now(),
    });
    for (const lane of this.lanes)
      await lane.ctx.state
        .announceWorker(this.name, info)
        .catch((err) =>
          this.logger.warn({ err }, 'could not announce this worker to the dashboard'),
        );
    // Producers encode rows as COPY text with these (docs/payload.md, versions 2 and 3).
    for (const t of this.opts.tables) {
      if (t === '*' || missing.includes(t)) continue;
      const meta = await this.db.meta(t).catch(() => undefined);
      if (meta) for (const lane of this.lanes) this.publishOnce(lane, t, meta);
    }
    // Ledger rows and operation records go together, after the same retention: re-enqueueing an
    // operation id is idempotent for as long as both are kept.
    const retentionMs = this.opts.ledgerRetentionMs ?? defaultOf('ledgerRetentionMs');
    const prune = () => {
      void this.db
        .pruneLedger(retentionMs)
        .catch((err) => this.logger.warn({ err }, 'ledger prune failed'));
      for (const lane of this.lanes)
        void lane.ctx.state
          .prune(Date.now() - retentionMs)
          .catch((err) =>
            this.logger.warn({ err, queue: lane.name }, 'operation records prune failed'),
          );
      const target = this.lanes[0]?.ctx.exportTarget;
      if (target)
        void sweepStaleTemps(target, 3600_000).catch((err) =>
          this.logger.warn({ err }, 'could not sweep stale export files'),
        );
    };
    prune();
    this.pruneTimer = setInterval(prune, 3600_000);
    this.pruneTimer.unref();
    // One loop per queue; the worker stops when any of them fails (a process that runs only a
    // worker should then exit) or when all of them end (close()).
    this.runLoop = Promise.all(this.lanes.map((l) => l.worker.run())).then(() => {});
    this.runLoop.catch((err) => this.logger.error({ err }, 'worker stopped'));
    this.logger.info(
      {
        queue: this.queues.join(','),
        backend: this.backend.kind,
        // Where the queues live: a Redis URL or cluster, or the queue database and schema.
        [this.backend.kind === 'redis' ? 'redis' : 'queueDatabase']: this.backend.where,
        tables: this.opts.tables,
        exportDir: this.lanes[0]?.ctx.exportTarget?.dir ?? null,
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
  private async process(job: Job, lane: Lane): Promise<unknown> {
    const ctx = lane.ctx;
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
        return await processSeal(ctx, p as SealPayload);
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
      const checked: Checked = { table: '', fingerprint: facts?.fingerprint, jobId: place };
      if (touchesDb) {
        const meta = await this.allowlist.check(op.table);
        checked.table = canonicalName(meta);
        seen.label = checked.table;
        this.publishOnce(lane, op.table, meta);
      }
      await assertLive(
        ctx,
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
      await lane.observer.started(job, info);
      if (touchesDb) await this.db.ensureConnected({ timeoutMs: 10_000 });
      const out =
        job.name === 'chunk'
          ? await processChunk(ctx, op as ChunkPayload, checked)
          : await processOperation(ctx, op as OperationPayload, job, checked);
      // A chunk's end was recorded with its count; an operation job's is recorded here.
      if (job.name !== 'chunk') await ctx.state.jobEnded(op.operationId, place).catch(() => {});
      this.stats.completed++;
      lane.observer.completed(job, info, out, startedMs);
      this.stats.rows += (out as { count?: number }).count ?? 0;
      return out;
    } catch (err) {
      const bulk = fromPgError(err, { table: seen.table ?? '' });
      // A transient failure that outlasted the core's retry budget (Postgres away longer than
      // retry.maxElapsedMs, or ensureConnected's timeout) is still transient for the job: BullMQ
      // retries it with backoff (its attempts) instead of failing the operation for good.
      const transient =
        transientRule(err) !== undefined ||
        (err instanceof BulkError && RETRIED[err.code] === 'yes');
      const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      // An unreadable job may still name its operation: a valid id in its data, or its parent's.
      const opId = seen.operationId ?? operationIdOf(job);
      const message = bulk.toJSON({ values: ctx.showValues }).message as string;
      // Not running here any more (a job that was never recorded as running: nothing to do).
      if (opId !== undefined && job.id !== undefined)
        await ctx.state.jobEnded(opId, job.id).catch(() => {});
      if (!transient || last) {
        if (opId !== undefined) {
          await failOperation(ctx, opId, seen.table ?? '', seen.kind ?? jobName, bulk).catch(
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
            ...(ctx.showValues && (bulk.detail || bulk.value)
              ? { detail: bulk.detail, value: bulk.value }
              : {}),
          },
          'job failed',
        );
        lane.observer.failed(job, { ...seen, operationId: opId }, bulk.code, transient, true);
        if (!transient) throw new UnrecoverableError(`${bulk.code}: ${message}`);
      } else {
        if (opId !== undefined) await ctx.state.countRetry(opId).catch(() => {});
        this.logger.warn(
          {
            jobId: shownId(job.id),
            operationId: opId,
            attempt: job.attemptsMade + 1,
            err: redact(message),
          },
          'job failed transiently; BullMQ will retry',
        );
        lane.observer.failed(job, { ...seen, operationId: opId }, bulk.code, true, false);
      }
      throw err;
    }
  }

  /**
   * Publish an allowed table's catalog snapshot under the name a job used, once per process
   * (at most 1,000 names), so that producers using that name encode rows as COPY text.
   */
  private publishOnce(lane: Lane, name: string, meta: TableMeta): void {
    if (lane.published.has(name) || lane.published.size >= 1000) return;
    lane.published.add(name);
    void publishSnapshot(lane.ctx.state, [name], meta).catch((err) => {
      lane.published.delete(name);
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
      const timeout = this.opts.closeTimeoutMs ?? defaultOf('closeTimeoutMs');
      if (await within(Promise.all(this.lanes.map((l) => l.worker.close())), timeout)) {
        await this.db.close();
      } else {
        this.logger.warn(
          { timeoutMs: timeout },
          'in-flight jobs did not finish in time; leaving them to other workers',
        );
        await this.leave();
      }
      await this.backend.close();
    })();
    return this.closing;
  }

  /**
   * Stop without waiting for in-flight jobs. Their connections stay busy (a pool ends only once
   * every client is back), so waiting for them is bounded too: their transactions roll back when
   * this process exits, and another worker replays those chunks through the ledger.
   */
  private async leave(): Promise<void> {
    await within(Promise.all(this.lanes.map((l) => l.worker.close(true))), 5_000);
    if (!(await within(this.db.close(), 1_000)))
      this.logger.warn({}, 'leaving database connections of unfinished chunks open');
  }

  /** Close at once, leaving in-flight jobs to be replayed elsewhere. */
  async forceClose(): Promise<void> {
    clearInterval(this.pruneTimer);
    await this.leave();
    this.backend.disconnect();
  }
}
