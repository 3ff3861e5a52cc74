import type { ColumnMeta, TableMeta } from '../meta.js';
import type { EncodedGroup } from '../rows.js';
import { castField, chunkDocument, type Statement } from './insert.js';

/**
 * One UPDATE ... FROM for one group whose first `keyCount` columns are the key and the rest the
 * fields to write. The rows come in key order and the caller turns hash and merge joins off for
 * the statement, so the UPDATE walks them in that order and locks target rows in key order.
 * Returns the 1-based ordinals of the rows that matched (rows as arrays), so the caller can
 * report the keys that matched nothing.
 */
export function buildUpdateFields(
  meta: TableMeta,
  group: EncodedGroup,
  keyCount: number,
): Statement {
  const cols = group.columns;
  const src = cols.map((c, j) => `${castField(j, c)} AS c${j}`).join(', ');
  return {
    text:
      `WITH v AS MATERIALIZED (SELECT x.i, ${src} FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, i)) ` +
      `UPDATE ${meta.scan} AS t SET ${setList(cols, keyCount)} FROM v WHERE ${keyMatch(cols, keyCount)} RETURNING v.i`,
    values: [chunkDocument(group)],
  };
}

/** Target row `t` matches source row `v` (columns c0, c1, ...) on the first `keyCount` columns. */
function keyMatch(cols: ColumnMeta[], keyCount: number): string {
  return cols
    .slice(0, keyCount)
    .map((c, j) => `t.${c.sqlName} = v.c${j}`)
    .join(' AND ');
}

/** The columns after the key set from source row `v`. */
function setList(cols: ColumnMeta[], keyCount: number): string {
  return cols
    .slice(keyCount)
    .map((c, j) => `${c.sqlName} = v.c${j + keyCount}`)
    .join(', ');
}

/**
 * The UPDATE ... FROM a staging table (columns i, c0, c1, ...: ordinal, then the group's
 * columns, keys first) filled by COPY. With `returning`, it returns the ordinals of the staged
 * rows that matched (a key that may match several rows); without, only its count.
 */
export function buildUpdateFromStage(
  meta: TableMeta,
  cols: ColumnMeta[],
  keyCount: number,
  stage: string,
  returning: boolean,
): string {
  return `UPDATE ${meta.scan} AS t SET ${setList(cols, keyCount)} FROM ${stage} AS v WHERE ${keyMatch(cols, keyCount)}${returning ? ' RETURNING v.i' : ''}`;
}

/** The ordinals of staged rows whose key matches no row of the table. */
export function buildMissingFromStage(
  meta: TableMeta,
  cols: ColumnMeta[],
  keyCount: number,
  stage: string,
): string {
  return `SELECT v.i FROM ${stage} AS v WHERE NOT EXISTS (SELECT 1 FROM ${meta.scan} AS t WHERE ${keyMatch(cols, keyCount)})`;
}

/** The ordinals of two staged rows with equal keys (as Postgres compares them), if any. */
export function buildDuplicateInStage(cols: ColumnMeta[], keyCount: number, stage: string): string {
  const keys = cols
    .slice(0, keyCount)
    .map((_, j) => `c${j}`)
    .join(', ');
  return `SELECT min(i), max(i) FROM ${stage} GROUP BY ${keys} HAVING count(*) > 1 LIMIT 1`;
}
