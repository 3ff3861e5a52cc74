import type { ColumnMeta, TableMeta } from '../meta.js';
import type { Statement } from './insert.js';

/**
 * Homogeneous update in key ranges: `buildBatchEnd` finds the key `limit` rows after the last
 * batch's end (keyset pagination on the primary key: one index walk, one key sent back), and
 * `buildUpdateRange` updates the rows of that key range, re-checking the filter.
 */
function keyBound(
  key: ColumnMeta[],
  values: unknown[],
  bound: (string | null)[],
  op: '>' | '<=',
): string {
  const params = key.map((c, j) => {
    values.push(bound[j]);
    return `$${values.length}::${c.castSql}`;
  });
  return `(${key.map((c) => `t.${c.sqlName}`).join(', ')}) ${op} (${params.join(', ')})`;
}

/** The key of the `limit`-th row after `after` that the filter matches (none: fewer remain). */
export function buildBatchEnd(
  meta: TableMeta,
  key: ColumnMeta[],
  whereSql: string,
  whereValues: unknown[],
  after: (string | null)[] | null,
  limit: number,
): Statement {
  const keyList = key.map((c) => `t.${c.sqlName}`).join(', ');
  const values = [...whereValues];
  const conds = whereSql ? [whereSql] : [];
  if (after) conds.push(keyBound(key, values, after, '>'));
  values.push(limit - 1);
  return {
    text: `SELECT ${key.map((c) => `t.${c.sqlName}::text`).join(', ')} FROM ${meta.scan} AS t${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY ${keyList} OFFSET $${values.length} LIMIT 1`,
    values,
  };
}

/** Update the rows with keys in (after, last] (either end open when null) that the filter matches. */
export function buildUpdateRange(
  meta: TableMeta,
  key: ColumnMeta[],
  set: { col: ColumnMeta; lit: string | null }[],
  whereSql: string,
  whereValues: unknown[],
  after: (string | null)[] | null,
  last: (string | null)[] | null,
): Statement {
  const values: unknown[] = [...whereValues];
  const assigns = set.map(({ col, lit }) => {
    values.push(lit);
    return `${col.sqlName} = $${values.length}::${col.castSql}`;
  });
  const conds = whereSql ? [whereSql] : [];
  if (after) conds.push(keyBound(key, values, after, '>'));
  if (last) conds.push(keyBound(key, values, last, '<='));
  return {
    text: `UPDATE ${meta.scan} AS t SET ${assigns.join(', ')}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''}`,
    values,
  };
}

/** Without a primary key there is nothing to batch on: one statement. `where` params start after `set`'s. */
export function buildUpdateAll(
  meta: TableMeta,
  set: { col: ColumnMeta; lit: string | null }[],
  whereSql: string,
  whereValues: unknown[],
): Statement {
  const values: unknown[] = set.map((s) => s.lit);
  const assigns = set.map(({ col }, j) => `${col.sqlName} = $${j + 1}::${col.castSql}`);
  values.push(...whereValues);
  return {
    text: `UPDATE ${meta.scan} AS t SET ${assigns.join(', ')}${whereSql ? ` WHERE ${whereSql}` : ''}`,
    values,
  };
}
