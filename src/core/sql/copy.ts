import type { ColumnMeta, TableMeta } from '../meta.js';

/**
 * A temporary staging table for a group's COPY: `i` (the row's ordinal), then `c0`, `c1`, ...
 * declared as the group's columns, so COPY applies their modifiers and domain checks and names
 * the row that fails. The first `baseTyped` columns (updateFields keys) take the base type
 * instead: keys are compared, never stored, and a key must not be rounded to the column's scale.
 * Needs only the TEMP privilege, nothing on the target table.
 */
export function buildStageTable(name: string, columns: ColumnMeta[], baseTyped = 0): string {
  const cols = columns.map((c, j) => `, c${j} ${j < baseTyped ? c.castSql : c.typeSql}`).join('');
  return `CREATE TEMP TABLE ${name} (i int8${cols}) ON COMMIT DROP`;
}

/** COPY into a staging table made by buildStageTable. */
export function buildStageCopy(name: string, columns: ColumnMeta[]): string {
  return `COPY ${name} (i${columns.map((_, j) => `, c${j}`).join('')}) FROM STDIN`;
}

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
  return `COPY (SELECT ${columns.map((c) => `t.${c.sqlName}`).join(', ')} FROM ${meta.scan} AS t${whereSql ? ` WHERE ${whereSql}` : ''}) TO STDOUT${opts}`;
}
