import type pg from 'pg';

/**
 * Row count and a checksum of the table's content (every column but the generated id, rows in
 * `value` order), so a strategy that loads wrong data cannot look fast.
 */
export async function checksum(
  pool: pg.Pool,
  table: string,
): Promise<{ rows: number; md5: string }> {
  const r = await pool.query(
    `SELECT count(*)::int AS rows,
            md5(coalesce(string_agg(md5(row(name, value, price, tags, payload, created_at, flag)::text), '' ORDER BY value), '')) AS md5
     FROM ${table}`,
  );
  return r.rows[0];
}
