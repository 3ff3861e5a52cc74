import type { ColumnMeta, TableMeta } from '../meta.js';

export function buildCopyIn(meta: TableMeta, columns: ColumnMeta[], target = meta.sqlName): string {
  return `COPY ${target} (${columns.map((c) => c.sqlName).join(', ')}) FROM STDIN`;
}

export function buildCopyOut(
  meta: TableMeta,
  columns: ColumnMeta[],
  whereSql: string,
  format: 'text' | 'csv',
): string {
  const opts = format === 'csv' ? ' WITH (FORMAT csv, HEADER true)' : '';
  // Always the query form: COPY table (cols) refuses generated columns, views and partitioned
  // tables, which COPY (SELECT ...) reads like any other relation.
  return `COPY (SELECT ${columns.map((c) => `t.${c.sqlName}`).join(', ')} FROM ${meta.sqlName} AS t${whereSql ? ` WHERE ${whereSql}` : ''}) TO STDOUT${opts}`;
}
