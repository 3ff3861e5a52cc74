import { parseArgs } from 'node:util';
import { BulkError } from '../core/errors.js';
import { redact } from '../core/logger.js';

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

export const USAGE = `bulkmodel — bulk writes into PostgreSQL through a BullMQ queue

Usage: bulkmodel <command> [options]

Commands:
  worker     run a worker that writes queued chunks into Postgres
  dashboard  serve the operations page, bull-board and /metrics (basic auth or loopback only)
  demo       create a demo table, load rows through the queue, update, export
  load       load a CSV or NDJSON file into a table through the queue, with progress
  export     write a table to a CSV or NDJSON file (directly from Postgres), with progress
  status     show recent operations (or one: status <operation id>)
  migrate    create or upgrade the queue schema of the Postgres backend (--backend postgres)
  help       show this help (also: bulkmodel <command> --help)

Environment: DATABASE_URL, REDIS_URL, REDIS_CLUSTER, BULKMODEL_BACKEND (redis or postgres),
BULKMODEL_QUEUE_DATABASE, BULKMODEL_QUEUE_SCHEMA, BULKMODEL_QUEUE, BULKMODEL_TABLES.
Exit codes: 0 ok, 1 operation failed, 2 bad usage, 3 Postgres or Redis unreachable.

Examples:
  bulkmodel demo --rows 20000
  bulkmodel demo --rows 20000 --backend postgres    # no Redis: queues in Postgres
  bulkmodel worker --tables items
  bulkmodel load items items.csv --workers 2
  bulkmodel export items items.ndjson --where '{"flag":true}'
  bulkmodel status
`;

export interface CommandSpec {
  usage: string;
  options: Record<string, { type: 'string' | 'boolean'; short?: string }>;
}

export type Parsed = {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
};

/** Parse a command's flags; --help prints its usage and returns null. Unknown flags throw. */
export function parse(spec: CommandSpec, argv: string[]): Parsed | null {
  const options = { ...spec.options, help: { type: 'boolean' as const, short: 'h' } };
  const r = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  if (r.values.help) {
    process.stdout.write(spec.usage);
    return null;
  }
  return r as Parsed;
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** An integer flag of at least `min` (default 1), or the default; anything else is a usage error. */
export function int(p: Parsed, name: string, fallback: number, min = 1): number {
  const v = str(p, name);
  if (v === undefined) return fallback;
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < min) {
    throw new BulkError(
      'INVALID_OPTION',
      `--${name} must be an integer of at least ${min}, got ${JSON.stringify(v)}`,
    );
  }
  return n;
}

export { DEFAULT_DATABASE_URL } from '../core/client.js';

/** The message a user sees when a service does not answer: where, and how to start it. */
export function unreachable(service: 'Postgres' | 'Redis', url: string, err: unknown): BulkError {
  const how =
    service === 'Postgres'
      ? 'start it (e.g. pg_ctlcluster <version> main start, or docker compose up -d postgres) or set DATABASE_URL / --database'
      : 'start it (e.g. redis-server --daemonize yes, or docker compose up -d redis) or set REDIS_URL / --redis (a cluster: REDIS_CLUSTER / --redis-cluster)';
  return new BulkError(
    'CONNECTION_FAILED',
    `cannot reach ${service} at ${redact(url)}: ${redact(String((err as Error)?.message ?? err))}. ${how}`,
    {
      cause: err,
    },
  );
}
