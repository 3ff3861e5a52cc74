/**
 * Every configurable thing of bulkmodel, declared once: its library option on each class that
 * takes it, its CLI flag and the commands that take it, its environment variable, its type, its
 * default and one line of doc. From this table come the constructors' known option names (an
 * unknown one is INVALID_OPTION with the nearest known name), the CLI's flags, their `--help`
 * lines and the values they default to, and docs/configuration.md (a test fails when that page
 * and this table disagree: regenerate it with `npm run docs:config`).
 *
 * This module imports nothing of bulkmodel, so that every layer can take its defaults from here.
 */

/** The classes (and function) whose options are declared here. */
export const OWNERS = [
  'BulkClient',
  'BulkProducer',
  'BulkWorker',
  'BulkEvents',
  'startDashboard',
] as const;
export type Owner = (typeof OWNERS)[number];

/** The CLI commands whose flags are declared here. */
export const COMMANDS = [
  'worker',
  'dashboard',
  'demo',
  'load',
  'export',
  'status',
  'migrate',
] as const;
export type Command = (typeof COMMANDS)[number];

export type SettingType =
  | 'string'
  | 'integer'
  | 'boolean'
  | 'list'
  | 'url'
  | 'object'
  | 'function'
  | 'choice';

export interface Setting {
  /** Its name in the library, per class: `limits.maxChunks` is the key `limits`, field maxChunks. */
  readonly options?: { readonly [O in Owner]?: string };
  /** The CLI flag, without its dashes, and the placeholder of its value (none for a switch). */
  readonly flag?: string;
  readonly arg?: string;
  /** The commands that take the flag; a command may give its own default or doc. */
  readonly commands?: {
    readonly [C in Command]?: { default?: Value; doc?: string; ignoresEnv?: boolean };
  };
  readonly env?: string;
  readonly type: SettingType;
  readonly choices?: readonly string[];
  /** The default, as the code uses it. */
  readonly default?: Value;
  /** The default in words, when it is not one value (computed, or another setting's). */
  readonly defaultText?: string;
  readonly min?: number;
  readonly max?: number;
  /** One line of doc. */
  readonly doc: string;
}

type Value = string | number | boolean;

const DAY_MS = 24 * 3600_000;
/** The same option name on every class that talks to the queues. */
function onQueueOwners<N extends string>(name: N) {
  return { BulkProducer: name, BulkWorker: name, BulkEvents: name, startDashboard: name } as const;
}

const QUEUE_COMMANDS = { worker: {}, dashboard: {}, demo: {}, load: {}, status: {} };
/** Where the queues live, for the commands that use them and migrate (whose backend is postgres). */
const STORE_COMMANDS = { ...QUEUE_COMMANDS, migrate: {} };

export const SETTINGS = {
  // Command flags.
  rows: {
    flag: 'rows',
    arg: '<n>',
    commands: { demo: {} },
    type: 'integer',
    default: 1_000_000,
    min: 1,
    doc: 'rows the demo loads',
  },
  workers: {
    flag: 'workers',
    arg: '<n>',
    commands: {
      demo: { default: 2 },
      load: {},
    },
    type: 'integer',
    default: 0,
    min: 0,
    doc: 'worker processes to start for this run, stopped when it ends (0: use workers already running on --queue that allow the table)',
  },
  batchSize: {
    flag: 'batch-size',
    arg: '<n>',
    commands: { demo: {}, load: {} },
    type: 'integer',
    default: 5000,
    min: 1,
    max: 1_000_000,
    doc: 'rows per chunk job',
  },
  format: {
    flag: 'format',
    arg: '<f>',
    commands: {
      load: { doc: 'the file’s format: csv, tsv, ndjson (jsonl) or json (an array of objects)' },
      export: { doc: 'the file’s format: csv or ndjson' },
    },
    type: 'choice',
    choices: ['csv', 'tsv', 'ndjson', 'jsonl', 'json'],
    defaultText: 'from the file’s extension, under a .gz',
    doc: 'the file’s format',
  },
  delimiter: {
    flag: 'delimiter',
    arg: '<c>',
    commands: { load: {} },
    type: 'string',
    defaultText: ', for csv, a tab for tsv',
    doc: 'csv/tsv: the field delimiter, one ASCII character (tab: \\t)',
  },
  null: {
    flag: 'null',
    arg: '<text>',
    commands: { load: {} },
    type: 'string',
    defaultText: 'an unquoted empty field',
    doc: 'csv/tsv: the unquoted text that means NULL (a quoted field never does), as COPY’s NULL',
  },
  header: {
    flag: 'header',
    commands: { load: {} },
    type: 'boolean',
    default: true,
    doc: 'csv/tsv: the first record names the columns',
  },
  noHeader: {
    flag: 'no-header',
    commands: { load: {} },
    type: 'boolean',
    default: false,
    doc: 'csv/tsv: the file has no header row: --columns names its columns, in order',
  },
  onError: {
    flag: 'on-error',
    arg: '<what>',
    commands: { load: {} },
    type: 'choice',
    choices: ['stop', 'skip'],
    default: 'stop',
    doc: 'stop at the first record Postgres refuses, or skip such records (and, in NDJSON/JSON, records that do not read), writing them to --rejects',
  },
  maxErrors: {
    flag: 'max-errors',
    arg: '<n>',
    commands: { load: {} },
    type: 'integer',
    default: 100,
    min: 0,
    max: 10_000,
    doc: 'with --on-error skip: the most records one chunk (--batch-size rows) may skip; one more stops the load as --on-error stop would',
  },
  rejects: {
    flag: 'rejects',
    arg: '<file>',
    commands: { load: {} },
    type: 'string',
    defaultText: '<file>.rejects.<format> beside the input (stdin: ./stdin.rejects.<format>)',
    doc: 'with --on-error skip: where the skipped records go, verbatim (csv/tsv: after the header); <file>.log beside it gives each one’s line and reason',
  },
  create: {
    flag: 'create',
    commands: { load: {} },
    type: 'boolean',
    default: false,
    doc: 'create the table from the header, with column types inferred from the first rows (printed first)',
  },
  dryRun: {
    flag: 'dry-run',
    commands: { load: {} },
    type: 'boolean',
    default: false,
    doc: 'write nothing: print the plan, then try the first --sample rows in a rolled-back transaction and list the problems found (exit 1 if any)',
  },
  sample: {
    flag: 'sample',
    arg: '<n>',
    commands: { load: {} },
    type: 'integer',
    default: 1000,
    min: 1,
    max: 1_000_000,
    doc: 'rows read to infer types (--create) and tried by --dry-run',
  },
  updateFields: {
    flag: 'update-fields',
    arg: '<a,b>',
    commands: { load: {} },
    type: 'list',
    doc: 'update those columns of existing rows instead of inserting (rows matched by primary key or --key)',
  },
  key: {
    flag: 'key',
    arg: '<a,b>',
    commands: { load: {} },
    type: 'list',
    defaultText: 'the primary key',
    doc: 'the columns that match rows (--update-fields) or the conflict target (--on-conflict update)',
  },
  copy: {
    flag: 'copy',
    commands: { load: {} },
    type: 'boolean',
    default: false,
    doc: 'insert with COPY FROM (copyFrom) instead of INSERT; a CSV file always goes to COPY as it is',
  },
  onConflict: {
    flag: 'on-conflict',
    arg: '<c>',
    commands: { load: {} },
    type: 'string',
    doc: 'ignore (skip rows that hit a unique constraint), or update:col1,col2 (upsert on --key)',
  },
  operationId: {
    flag: 'operation-id',
    arg: '<id>',
    commands: { load: {} },
    type: 'string',
    defaultText: 'a random UUID',
    doc: 'enqueue idempotently: rerun an interrupted load with the same id and nothing is written twice',
  },
  wait: {
    flag: 'wait',
    commands: { load: {} },
    type: 'boolean',
    default: true,
    doc: 'wait for the workers to finish and report',
  },
  noWait: {
    flag: 'no-wait',
    commands: { load: {} },
    type: 'boolean',
    default: false,
    doc: 'return once the file is enqueued, printing the operation id (follow it: bulkmodel status <id>)',
  },
  columns: {
    flag: 'columns',
    arg: '<a,b>',
    commands: {
      export: {},
      load: {
        doc: 'csv/tsv: the table columns the file’s columns go to, in file order (renaming the header’s); json formats: the keys loaded, others ignored',
      },
    },
    type: 'list',
    doc: 'the columns to write, in this order (default: all)',
  },
  where: {
    flag: 'where',
    arg: '<json>',
    commands: { export: {} },
    type: 'string',
    doc: 'a filter as for update(), e.g. {"flag":true,"id":{"gte":100}}',
  },
  limit: {
    flag: 'limit',
    arg: '<n>',
    commands: { status: {} },
    type: 'integer',
    default: 20,
    min: 1,
    doc: 'how many recent operations to show',
  },
  json: {
    flag: 'json',
    commands: { status: {} },
    type: 'boolean',
    default: false,
    doc: 'print the statuses as JSON',
  },
  check: {
    flag: 'check',
    commands: { migrate: {} },
    type: 'boolean',
    default: false,
    doc: 'change nothing: exit 0 when the queue schema is current, 1 when it is missing or old',
  },

  // BulkClient.
  pool: {
    options: { BulkClient: 'pool' },
    type: 'object',
    doc: 'an existing pg.Pool to use instead of one of its own (close() does not end it)',
  },
  poolSize: {
    options: { BulkClient: 'poolSize' },
    type: 'integer',
    default: 10,
    min: 1,
    doc: 'connections in the pool the client creates',
  },
  maxConcurrentBatchWrites: {
    options: { BulkClient: 'maxConcurrentBatchWrites' },
    type: 'integer',
    defaultText: 'poolSize (4 with pool)',
    min: 1,
    doc: 'client-wide cap on connections writing chunks at once, over all calls',
  },
  ledger: {
    options: { BulkClient: 'ledger' },
    type: 'object',
    defaultText: 'on, in schema bulkmodel',
    doc: 'the chunk ledger that makes chunks exactly-once: false, or { schema }',
  },
  retry: {
    options: { BulkClient: 'retry' },
    type: 'object',
    doc: 'the retry policy for transient failures, merged over the defaults (docs/RELIABILITY.md)',
  },
  decode: {
    options: { BulkClient: 'decode', BulkProducer: 'decode' },
    type: 'object',
    defaultText: 'node-postgres’s shapes',
    doc: 'how rows read back are shaped, e.g. { json: "text" } for lossless json (docs/types.md)',
  },
  connectTimeoutMs: {
    options: { BulkClient: 'connectTimeoutMs' },
    type: 'integer',
    default: 10_000,
    min: 0,
    doc: 'connection timeout for new connections, in ms',
  },
  chunkIdleTimeoutMs: {
    options: { BulkClient: 'chunkIdleTimeoutMs' },
    type: 'integer',
    default: 60_000,
    min: 0,
    doc: 'a chunk transaction idle this long is ended by the server, freeing its ledger claim (0: off)',
  },

  // BulkProducer.
  attempts: {
    options: { BulkProducer: 'attempts' },
    type: 'integer',
    default: 8,
    min: 1,
    doc: 'attempts per chunk job for transient failures (each attempt also retries inside)',
  },
  sealTimeoutMs: {
    options: { BulkProducer: 'sealTimeoutMs' },
    type: 'integer',
    default: DAY_MS,
    min: 1,
    doc: 'how long an operation whose producer stopped enqueueing waits before failing, in ms',
  },
  payloadVersion: {
    options: { BulkProducer: 'payloadVersion' },
    type: 'choice',
    choices: ['1', '2', '3'],
    default: 3,
    doc: '3: rows travel as COPY text where they can, beside the job (docs/payload.md); 2: COPY text inside the job; 1: always as JSON values',
  },

  // BulkWorker.
  tables: {
    options: { BulkWorker: 'tables' },
    flag: 'tables',
    arg: '<list>',
    commands: { worker: {} },
    env: 'BULKMODEL_TABLES',
    type: 'list',
    defaultText: 'none: required',
    doc: 'the tables this worker may write (name or schema.name); * for every table',
  },
  concurrency: {
    options: { BulkWorker: 'concurrency' },
    flag: 'concurrency',
    arg: '<n>',
    commands: {
      worker: {},
      load: { doc: 'with --workers: jobs each of those workers runs at once, per queue' },
    },
    type: 'integer',
    default: 4,
    min: 1,
    doc: 'jobs a worker runs at once, per queue',
  },
  name: {
    options: { BulkWorker: 'name' },
    flag: 'name',
    arg: '<name>',
    commands: { worker: {} },
    type: 'string',
    defaultText: 'host:pid',
    doc: 'the worker’s name, recorded on the jobs it runs',
  },
  lockDurationMs: {
    options: { BulkWorker: 'lockDurationMs' },
    flag: 'lock-duration',
    arg: '<ms>',
    commands: { worker: {} },
    type: 'integer',
    default: 30_000,
    min: 1,
    doc: 'a job whose worker is silent this long is handed to another',
  },
  maxStalledCount: {
    options: { BulkWorker: 'maxStalledCount' },
    type: 'integer',
    default: 5,
    min: 0,
    doc: 'how many times a stalled job is handed out again before it fails',
  },
  closeTimeoutMs: {
    options: { BulkWorker: 'closeTimeoutMs' },
    flag: 'close-timeout',
    arg: '<ms>',
    commands: { worker: {} },
    type: 'integer',
    default: 30_000,
    min: 1,
    doc: 'on close (SIGTERM), wait this long for in-flight chunks before leaving them to others',
  },
  exportDir: {
    options: { BulkWorker: 'exportDir' },
    flag: 'export-dir',
    arg: '<dir>',
    commands: {
      worker: {},
      demo: { default: './bulkmodel-demo', doc: 'where the demo’s export lands' },
    },
    type: 'string',
    defaultText: 'none, and copyTo jobs are refused: EXPORT_DISABLED',
    doc: 'the directory queued copyTo jobs write their files into (created if missing)',
  },
  exportOverwrite: {
    options: { BulkWorker: 'exportOverwrite' },
    flag: 'export-overwrite',
    commands: { worker: {} },
    type: 'boolean',
    default: false,
    doc: 'let copyTo jobs replace files of the same name (else FILE_EXISTS)',
  },
  showValues: {
    options: { BulkWorker: 'showValues' },
    flag: 'show-values',
    commands: { worker: {} },
    type: 'boolean',
    default: false,
    doc: 'keep row values in recorded errors and logs, for debugging (else table, column, constraint and row index only)',
  },
  maxPayloadBytes: {
    options: { BulkProducer: 'maxPayloadBytes', BulkWorker: 'limits.maxPayloadBytes' },
    flag: 'max-payload-bytes',
    arg: '<n>',
    commands: { worker: {} },
    type: 'integer',
    default: 16 * 1024 * 1024,
    min: 1,
    max: 512 * 1024 * 1024,
    doc: 'a chunk job larger than this is refused (producer: at enqueue; worker: unparsed)',
  },
  maxChunkRows: {
    options: { BulkWorker: 'limits.maxChunkRows' },
    flag: 'max-chunk-rows',
    arg: '<n>',
    commands: { worker: {} },
    type: 'integer',
    default: 1_000_000,
    min: 1,
    max: 1_000_000,
    doc: 'rows in one chunk job',
  },
  maxChunks: {
    options: { BulkWorker: 'limits.maxChunks' },
    flag: 'max-chunks',
    arg: '<n>',
    commands: { worker: {} },
    type: 'integer',
    default: 1_000_000,
    min: 1,
    max: 10_000_000,
    doc: 'chunks in one operation',
  },
  maxNesting: {
    options: { BulkWorker: 'limits.maxNesting' },
    flag: 'max-nesting',
    arg: '<n>',
    commands: { worker: {} },
    type: 'integer',
    default: 64,
    min: 1,
    max: 64,
    doc: 'nesting of values (arrays, objects) in a job',
  },
  eventRows: {
    options: { BulkWorker: 'eventRows' },
    type: 'boolean',
    default: false,
    doc: 'publish signal payloads with their rows (large); else events carry counts only',
  },
  eventsMaxLen: {
    options: { BulkWorker: 'eventsMaxLen' },
    type: 'integer',
    default: 10_000,
    min: 1,
    doc: 'approximate cap on the events stream',
  },
  ledgerRetentionMs: {
    options: { BulkWorker: 'ledgerRetentionMs' },
    type: 'integer',
    default: 7 * DAY_MS,
    min: 1,
    doc: 'ledger rows and operation records older than this are pruned, in ms',
  },
  metrics: {
    options: { BulkWorker: 'metrics' },
    type: 'object',
    doc: 'told of every job’s outcome, e.g. createWorkerMetrics(registry) for Prometheus',
  },
  metricsPort: {
    flag: 'metrics-port',
    arg: '<n>',
    commands: { worker: {} },
    type: 'integer',
    min: 0,
    max: 65535,
    doc: 'serve Prometheus /metrics and /health (503 when Postgres or the queue store is down) on this port',
  },
  metricsHost: {
    flag: 'metrics-host',
    arg: '<addr>',
    commands: { worker: {} },
    type: 'string',
    default: '127.0.0.1',
    doc: 'the address of --metrics-port (0.0.0.0 in containers)',
  },
  heapGrowth: {
    flag: 'heap-growth',
    arg: '<pct>',
    commands: { worker: {} },
    type: 'integer',
    default: 100,
    min: 0,
    max: 1000,
    doc: 'let V8’s heap grow this many percent past live data before a full GC (0: V8’s own, which can double RSS)',
  },

  // BulkEvents.
  group: {
    options: { BulkEvents: 'group' },
    type: 'string',
    defaultText: 'none: best-effort, only events published while reading',
    doc: 'read as a consumer group: every event reaches one consumer at least once',
  },
  consumer: {
    options: { BulkEvents: 'consumer' },
    type: 'string',
    defaultText: 'host:pid',
    doc: 'the consumer’s name within the group',
  },
  from: {
    options: { BulkEvents: 'from' },
    type: 'string',
    default: '$',
    doc: 'without a group: $ reads new events, 0 replays the stream, an event id goes on after it',
  },
  blockMs: {
    options: { BulkEvents: 'blockMs' },
    type: 'integer',
    default: 1000,
    min: 0,
    doc: 'how long a blocking read waits before checking for close, in ms',
  },

  // The dashboard.
  host: {
    options: { startDashboard: 'host' },
    flag: 'host',
    arg: '<addr>',
    commands: { dashboard: {} },
    type: 'string',
    default: '127.0.0.1',
    doc: 'the address to listen on; any other than loopback needs credentials',
  },
  port: {
    options: { startDashboard: 'port' },
    flag: 'port',
    arg: '<n>',
    commands: { dashboard: {} },
    type: 'integer',
    default: 3000,
    min: 0,
    max: 65535,
    doc: 'the port to listen on (0 picks a free one)',
  },
  dashboardUser: {
    options: { startDashboard: 'credentials.user' },
    env: 'BULKMODEL_DASHBOARD_USER',
    type: 'string',
    doc: 'basic-auth user for every page, API and /metrics (with the password)',
  },
  dashboardPassword: {
    options: { startDashboard: 'credentials.password' },
    env: 'BULKMODEL_DASHBOARD_PASSWORD',
    type: 'string',
    doc: 'basic-auth password (with the user)',
  },
  allowActions: {
    options: { startDashboard: 'allowActions' },
    flag: 'allow-actions',
    commands: { dashboard: {} },
    type: 'boolean',
    default: false,
    doc: 'allow retry and clean of jobs in bull-board (else read-only)',
  },
  operationsLimit: {
    options: { startDashboard: 'operationsLimit' },
    type: 'integer',
    default: 200,
    min: 1,
    doc: 'operations the Operations page lists, most recent first',
  },

  // Where things live (every command that uses them lists them last).
  database: {
    options: {
      BulkClient: 'connectionString',
      BulkProducer: 'database',
      BulkWorker: 'database',
      BulkEvents: 'database',
      startDashboard: 'database',
    },
    flag: 'database',
    arg: '<url>',
    commands: { worker: {}, demo: {}, load: {}, export: {}, migrate: {} },
    env: 'DATABASE_URL',
    type: 'url',
    default: 'postgres://postgres@127.0.0.1:5432/postgres',
    doc: 'the Postgres database written to; on the postgres backend it also holds the queues unless queue-database says otherwise',
  },
  backend: {
    options: onQueueOwners('backend'),
    flag: 'backend',
    arg: '<kind>',
    commands: { ...QUEUE_COMMANDS, migrate: { default: 'postgres' } },
    env: 'BULKMODEL_BACKEND',
    type: 'choice',
    choices: ['redis', 'postgres'],
    default: 'redis',
    doc: 'where the queues live: redis, or postgres (BullMQ’s PostgreSQL backend, no Redis at all)',
  },
  redis: {
    options: onQueueOwners('redis'),
    flag: 'redis',
    arg: '<url>',
    commands: QUEUE_COMMANDS,
    env: 'REDIS_URL',
    type: 'url',
    default: 'redis://127.0.0.1:6379',
    doc: 'the Redis server of the queues (in code also ioredis options, a Redis or a Cluster)',
  },
  redisCluster: {
    options: {
      BulkProducer: 'redis.cluster',
      BulkWorker: 'redis.cluster',
      BulkEvents: 'redis.cluster',
      startDashboard: 'redis.cluster',
    },
    flag: 'redis-cluster',
    arg: '<nodes>',
    commands: QUEUE_COMMANDS,
    env: 'REDIS_CLUSTER',
    type: 'list',
    doc: 'a Redis Cluster instead, as host:port,host:port,... (wins over REDIS_URL)',
  },
  queueDatabase: {
    options: onQueueOwners('queueDatabase'),
    flag: 'queue-database',
    arg: '<url>',
    commands: STORE_COMMANDS,
    env: 'BULKMODEL_QUEUE_DATABASE',
    type: 'url',
    defaultText: 'the database setting',
    doc: 'postgres backend: the database the queues live in',
  },
  queueSchema: {
    options: onQueueOwners('queueSchema'),
    flag: 'queue-schema',
    arg: '<name>',
    commands: STORE_COMMANDS,
    env: 'BULKMODEL_QUEUE_SCHEMA',
    type: 'string',
    default: 'bulkmodel_queue',
    doc: 'postgres backend: the schema the queues live in',
  },
  migrate: {
    options: { BulkProducer: 'migrate', BulkWorker: 'migrate' },
    flag: 'migrate',
    commands: { worker: {} },
    type: 'boolean',
    default: false,
    doc: 'postgres backend: create or upgrade the queue schema at start (else a missing one is QUEUE_SCHEMA; see bulkmodel migrate)',
  },
  queue: {
    options: onQueueOwners('queue'),
    flag: 'queue',
    arg: '<names>',
    commands: {
      worker: { doc: 'the queue to serve, or several comma-separated (one loop each)' },
      dashboard: {},
      // Its own queue whatever the environment says: it must not feed an application's workers.
      demo: { default: 'bulkmodel-demo', ignoresEnv: true },
      load: { doc: 'the queue, or several comma-separated to spread operations over' },
      status: {},
    },
    env: 'BULKMODEL_QUEUE',
    type: 'list',
    default: 'bulkmodel',
    doc: 'the queue, or several comma-separated',
  },
  pickQueue: {
    options: { BulkProducer: 'pickQueue' },
    type: 'function',
    defaultText: 'a hash of the operation id',
    doc: 'which of several queues an operation goes to; one id must always give one queue',
  },
  prefix: {
    options: onQueueOwners('prefix'),
    flag: 'prefix',
    arg: '<prefix>',
    commands: { worker: {}, dashboard: {}, load: {}, status: {} },
    type: 'string',
    default: 'bull',
    doc: 'BullMQ key prefix, redis backend only (on postgres the queue schema keeps queues apart)',
  },
  logger: {
    options: {
      BulkClient: 'logger',
      BulkProducer: 'logger',
      BulkWorker: 'logger',
      startDashboard: 'logger',
    },
    type: 'object',
    defaultText: 'JSON lines on stderr (the CLI: pretty on a terminal)',
    doc: 'a pino-style logger (info, warn, error, debug, child)',
  },
  debug: {
    env: 'BULKMODEL_DEBUG',
    type: 'boolean',
    default: false,
    doc: 'the CLI logs at debug level (unless LOG_LEVEL says otherwise) and shows the output of the workers it starts',
  },
  logLevel: {
    env: 'LOG_LEVEL',
    type: 'choice',
    choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    default: 'info',
    doc: 'the CLI’s log level',
  },
} as const satisfies Record<string, Setting>;

export type SettingId = keyof typeof SETTINGS;
type S = typeof SETTINGS;

/** A setting's default, for code that needs the value (one place for each default). */
export function defaultOf<K extends SettingId>(
  id: K,
): S[K] extends { default: infer D }
  ? D extends number
    ? number
    : D extends boolean
      ? boolean
      : string
  : undefined {
  return (SETTINGS[id] as Setting).default as never;
}

/**
 * A setting a class reads when its option is not given: its environment variable (an empty one
 * counts as unset), else its default.
 */
export function fromEnv<K extends SettingId>(id: K): string | undefined {
  const s = SETTINGS[id] as Setting;
  const v = s.env ? process.env[s.env] : undefined;
  if (v) return v;
  return s.default === undefined ? undefined : String(s.default);
}

/** The option names a class's options interface has, per the declaration (top-level keys). */
export type OptionNames<O extends Owner> = {
  [K in SettingId]: S[K] extends { options: { readonly [P in O]: infer N extends string } }
    ? N extends `${infer Top}.${string}`
      ? Top
      : N
    : never;
}[SettingId];

/** The top-level option names `owner` takes, per the declaration. */
export function optionNamesOf(owner: Owner): readonly string[] {
  const out = new Set<string>();
  for (const s of Object.values(SETTINGS) as Setting[]) {
    const name = s.options?.[owner];
    if (name) out.add(name.split('.')[0]!);
  }
  return [...out];
}

/**
 * The option names of a class, checked at compile time both ways against its options interface:
 * a key the declaration lacks, or one the interface lacks, is a type error at the call.
 * `declaredOptions<BulkWorkerOptions>()('BulkWorker')`.
 */
export function declaredOptions<T>() {
  return <O extends Owner>(
    owner: O &
      ([Exclude<keyof T, OptionNames<O>>] extends [never]
        ? [Exclude<OptionNames<O>, keyof T>] extends [never]
          ? unknown
          : { notInInterface: Exclude<OptionNames<O>, keyof T> }
        : { notDeclared: Exclude<keyof T, OptionNames<O>> }),
  ): readonly string[] => optionNamesOf(owner);
}

/** The settings a command takes as flags, in declaration order. */
export function settingsOf(command: Command): [SettingId, Setting][] {
  return (Object.entries(SETTINGS) as [SettingId, Setting][]).filter(
    ([, s]) => s.flag !== undefined && s.commands?.[command] !== undefined,
  );
}

/** The default a command uses for a setting (its own, else the setting's), or undefined. */
export function commandDefault(s: Setting, command: Command | undefined): Value | undefined {
  const own = command ? s.commands?.[command]?.default : undefined;
  return own ?? s.default;
}

/** The environment variable a command reads for a setting, if any. */
export function envOf(s: Setting, command?: Command): string | undefined {
  return command && s.commands?.[command]?.ignoresEnv ? undefined : s.env;
}

/** The default in words, for help and docs. */
export function defaultText(s: Setting, command?: Command): string | undefined {
  const d = commandDefault(s, command);
  if (s.type === 'boolean') return d === true ? 'on' : s.defaultText;
  if (d !== undefined) return String(d);
  return s.defaultText;
}
