import pLimit from 'p-limit';
import pg from 'pg';
import type { DbPool } from './db.js';
import { type DecodeOptions, resolveDecode } from './decode.js';
import { BulkError } from './errors.js';
import { createLedger, type Ledger } from './ledger.js';
import { defaultLogger, type Logger, redact } from './logger.js';
import { loadTableMeta, type TableMeta } from './meta.js';
import { BulkModel } from './model.js';
import { checkOptionKeys } from './optionKeys.js';
import { type RetryPolicy, resolveRetry, transientRule, withRetry } from './retry.js';
import type { Engine } from './runner.js';
import { declaredOptions, defaultOf, fromEnv } from './settings.js';
import { type Row, Signals } from './signals.js';

const CLIENT_KEYS = declaredOptions<BulkClientOptions>()('BulkClient');

/** Where a client connects when given nothing and DATABASE_URL is unset. */
export const DEFAULT_DATABASE_URL = defaultOf('database');

export interface BulkClientOptions {
  /** postgres://user:pass@host:port/db. Default: DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres. */
  connectionString?: string;
  /** Use an existing pg.Pool instead (it is not ended by close()). */
  pool?: DbPool;
  /** Connections in the pool this client creates. Default 10. */
  poolSize?: number;
  /** Client-wide cap on connections writing chunks at once, over all calls. Default: poolSize (4 with `pool`). */
  maxConcurrentBatchWrites?: number;
  /** The chunk ledger (exactly-once chunks). Default on, in schema `bulkmodel`. */
  ledger?: boolean | { schema?: string };
  /** Retry policy for transient failures (merged over the defaults). */
  retry?: Partial<RetryPolicy>;
  /** How rows read back are shaped. Default: like node-postgres (timestamps as Date). */
  decode?: DecodeOptions;
  logger?: Logger;
  /** Connection timeout for new connections. Default 10000. */
  connectTimeoutMs?: number;
  /**
   * A chunk transaction left idle this long is ended by the server (its ledger claim freed for a
   * replay), e.g. when this process vanished behind a network partition. Default 60000; 0: off.
   */
  chunkIdleTimeoutMs?: number;
}

export interface ConnectionCheck {
  ok: true;
  latencyMs: number;
  /** Pooled connections found broken and replaced. */
  replaced: number;
  serverVersion: string;
}

/**
 * Direct mode: bulk operations against Postgres with no queue. `model(table)` gives the
 * operations of one table; metadata is read from the catalog once per table and cached.
 */
/** Session settings of the connections a client opens itself (see the Pool below). */
export const SESSION_OPTIONS =
  '-c DateStyle=ISO,MDY -c IntervalStyle=postgres -c bytea_output=hex -c extra_float_digits=1';

/**
 * The connection string with SESSION_OPTIONS after any `options` it has (a later -c wins), so
 * that a URL's own options (a DateStyle node-postgres cannot parse) cannot break decoding.
 */
function withSessionOptions(connectionString: string): string {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return connectionString; // not a URL: the Pool's own `options` applies
  }
  const own = url.searchParams.get('options');
  if (own === null) return connectionString;
  url.searchParams.set('options', `${own} ${SESSION_OPTIONS}`);
  return url.toString();
}

/** Table spellings whose metadata is cached at once. */
const META_CACHE_MAX = 1000;

export class BulkClient {
  readonly signals: Signals;
  readonly logger: Logger;
  /** @internal */ readonly engine: Engine;
  /** @internal */ readonly decode: DecodeOptions;
  private readonly ownsPool: boolean;
  private readonly metaCache = new Map<string, Promise<TableMeta>>();
  private closed = false;

  constructor(options: BulkClientOptions = {}) {
    checkOptionKeys(options, CLIENT_KEYS, 'BulkClient');
    this.logger = options.logger ?? defaultLogger;
    this.signals = new Signals(this.logger);
    this.decode = resolveDecode(options.decode);
    const poolSize = options.poolSize ?? 10;
    if (!Number.isInteger(poolSize) || poolSize < 1)
      throw new BulkError('INVALID_OPTION', 'poolSize must be a positive integer');
    let pool: DbPool;
    if (options.pool) {
      pool = options.pool;
      this.ownsPool = false;
    } else {
      const connectionString = options.connectionString ?? fromEnv('database')!;
      pool = new pg.Pool({
        connectionString: withSessionOptions(connectionString),
        max: poolSize,
        connectionTimeoutMillis: options.connectTimeoutMs ?? defaultOf('connectTimeoutMs'),
        application_name: 'bulkmodel',
        // The text forms every read decodes and every file holds: ISO dates (node-postgres's
        // parsers read no other), intervals as Postgres writes them, bytea as hex, floats in
        // their shortest exact form, whatever the server's or role's defaults are.
        options: SESSION_OPTIONS,
        // Notice a dead peer on an idle connection instead of waiting for the next query.
        keepAlive: true,
      }) as unknown as DbPool;
      this.ownsPool = true;
    }
    // Every connection keeps an error listener for life, from the moment it connects: a backend
    // killed right after it said ReadyForQuery sends FATAL in the same packet, which pg reports
    // while the pool is handing the client out (its idle listener already gone, ours not yet
    // attached), and an error event with no listener would crash the process.
    pool.on('connect', (client) => {
      client.on('error', () => {});
    });
    // An idle connection dropped by the server must never crash the process.
    pool.on('error', (err) =>
      this.logger.warn(
        { err: redact(String(err?.message ?? err)) },
        'idle Postgres connection lost; it will be replaced',
      ),
    );
    const cap = options.maxConcurrentBatchWrites ?? (options.pool ? 4 : poolSize);
    if (!Number.isInteger(cap) || cap < 1)
      throw new BulkError('INVALID_OPTION', 'maxConcurrentBatchWrites must be a positive integer');
    const retry = resolveRetry(options.retry);
    const chunkIdleTimeoutMs = options.chunkIdleTimeoutMs ?? 60_000;
    if (
      typeof chunkIdleTimeoutMs !== 'number' ||
      !Number.isInteger(chunkIdleTimeoutMs) ||
      chunkIdleTimeoutMs < 0
    )
      throw new BulkError(
        'INVALID_OPTION',
        'chunkIdleTimeoutMs must be an integer >= 0 (milliseconds)',
      );
    const ledgerOpt = options.ledger ?? true;
    let ledger: Ledger | null = null;
    if (ledgerOpt !== false) {
      const l = createLedger((ledgerOpt === true ? undefined : ledgerOpt.schema) ?? 'bulkmodel');
      // Creating the ledger table is the first query of a call: retry it like any other.
      const ensure = l.ensure.bind(l);
      ledger = { ...l, ensure: (db) => withRetry(() => ensure(db), retry) };
    }
    this.engine = {
      pool,
      ledger,
      retry,
      logger: this.logger,
      writeSlots: pLimit(cap),
      chunkIdleTimeoutMs,
    };
  }

  /** The bulk operations of one table (`name` or `schema.name`). */
  model<T extends Row = Row>(table: string): BulkModel<T> {
    return new BulkModel<T>(this, table);
  }

  /** Table metadata from the catalog, cached; `refresh` reads it again (after a migration). */
  meta(table: string, refresh = false): Promise<TableMeta> {
    this.assertOpen();
    let p = refresh ? undefined : this.metaCache.get(table);
    if (!p) {
      p = withRetry(() => loadTableMeta(this.engine.pool, table), this.engine.retry);
      this.metaCache.delete(table);
      this.metaCache.set(table, p);
      // Bounded: table names can come from queue jobs, which anyone who writes the queue
      // chooses (many spellings of one table). The oldest entry goes first.
      if (this.metaCache.size > META_CACHE_MAX)
        this.metaCache.delete(this.metaCache.keys().next().value!);
      p.catch(() => {
        if (this.metaCache.get(table) === p) this.metaCache.delete(table);
      });
    }
    return p;
  }

  /** Forget cached table metadata (all tables, or one). */
  clearMetaCache(table?: string): void {
    if (table === undefined) this.metaCache.clear();
    else this.metaCache.delete(table);
  }

  /**
   * Check that Postgres answers within `timeoutMs`: every idle pooled connection is tried and a
   * broken one is destroyed (the pool opens a fresh one). Retries transient failures until the
   * time is up, then throws CONNECTION_FAILED.
   */
  async ensureConnected(options: { timeoutMs?: number } = {}): Promise<ConnectionCheck> {
    this.assertOpen();
    const timeoutMs = options.timeoutMs ?? 5_000;
    const started = Date.now();
    let replaced = 0;
    const timeoutError = () =>
      Object.assign(new Error('connection timeout: no answer within the time allowed'), {
        code: 'ETIMEDOUT',
      });
    const probe = async (): Promise<string> => {
      const remaining = Math.max(1, timeoutMs - (Date.now() - started));
      let timer: NodeJS.Timeout | undefined;
      let timedOut = false;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          reject(timeoutError());
        }, remaining);
      });
      deadline.catch(() => {});
      try {
        // connect() is bounded too: a server that accepts but never answers must not hold us
        // past the timeout (the pool's own connect timeout may be much longer).
        const connecting = this.engine.pool.connect();
        connecting.then(
          (late) => {
            // The deadline passed first: this connection is not trusted, destroy it.
            if (timedOut) {
              late.on('error', () => {});
              late.release(timeoutError());
            }
          },
          () => {},
        );
        const client = await Promise.race([connecting, deadline]);
        const onError = () => {};
        client.on('error', onError);
        try {
          const r = await Promise.race([
            client.query({ text: 'SELECT current_setting($1) AS v', values: ['server_version'] }),
            deadline,
          ]);
          client.removeListener('error', onError);
          client.release();
          return (r.rows[0] as { v: string }).v;
        } catch (err) {
          // The listener stays on the destroyed connection (it may still report its end).
          client.release(err instanceof Error ? err : new Error(String(err)));
          replaced++;
          throw err;
        }
      } finally {
        clearTimeout(timer);
      }
    };
    try {
      const idle = Math.max(1, this.engine.pool.idleCount ?? 1);
      const versions = await withRetry(
        async () => {
          // Borrow as many connections as are idle at once, so each idle one is probed.
          const results = await Promise.allSettled(Array.from({ length: idle }, probe));
          const good = results.find((r) => r.status === 'fulfilled');
          if (good) return (good as PromiseFulfilledResult<string>).value;
          const reason = (results[0] as PromiseRejectedResult).reason;
          if (Date.now() - started >= timeoutMs && transientRule(reason) !== undefined) {
            // Out of time: stop here rather than let the retry loop start another round.
            throw new BulkError(
              'CONNECTION_FAILED',
              `cannot reach Postgres within ${timeoutMs} ms: ${redact(String(reason?.message ?? reason))}`,
              { cause: reason },
            );
          }
          throw reason;
        },
        {
          ...this.engine.retry,
          maxElapsedMs: timeoutMs,
          maxDelayMs: Math.max(1, Math.min(this.engine.retry.maxDelayMs, 1000, timeoutMs / 4)),
        },
      );
      return { ok: true, latencyMs: Date.now() - started, replaced, serverVersion: versions };
    } catch (err) {
      if (err instanceof BulkError && err.code === 'CONNECTION_FAILED') throw err;
      const transient = transientRule(err) !== undefined;
      throw new BulkError(
        transient ? 'CONNECTION_FAILED' : 'DATABASE_ERROR',
        `cannot reach Postgres: ${redact(String((err as Error)?.message ?? err))}`,
        { cause: err },
      );
    }
  }

  /** Delete ledger rows older than `olderThanMs` (default 7 days); returns how many. */
  async pruneLedger(olderThanMs = defaultOf('ledgerRetentionMs')): Promise<number> {
    const l = this.engine.ledger;
    if (!l) return 0;
    await l.ensure(this.engine.pool);
    return l.prune(this.engine.pool, olderThanMs);
  }

  /** End the pool (when this client created it). Later calls fail with CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsPool) await this.engine.pool.end();
  }

  /** @internal */
  assertOpen(): void {
    if (this.closed) throw new BulkError('CLOSED', 'this BulkClient is closed');
  }
}
