import type pg from 'pg';
import { BulkError } from '../core/errors.js';
import { quoteIdent } from '../core/ident.js';
import { defaultOf } from '../core/settings.js';

/**
 * The tables bulkmodel keeps beside BullMQ's in the queue schema (Postgres backend), as a list
 * of versioned migrations. `migrateQueueSchema` applies what is missing under an advisory lock;
 * `checkQueueSchema` refuses a schema that is missing or at another version, so that creation
 * and upgrades stay explicit (`bulkmodel migrate`, or `migrate: true`).
 */

/** Default schema of the queues (BullMQ's tables and bulkmodel's) in the queue database. */
export const DEFAULT_QUEUE_SCHEMA = defaultOf('queueSchema');

/** Channel that wakes event readers; the payload is `<schema>.<queue>`. */
export const EVENTS_CHANNEL = 'bulkmodel_events';

interface Migration {
  version: number;
  name: string;
  /**
   * The oldest bulkmodel schema version whose code still works once this migration is applied
   * (an additive change keeps older workers running through a rolling deploy).
   */
  minCodeVersion: number;
  sql(s: string): string;
}

const FINAL = `('completed', 'failed', 'cancelled')`;

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'operations, chunks, running jobs, catalog, events',
    minCodeVersion: 1,
    sql: (s) => `
CREATE TABLE ${s}.bm_op (
  queue text NOT NULL,
  id text NOT NULL,
  kind text,
  tbl text,
  state text,
  identity text,
  sealed boolean NOT NULL DEFAULT false,
  returns_rows boolean NOT NULL DEFAULT false,
  encoding text,
  rows_done bigint NOT NULL DEFAULT 0,
  chunks_done integer NOT NULL DEFAULT 0,
  retries integer NOT NULL DEFAULT 0,
  total_rows bigint,
  total_chunks integer,
  -- When the record entered the index (what retention prunes by, and the listing order).
  indexed_at bigint NOT NULL,
  created_at bigint,
  started_at bigint,
  finished_at bigint,
  error text,
  end_logged boolean NOT NULL DEFAULT false,
  exports jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (queue, id)
);
CREATE INDEX bm_op_indexed ON ${s}.bm_op (queue, indexed_at);

-- A chunk's fingerprint as enqueued (producer) and whether it was counted (worker).
CREATE TABLE ${s}.bm_chunk (
  queue text NOT NULL,
  op_id text NOT NULL,
  idx integer NOT NULL,
  fp text,
  done boolean NOT NULL DEFAULT false,
  PRIMARY KEY (queue, op_id, idx)
);

-- Jobs running now, and on which worker.
CREATE TABLE ${s}.bm_active (
  queue text NOT NULL,
  op_id text NOT NULL,
  job_id text NOT NULL,
  worker text NOT NULL,
  PRIMARY KEY (queue, op_id, job_id)
);

CREATE TABLE ${s}.bm_catalog (
  queue text NOT NULL,
  tbl text NOT NULL,
  snapshot text NOT NULL,
  PRIMARY KEY (queue, tbl)
);

-- Events: ids dense per queue, handed out under a row lock so that they commit in order
-- (a reader past id n never misses an event numbered below n).
CREATE TABLE ${s}.bm_event_seq (queue text PRIMARY KEY, last bigint NOT NULL);
CREATE TABLE ${s}.bm_event (
  queue text NOT NULL,
  id bigint NOT NULL,
  time bigint NOT NULL,
  name text NOT NULL,
  op_id text NOT NULL,
  data text NOT NULL,
  PRIMARY KEY (queue, id)
);
CREATE TABLE ${s}.bm_event_group (
  queue text NOT NULL,
  grp text NOT NULL,
  last_id bigint NOT NULL,
  PRIMARY KEY (queue, grp)
);
CREATE TABLE ${s}.bm_event_pending (
  queue text NOT NULL,
  grp text NOT NULL,
  id bigint NOT NULL,
  consumer text NOT NULL,
  PRIMARY KEY (queue, grp, id)
);

-- Each function is one step of the protocol (src/queue/state.ts), atomic, one round trip.
-- Every step that touches an operation locks its record first, so steps never deadlock.
CREATE FUNCTION ${s}.bm_touch(q text, i text, now bigint) RETURNS void LANGUAGE sql AS $$
  INSERT INTO ${s}.bm_op (queue, id, indexed_at) VALUES (q, i, now) ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION ${s}.bm_register(q text, i text, ident text, now bigint, k text, t text,
    ret boolean, enc text)
  RETURNS TABLE (created boolean, identity text, sealed boolean, state text, encoding text)
  LANGUAGE plpgsql AS $$
DECLARE r ${s}.bm_op;
BEGIN
  PERFORM ${s}.bm_touch(q, i, now);
  SELECT * INTO r FROM ${s}.bm_op o WHERE o.queue = q AND o.id = i FOR UPDATE;
  IF r.identity IS NOT NULL THEN
    RETURN QUERY SELECT false, r.identity, r.sealed, r.state, r.encoding;
    RETURN;
  END IF;
  UPDATE ${s}.bm_op o SET identity = ident, kind = k, tbl = t, created_at = now, indexed_at = now,
      state = 'enqueueing', rows_done = 0, chunks_done = 0, returns_rows = o.returns_rows OR ret,
      encoding = coalesce(nullif(enc, ''), o.encoding)
    WHERE o.queue = q AND o.id = i;
  RETURN QUERY SELECT true, ident, false, 'enqueueing'::text, nullif(enc, '');
END $$;

CREATE FUNCTION ${s}.bm_fail(q text, i text, err text, now bigint) RETURNS boolean
  LANGUAGE plpgsql AS $$
DECLARE r ${s}.bm_op;
BEGIN
  PERFORM ${s}.bm_touch(q, i, now);
  SELECT * INTO r FROM ${s}.bm_op o WHERE o.queue = q AND o.id = i FOR UPDATE;
  UPDATE ${s}.bm_op o SET error = coalesce(o.error, err) WHERE o.queue = q AND o.id = i;
  IF r.state IN ${FINAL} THEN RETURN false; END IF;
  UPDATE ${s}.bm_op o SET state = 'failed', finished_at = now WHERE o.queue = q AND o.id = i;
  RETURN r.error IS NULL;
END $$;

CREATE FUNCTION ${s}.bm_job_started(q text, i text, now bigint, j text, w text)
  RETURNS TABLE (first boolean, total_rows bigint, total_chunks integer)
  LANGUAGE plpgsql AS $$
DECLARE r ${s}.bm_op;
BEGIN
  PERFORM ${s}.bm_touch(q, i, now);
  SELECT * INTO r FROM ${s}.bm_op o WHERE o.queue = q AND o.id = i FOR UPDATE;
  INSERT INTO ${s}.bm_active AS a (queue, op_id, job_id, worker) VALUES (q, i, j, w)
    ON CONFLICT (queue, op_id, job_id) DO UPDATE SET worker = EXCLUDED.worker;
  IF r.started_at IS NOT NULL THEN
    RETURN QUERY SELECT false, NULL::bigint, NULL::integer;
    RETURN;
  END IF;
  UPDATE ${s}.bm_op o SET started_at = now WHERE o.queue = q AND o.id = i;
  RETURN QUERY SELECT true, r.total_rows, r.total_chunks;
END $$;

CREATE FUNCTION ${s}.bm_chunk_done(q text, i text, x integer, n bigint, now bigint, j text)
  RETURNS TABLE (rows_done bigint, chunks_done integer, total_rows bigint, total_chunks integer)
  LANGUAGE plpgsql AS $$
DECLARE counted integer;
BEGIN
  PERFORM ${s}.bm_touch(q, i, now);
  PERFORM 1 FROM ${s}.bm_op o WHERE o.queue = q AND o.id = i FOR UPDATE;
  DELETE FROM ${s}.bm_active a WHERE a.queue = q AND a.op_id = i AND a.job_id = j;
  INSERT INTO ${s}.bm_chunk AS c (queue, op_id, idx, done) VALUES (q, i, x, true)
    ON CONFLICT (queue, op_id, idx) DO UPDATE SET done = true WHERE NOT c.done;
  GET DIAGNOSTICS counted = ROW_COUNT;
  IF counted > 0 THEN
    UPDATE ${s}.bm_op o SET rows_done = o.rows_done + n, chunks_done = o.chunks_done + 1,
        state = CASE WHEN o.state IN ${FINAL} THEN o.state ELSE 'running' END
      WHERE o.queue = q AND o.id = i;
  END IF;
  RETURN QUERY SELECT o.rows_done, o.chunks_done, o.total_rows, o.total_chunks
    FROM ${s}.bm_op o WHERE o.queue = q AND o.id = i;
END $$;

CREATE FUNCTION ${s}.bm_publish(q text, n text, op text, d text, maxlen bigint, wake text)
  RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  e bigint;
  now bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
BEGIN
  INSERT INTO ${s}.bm_event_seq AS z (queue, last) VALUES (q, 1)
    ON CONFLICT (queue) DO UPDATE SET last = z.last + 1 RETURNING last INTO e;
  INSERT INTO ${s}.bm_event (queue, id, time, name, op_id, data) VALUES (q, e, now, n, op, d);
  -- Trimmed now and then, as Redis trims a stream with MAXLEN ~.
  IF e % 100 = 0 THEN
    DELETE FROM ${s}.bm_event v WHERE v.queue = q AND v.id <= e - maxlen;
  END IF;
  PERFORM pg_notify('${EVENTS_CHANNEL}', wake);
  RETURN e;
END $$;
`,
  },
  {
    version: 2,
    name: 'chunk data beside the jobs (payload version 3)',
    // Additive: workers of schema version 1 never read it, and keep running.
    minCodeVersion: 1,
    sql: (s) => `
-- A chunk's COPY data (payload version 3), kept out of the job's JSON. Stored as it is: no
-- compression (it is written once, read once or twice, and dropped once its chunk job has
-- completed or its operation has ended).
CREATE TABLE ${s}.bm_chunk_data (
  queue text NOT NULL,
  op_id text NOT NULL,
  idx integer NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (queue, op_id, idx)
);
ALTER TABLE ${s}.bm_chunk_data ALTER COLUMN data SET STORAGE EXTERNAL;
`,
  },
];

export const QUEUE_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Check a schema name: a plain identifier, so that it is safe everywhere (also in a channel payload). */
export function checkSchemaName(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema))
    throw new BulkError(
      'INVALID_OPTION',
      `queue schema ${JSON.stringify(schema)} must be a lower-case identifier (a-z, 0-9, _; at most 63)`,
    );
  return schema;
}

const LOCK = `pg_advisory_xact_lock(hashtext('bulkmodel.queue_schema'))`;

interface SchemaVersion {
  /** The highest migration applied. */
  at: number;
  /** The oldest code version those migrations still let run. */
  minCode: number;
}

async function versionOf(db: pg.ClientBase, schema: string): Promise<SchemaVersion | null> {
  const r = await db.query({
    text: `SELECT to_regclass($1) IS NOT NULL AS present`,
    values: [`${quoteIdent(schema)}.bm_version`],
  });
  if (!r.rows[0].present) return null;
  // Read through jsonb: a bm_version made before min_code_version existed reads as 1.
  const v = await db.query(
    `SELECT coalesce(max(version), 0)::int AS at,
            coalesce(max(coalesce((to_jsonb(b) ->> 'min_code_version')::int, 1)), 0)::int AS min
     FROM ${quoteIdent(schema)}.bm_version b`,
  );
  return { at: v.rows[0].at as number, minCode: v.rows[0].min as number };
}

/**
 * Apply bulkmodel's missing migrations to a queue schema (creating it), in one transaction under
 * an advisory lock. Returns the versions applied.
 */
export async function migrateQueueSchema(client: pg.ClientBase, schema: string): Promise<number[]> {
  const s = quoteIdent(checkSchemaName(schema));
  try {
    await client.query('BEGIN');
    await client.query(`SELECT ${LOCK}`);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${s}.bm_version (
      version integer PRIMARY KEY,
      name text NOT NULL,
      min_code_version integer NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    // A bm_version made before min_code_version existed.
    await client.query(
      `ALTER TABLE ${s}.bm_version ADD COLUMN IF NOT EXISTS min_code_version integer NOT NULL DEFAULT 1`,
    );
    const v = (await versionOf(client, schema)) ?? { at: 0, minCode: 0 };
    // Never downgraded; a newer schema that this code can still run against is left as it is.
    if (v.minCode > QUEUE_SCHEMA_VERSION) {
      await client.query('ROLLBACK');
      throw newerSchema(schema, v);
    }
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (m.version <= v.at) continue;
      await client.query(m.sql(s));
      await client.query({
        text: `INSERT INTO ${s}.bm_version (version, name, min_code_version) VALUES ($1, $2, $3)`,
        values: [m.version, m.name, m.minCodeVersion],
      });
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

function newerSchema(schema: string, v: SchemaVersion): BulkError {
  return new BulkError(
    'QUEUE_SCHEMA',
    `queue schema "${schema}" is at version ${v.at}, which needs bulkmodel's schema version ${v.minCode} or later; this bulkmodel has ${QUEUE_SCHEMA_VERSION}: upgrade bulkmodel`,
  );
}

/**
 * Refuse a queue schema that is missing, older than this code's, or newer in a way this code
 * cannot run against (a newer schema whose migrations kept older code working is accepted).
 */
export async function checkQueueSchema(client: pg.ClientBase, schema: string): Promise<void> {
  const v = await versionOf(client, checkSchemaName(schema));
  if (v !== null && v.at >= QUEUE_SCHEMA_VERSION) {
    if (v.minCode > QUEUE_SCHEMA_VERSION) throw newerSchema(schema, v);
    return;
  }
  throw new BulkError(
    'QUEUE_SCHEMA',
    v === null
      ? `queue schema "${schema}" has no bulkmodel tables: create it with \`bulkmodel migrate --backend postgres\` (or the option migrate: true)`
      : `queue schema "${schema}" is at version ${v.at}, this bulkmodel needs ${QUEUE_SCHEMA_VERSION}: upgrade it with \`bulkmodel migrate --backend postgres\``,
  );
}
