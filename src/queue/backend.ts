import {
  assertSchemaCompatibility,
  type BackendFactory,
  createPostgresBackend,
  createRedisBackend,
  FlowProducer,
  LATEST_SCHEMA_VERSION,
  type QueueOptions,
  type RedisQueueBackend,
  runMigrations,
  SchemaMigrationRequiredError,
  SchemaVersionMismatchError,
} from 'bullmq';
import pg from 'pg';
import { DEFAULT_DATABASE_URL } from '../core/client.js';
import { BulkError, fromPgError, isBulkError } from '../core/errors.js';
import { redact } from '../core/logger.js';
import { defaultOf, fromEnv } from '../core/settings.js';
import { connect, describe, isCluster, type RedisClient, type RedisInput } from './connection.js';
import { checkPrefix, QueueKeys } from './keys.js';
import { LenientQueue } from './lenientJob.js';
import { checkQueueSchema, checkSchemaName, migrateQueueSchema } from './pgSchema.js';
import { PostgresQueueState } from './pgState.js';
import { RedisQueueState } from './redisState.js';
import type { QueueState } from './state.js';

export type BackendKind = 'redis' | 'postgres';
type BullFactory = BackendFactory<RedisQueueBackend>;

/**
 * Where queues live: BullMQ's jobs and bulkmodel's state beside them. Producer, worker,
 * dashboard and CLI reach a store only through this: BullMQ classes get `bullOptions(queue)`,
 * and everything else goes through `state(queue)`.
 */
export interface QueueBackend {
  readonly kind: BackendKind;
  /** Where it points, without secrets (for logs). */
  readonly where: string;
  /**
   * What BullMQ's classes take for one queue: connection and key prefix. `connections` sizes
   * the pool of a class that opens its own (Postgres).
   */
  bullOptions(queue: string, connections?: number): Pick<QueueOptions, 'connection' | 'prefix'>;
  /**
   * The BullMQ backend factory those classes are built with (their last argument). Typed as
   * the Redis one, so that the classes keep their default generics: bulkmodel uses only what
   * every BullMQ backend implements.
   */
  readonly bullFactory: BullFactory;
  /**
   * Check (or, when asked to migrate, create and upgrade) what the store needs before use:
   * nothing for Redis; the queue schema for Postgres (QUEUE_SCHEMA when missing or old).
   */
  prepare(): Promise<void>;
  /** BullMQ's qualified name of a queue (a parent job's `queue` in a flow). */
  qualifiedName(queue: string): string;
  /** bulkmodel's state beside one queue. */
  state(queue: string): QueueState;
  /** A BullMQ Queue for one queue that lists jobs whose data is not JSON (LenientQueue). */
  queue(name: string): LenientQueue;
  /** A FlowProducer for one queue's flows. */
  flows(queue: string): FlowProducer;
  /** Resolves when the store answers. */
  ping(): Promise<void>;
  /** Warnings about the store's configuration (e.g. a Redis eviction policy). */
  configWarnings(): Promise<string[]>;
  /** Close the connections this backend opened (a given instance is left open). */
  close(): Promise<void>;
  /** Close at once. */
  disconnect(): void;
}

/** What every backend does the same way: one state per queue, BullMQ's classes per queue. */
abstract class BaseBackend<S extends QueueState> {
  abstract readonly bullFactory: BullFactory;
  abstract bullOptions(
    queue: string,
    connections?: number,
  ): Pick<QueueOptions, 'connection' | 'prefix'>;
  protected abstract makeState(queue: string): S;
  private readonly states = new Map<string, S>();

  state(queue: string): S {
    let s = this.states.get(queue);
    if (!s) {
      s = this.makeState(queue);
      this.states.set(queue, s);
    }
    return s;
  }

  queue(name: string): LenientQueue {
    return new LenientQueue(name, this.bullOptions(name), this.bullFactory);
  }

  flows(queue: string): FlowProducer {
    return new FlowProducer(this.bullOptions(queue), this.bullFactory);
  }
}

export interface RedisBackendOptions {
  redis?: RedisInput;
  /** BullMQ key prefix. Default 'bull'. */
  prefix?: string;
}

/** Queues in one Redis server or a Redis Cluster (each queue in one hash slot). */
export class RedisBackend extends BaseBackend<RedisQueueState> implements QueueBackend {
  readonly kind = 'redis' as const;
  readonly bullFactory: BullFactory = createRedisBackend;
  readonly where: string;
  readonly client: RedisClient;
  readonly cluster: boolean;
  readonly prefix: string;
  private readonly owned: boolean;

  constructor(options: RedisBackendOptions = {}) {
    super();
    this.prefix = checkPrefix(options.prefix ?? defaultOf('prefix'));
    const c = connect(options.redis);
    this.client = c.redis;
    this.owned = c.owned;
    this.cluster = isCluster(c.redis);
    this.where = describe(options.redis);
  }

  keys(queue: string): QueueKeys {
    return new QueueKeys(this.prefix, queue, this.cluster);
  }

  bullOptions(queue: string) {
    return { connection: this.client, prefix: this.keys(queue).bullPrefix };
  }

  async prepare(): Promise<void> {}

  qualifiedName(queue: string): string {
    return this.keys(queue).qualified;
  }

  protected makeState(queue: string): RedisQueueState {
    return new RedisQueueState(this.client, this.keys(queue));
  }

  async ping(): Promise<void> {
    await this.client.ping();
  }

  async configWarnings(): Promise<string[]> {
    const nodes = isCluster(this.client) ? this.client.nodes('master') : [this.client];
    const out: string[] = [];
    for (const node of nodes) {
      const policy = (await node.config('GET', 'maxmemory-policy').catch(() => null)) as
        | string[]
        | null;
      if (policy?.[1] && policy[1] !== 'noeviction') {
        const at = isCluster(this.client) ? ` (${node.options.host}:${node.options.port})` : '';
        out.push(
          `Redis maxmemory-policy is ${policy[1]}${at}: set it to noeviction, or Redis may evict queued jobs`,
        );
      }
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.owned) await this.client.quit().catch(() => this.client.disconnect());
  }

  disconnect(): void {
    if (this.owned) this.client.disconnect();
  }
}

export interface PostgresBackendOptions {
  /**
   * The database the queues live in (a connection string). Default: BULKMODEL_QUEUE_DATABASE,
   * else DATABASE_URL, else libpq's environment (PGHOST, ...).
   */
  database?: string;
  /** The schema of the queues, BullMQ's tables and bulkmodel's. Default 'bulkmodel_queue'. */
  schema?: string;
  /** Create or upgrade the queue schema in prepare() (else QUEUE_SCHEMA when it is missing). */
  migrate?: boolean;
  /** Connections of bulkmodel's own state pool. Default 4. */
  poolSize?: number;
}

/**
 * Queues in PostgreSQL: BullMQ's PostgreSQL backend (createPostgresBackend) for the jobs, and
 * PostgresQueueState for what bulkmodel keeps beside them, in one schema of the queue database.
 * Each BullMQ class opens a pool of its own (BullMQ pins its schema on the connections it makes).
 */
export class PostgresBackend extends BaseBackend<PostgresQueueState> implements QueueBackend {
  readonly kind = 'postgres' as const;
  readonly bullFactory = createPostgresBackend as unknown as BullFactory;
  readonly where: string;
  readonly schema: string;
  readonly pool: pg.Pool;
  private readonly connectionString: string;
  private readonly migrate: boolean;
  private prepared: Promise<void> | undefined;
  private closed = false;

  constructor(options: PostgresBackendOptions = {}) {
    super();
    // Empty means unset (compose's `${X:-}`), as for the other variables.
    this.schema = checkSchemaName(options.schema || fromEnv('queueSchema')!);
    // The same default as BulkClient's, so that the queues live where the rows go.
    this.connectionString =
      options.database ||
      process.env.BULKMODEL_QUEUE_DATABASE ||
      process.env.DATABASE_URL ||
      DEFAULT_DATABASE_URL;
    this.migrate = options.migrate === true;
    this.where = `${redact(this.connectionString)} schema ${this.schema}`;
    const poolSize = options.poolSize ?? 4;
    if (!Number.isInteger(poolSize) || poolSize < 1)
      throw new BulkError('INVALID_OPTION', 'the queue pool size must be a positive integer');
    this.pool = new pg.Pool({
      ...this.clientConfig(),
      max: poolSize,
      application_name: 'bulkmodel queue',
    });
    // An idle connection that breaks (Postgres restarting) must not crash the process: the
    // next query opens another.
    this.pool.on('error', () => {});
  }

  private clientConfig(): pg.ClientConfig {
    return {
      connectionString: this.connectionString,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
    };
  }

  bullOptions(_queue: string, connections = 3) {
    return {
      connection: {
        ...this.clientConfig(),
        schema: this.schema,
        max: connections,
        // A class may be built before prepare() ran (the worker's, in its constructor): asked to
        // migrate, it migrates BullMQ's tables itself (under BullMQ's advisory lock).
        ...(this.migrate ? { migrate: true } : {}),
      } as unknown as QueueOptions['connection'],
    };
  }

  qualifiedName(queue: string): string {
    return queue;
  }

  prepare(): Promise<void> {
    this.prepared ??= (async () => {
      const client = await this.pool.connect();
      // A checked-out client has no error listener: a restart now must reject, not crash.
      let broken: Error | undefined;
      const onError = (err: Error) => {
        broken = err;
      };
      client.on('error', onError);
      try {
        if (this.migrate) {
          await runMigrations(client, this.schema);
          await migrateQueueSchema(client, this.schema);
        } else {
          const bull = await assertSchemaCompatibility(client, this.schema);
          if (bull < LATEST_SCHEMA_VERSION)
            throw queueSchemaError(
              this.schema,
              `BullMQ's tables are at version ${bull}, this BullMQ needs ${LATEST_SCHEMA_VERSION}`,
            );
          await checkQueueSchema(client, this.schema);
        }
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    })().catch((err: unknown) => {
      this.prepared = undefined;
      throw prepareError(err, this.schema, this.where);
    });
    return this.prepared;
  }

  protected makeState(queue: string): PostgresQueueState {
    return new PostgresQueueState(this.pool, this.clientConfig(), this.schema, queue);
  }

  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  async configWarnings(): Promise<string[]> {
    return [];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end().catch(() => {});
  }

  disconnect(): void {
    void this.close();
  }
}

function queueSchemaError(schema: string, why: string, cause?: unknown): BulkError {
  return new BulkError(
    'QUEUE_SCHEMA',
    `queue schema "${schema}": ${why} (create or upgrade it with \`bulkmodel migrate --backend postgres\`, or the option migrate: true)`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * What prepare() failed with, as a BulkError: BullMQ's schema errors are QUEUE_SCHEMA; an error
 * Postgres reported (a missing privilege, say) keeps its SQLSTATE; only a server that did not
 * answer (no SQLSTATE, or a connection class) is CONNECTION_FAILED.
 */
function prepareError(err: unknown, schema: string, where: string): BulkError {
  if (isBulkError(err)) return err;
  if (err instanceof SchemaMigrationRequiredError || err instanceof SchemaVersionMismatchError)
    return queueSchemaError(schema, (err as Error).message, err);
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !/^(08|57P)/.test(code))
    return fromPgError(err, { table: `(queue schema ${schema})` });
  return new BulkError(
    'CONNECTION_FAILED',
    `the queue database (${where}) did not answer: ${(err as Error)?.message ?? err}`,
    { cause: err },
  );
}

/** How a producer, worker or reader names its queue store (see QueueBackendOptions). */
export interface QueueBackendOptions {
  /** Where the queues live: 'redis' or 'postgres'. Default: BULKMODEL_BACKEND, else 'redis'. */
  backend?: BackendKind;
  redis?: RedisInput;
  prefix?: string;
  /** Postgres backend: the database the queues live in. Default: the target database. */
  queueDatabase?: string;
  /** Postgres backend: the schema of the queues. Default 'bulkmodel_queue'. */
  queueSchema?: string;
  /** Postgres backend: create or upgrade the queue schema at start. Default false. */
  migrate?: boolean;
}

/** The backend kind asked for: the option, else BULKMODEL_BACKEND, else 'redis'. */
export function backendKind(given: unknown): BackendKind {
  const v = given ?? fromEnv('backend')!.trim();
  if (v !== 'redis' && v !== 'postgres')
    throw new BulkError(
      'INVALID_OPTION',
      `backend must be 'redis' or 'postgres', not ${JSON.stringify(String(v)).slice(0, 40)}`,
    );
  return v;
}

/** Open the backend the options name. `database` is the target database's connection string. */
export function openBackend(
  o: QueueBackendOptions,
  database?: string,
  poolSize?: number,
): QueueBackend {
  if (backendKind(o.backend) === 'postgres')
    return new PostgresBackend({
      ...(o.queueDatabase || process.env.BULKMODEL_QUEUE_DATABASE || database
        ? { database: o.queueDatabase || process.env.BULKMODEL_QUEUE_DATABASE || database }
        : {}),
      ...(o.queueSchema !== undefined ? { schema: o.queueSchema } : {}),
      ...(o.migrate !== undefined ? { migrate: o.migrate } : {}),
      ...(poolSize !== undefined ? { poolSize } : {}),
    });
  return new RedisBackend({ redis: o.redis, prefix: o.prefix });
}
