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
  const cols = columns.map((c) => c.sqlName).join(', ');
  const opts = format === 'csv' ? ' WITH (FORMAT csv, HEADER true)' : '';
  // COPY table (cols) refuses generated columns; COPY (SELECT ...) reads them like any other.
  if (!whereSql && !columns.some((c) => c.generated))
    return `COPY ${meta.sqlName} (${cols}) TO STDOUT${opts}`;
  return `COPY (SELECT ${columns.map((c) => `t.${c.sqlName}`).join(', ')} FROM ${meta.sqlName} AS t${whereSql ? ` WHERE ${whereSql}` : ''}) TO STDOUT${opts}`;
}
