import { quoteIdent } from '../ident.js';
import type { ColumnMeta, TableMeta } from '../meta.js';
import type { Statement } from './insert.js';

/**
 * Homogeneous update in key batches: `selectBatch` finds the next `limit` keys after the last
 * one seen (keyset pagination on the primary key, so no batch rescans what came before), and
 * `updateBatch` updates exactly those keys, re-checking the filter.
 */
export function buildSelectBatch(
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
  if (after) {
    const params = key.map((c, j) => {
      values.push(after[j]);
      return `$${values.length}::${c.castSql}`;
    });
    conds.push(`(${keyList}) > (${params.join(', ')})`);
  }
  values.push(limit);
  return {
    text: `SELECT ${key.map((c) => `t.${c.sqlName}::text`).join(', ')} FROM ${meta.sqlName} AS t${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY ${keyList} LIMIT $${values.length}`,
    values,
  };
}

export function buildUpdateBatch(
  meta: TableMeta,
  key: ColumnMeta[],
  set: { col: ColumnMeta; lit: string | null }[],
  whereSql: string,
  whereValues: unknown[],
  keysDoc: string,
): Statement {
  const values: unknown[] = [...whereValues];
  const assigns = set.map(({ col, lit }) => {
    values.push(lit);
    return `${col.sqlName} = $${values.length}::${col.castSql}`;
  });
  values.push(keysDoc);
  const src = key.map((c, j) => `(x.e->>${j})::${c.castSql} AS ${quoteIdent(`k${j}`)}`).join(', ');
  const match = key.map((c, j) => `t.${c.sqlName} = v.${quoteIdent(`k${j}`)}`).join(' AND ');
  return {
    text:
      `UPDATE ${meta.sqlName} AS t SET ${assigns.join(', ')} ` +
      `FROM (SELECT ${src} FROM jsonb_array_elements($${values.length}::jsonb) AS x(e)) AS v ` +
      `WHERE ${match}${whereSql ? ` AND ${whereSql}` : ''}`,
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
    text: `UPDATE ${meta.sqlName} AS t SET ${assigns.join(', ')}${whereSql ? ` WHERE ${whereSql}` : ''}`,
    values,
  };
}
