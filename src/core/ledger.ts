import type { DbClient, Queryable } from './db.js';
import { quoteIdent } from './ident.js';

/**
 * The chunk ledger: one row per (operation id, chunk index), written in the same transaction as
 * the chunk. A chunk that runs again (retry after a commit in doubt, a stalled queue job, two
 * workers) finds its row and is skipped; its result is read back from the row.
 *
 * The row is inserted first, so a second runner of the same chunk blocks on it until the first
 * commits (then skips) or aborts (then proceeds).
 */
export interface Ledger {
  schema: string;
  ensure(db: Queryable): Promise<void>;
  /** true: this transaction owns the chunk; otherwise the stored result of the earlier run. */
  claim(
    client: DbClient,
    operationId: string,
    chunkIndex: number,
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
  ): Promise<{ result: unknown } | undefined>;
  forget(db: Queryable, operationId: string): Promise<void>;
  prune(db: Queryable, olderThanMs: number): Promise<number>;
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
          END $$`,
        });
      })().catch((err) => {
        ready = undefined;
        throw err;
      });
      return ready;
    },
    async claim(client, operationId, chunkIndex) {
      const r = await client.query({
        text: `INSERT INTO ${table} (operation_id, chunk_index) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
        values: [operationId, chunkIndex],
      });
      if (r.rowCount === 1) return { claimed: true };
      const prev = await client.query({
        text: `SELECT result FROM ${table} WHERE operation_id = $1 AND chunk_index = $2`,
        values: [operationId, chunkIndex],
      });
      return {
        claimed: false,
        result: (prev.rows[0] as { result: unknown } | undefined)?.result ?? null,
      };
    },
    async complete(client, operationId, chunkIndex, result) {
      await client.query({
        text: `UPDATE ${table} SET result = $3::jsonb WHERE operation_id = $1 AND chunk_index = $2`,
        values: [operationId, chunkIndex, JSON.stringify(result)],
      });
    },
    async read(db, operationId, chunkIndex) {
      const r = await db.query({
        text: `SELECT result FROM ${table} WHERE operation_id = $1 AND chunk_index = $2`,
        values: [operationId, chunkIndex],
      });
      const row = r.rows[0] as { result: unknown } | undefined;
      return row ? { result: row.result } : undefined;
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
