import type { DbClient, Queryable } from './db.js';
import { BulkError } from './errors.js';
import { quoteIdent } from './ident.js';

/**
 * The chunk ledger: one row per (operation id, chunk index), written in the same transaction as
 * the chunk. A chunk that runs again (retry after a commit in doubt, a stalled queue job, two
 * workers) finds its row and is skipped; its result is read back from the row.
 *
 * The row is inserted first, so a second runner of the same chunk blocks on it until the first
 * commits (then skips) or aborts (then proceeds).
 *
 * A row can carry the chunk's fingerprint (a digest of its content, as the worker computed it
 * from the job): a chunk that finds its slot taken by other content fails with CHUNK_CONFLICT
 * instead of being skipped as done. Rows without one (written before fingerprints, or by calls
 * that give none) match any chunk.
 */
export interface Ledger {
  schema: string;
  ensure(db: Queryable): Promise<void>;
  /** true: this transaction owns the chunk; otherwise the stored result of the earlier run. */
  claim(
    client: DbClient,
    operationId: string,
    chunkIndex: number,
    fingerprint?: string,
  ): Promise<{ claimed: true } | { claimed: false; result: unknown }>;
  complete(
    client: DbClient,
    operationId: string,
    chunkIndex: number,
    result: unknown,
  ): Promise<void>;
  /** The stored result of a committed chunk, or undefined when it has not committed. */
  read(
    db: Queryable,
    operationId: string,
    chunkIndex: number,
    fingerprint?: string,
  ): Promise<{ result: unknown } | undefined>;
  forget(db: Queryable, operationId: string): Promise<void>;
  prune(db: Queryable, olderThanMs: number): Promise<number>;
}

/** A slot taken by other content is CHUNK_CONFLICT; a row without a fingerprint matches. */
function checkFingerprint(
  operationId: string,
  chunkIndex: number,
  mine: string | undefined,
  stored: string | null | undefined,
): void {
  if (mine === undefined || stored === null || stored === undefined || stored === mine) return;
  throw new BulkError(
    'CHUNK_CONFLICT',
    `operation ${operationId}, chunk ${chunkIndex} committed earlier with other content: this chunk is refused, not counted as done`,
  );
}

export function createLedger(schema: string): Ledger {
  const s = quoteIdent(schema);
  const table = `${s}.chunk_ledger`;
  let ready: Promise<void> | undefined;
  return {
    schema,
    ensure(db) {
      ready ??= (async () => {
        // Serialize concurrent creators: CREATE ... IF NOT EXISTS races on the catalog otherwise.
        await db.query({
          text: `DO $$ BEGIN
            PERFORM pg_advisory_xact_lock(hashtext('bulkmodel.ledger'));
            CREATE SCHEMA IF NOT EXISTS ${s};
            CREATE TABLE IF NOT EXISTS ${table} (
              operation_id text NOT NULL,
              chunk_index integer NOT NULL,
              result jsonb,
              created_at timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (operation_id, chunk_index)
            );
            CREATE INDEX IF NOT EXISTS chunk_ledger_created_at ON ${table} (created_at);
            -- Added to ledgers made before fingerprints; checked first, since ALTER TABLE
            -- would wait for (and hold up) every chunk transaction even when it has nothing to do.
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                           WHERE attrelid = '${table.replace(/'/g, "''")}'::regclass
                             AND attname = 'fingerprint' AND NOT attisdropped) THEN
              ALTER TABLE ${table} ADD COLUMN fingerprint text;
            END IF;
          END $$`,
        });
      })().catch((err) => {
        ready = undefined;
        throw err;
      });
      return ready;
    },
    async claim(client, operationId, chunkIndex, fingerprint) {
      const r = await client.query({
        text: `INSERT INTO ${table} (operation_id, chunk_index, fingerprint) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
        values: [operationId, chunkIndex, fingerprint ?? null],
      });
      if (r.rowCount === 1) return { claimed: true };
      const prev = await client.query({
        text: `SELECT result, fingerprint FROM ${table} WHERE operation_id = $1 AND chunk_index = $2`,
        values: [operationId, chunkIndex],
      });
      const row = prev.rows[0] as { result: unknown; fingerprint: string | null } | undefined;
      checkFingerprint(operationId, chunkIndex, fingerprint, row?.fingerprint);
      return { claimed: false, result: row?.result ?? null };
    },
    async complete(client, operationId, chunkIndex, result) {
      await client.query({
        text: `UPDATE ${table} SET result = $3::jsonb WHERE operation_id = $1 AND chunk_index = $2`,
        values: [operationId, chunkIndex, JSON.stringify(result)],
      });
    },
    async read(db, operationId, chunkIndex, fingerprint) {
      const r = await db.query({
        text: `SELECT result, fingerprint FROM ${table} WHERE operation_id = $1 AND chunk_index = $2`,
        values: [operationId, chunkIndex],
      });
      const row = r.rows[0] as { result: unknown; fingerprint: string | null } | undefined;
      if (!row) return undefined;
      checkFingerprint(operationId, chunkIndex, fingerprint, row.fingerprint);
      return { result: row.result };
    },
    async forget(db, operationId) {
      await db.query({
        text: `DELETE FROM ${table} WHERE operation_id = $1`,
        values: [operationId],
      });
    },
    async prune(db, olderThanMs) {
      const r = await db.query({
        text: `DELETE FROM ${table} WHERE created_at < now() - make_interval(secs => $1::double precision / 1000)`,
        values: [olderThanMs],
      });
      return r.rowCount ?? 0;
    },
  };
}
