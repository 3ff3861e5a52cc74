import { cachedEncoder, type Encoder, valueError } from './encode.js';
import { BulkError } from './errors.js';
import { type ColumnMeta, columnOf, type TableMeta } from './meta.js';
import type { Row } from './signals.js';

/** Rows of one chunk that carry the same columns, encoded as Postgres text literals. */
export interface EncodedGroup {
  columns: ColumnMeta[];
  /** Index of each row within the chunk. */
  rowIdx: number[];
  /** values[i][j]: literal of column j for row rowIdx[i] (null: SQL NULL). */
  values: (string | null)[][];
}

export function checkRow(meta: TableMeta, row: unknown, index: number): asserts row is Row {
  if (
    row === null ||
    typeof row !== 'object' ||
    Array.isArray(row) ||
    Buffer.isBuffer(row) ||
    row instanceof Date
  ) {
    throw new BulkError('INVALID_ROW', `${meta.displayName}: row ${index} is not a plain object`, {
      table: meta.displayName,
      row: index,
    });
  }
}

export interface EncodeOptions {
  /** Columns every group must start with (updateFields keys); each row must carry them, non-null. */
  key?: string[];
  /** Only these columns are written (updateFields `fields`); others in the row are ignored. */
  only?: Set<string>;
  /** Columns that may be written although GENERATED ALWAYS AS IDENTITY (keys we reserved). */
  allowIdentity?: Set<string>;
}

function checkWritable(
  meta: TableMeta,
  col: ColumnMeta,
  row: number,
  allowIdentity: Set<string> | undefined,
): void {
  if (col.generated) {
    throw new BulkError(
      'READ_ONLY_COLUMN',
      `${meta.displayName}.${col.name} is a generated column and cannot be written (row ${row})`,
      {
        table: meta.displayName,
        column: col.name,
        row,
      },
    );
  }
  if (col.identity === 'a' && !allowIdentity?.has(col.name)) {
    throw new BulkError(
      'READ_ONLY_COLUMN',
      `${meta.displayName}.${col.name} is GENERATED ALWAYS AS IDENTITY and cannot be written (row ${row})`,
      { table: meta.displayName, column: col.name, row },
    );
  }
}

/**
 * Validate and encode a chunk. Rows are grouped by the set of columns they carry, so that a row
 * that omits a column gets that column's default (one statement per group, usually one).
 * `offset` is the chunk's first row index in the operation, for error messages.
 */
export function encodeRows(
  meta: TableMeta,
  rows: readonly unknown[],
  offset: number,
  opts: EncodeOptions = {},
): EncodedGroup[] {
  const groups = new Map<string, Group>();
  const key = opts.key ?? [];
  const keySet = new Set(key);
  let last: Group | undefined;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    const at = offset + i;
    checkRow(meta, row, at);
    for (const k of key) {
      const v = row[k];
      if (v === undefined || v === null) {
        throw new BulkError(
          'MISSING_KEY',
          `${meta.displayName}: row ${at} has no value for key column ${JSON.stringify(k)}`,
          { table: meta.displayName, column: k, row: at },
        );
      }
    }
    // Most rows carry the same columns as the row before: check that without building a shape.
    let g = last && sameShape(row, last, keySet, opts.only) ? last : undefined;
    if (!g) {
      const names: string[] = [...key];
      for (const k in row) {
        if (row[k] === undefined || keySet.has(k)) continue;
        if (opts.only && !opts.only.has(k)) continue;
        names.push(k);
      }
      const shape = names.join('\u0000');
      g = groups.get(shape);
      if (!g) {
        const columns = names.map((n) => columnOf(meta, n, at));
        for (const c of columns)
          if (!keySet.has(c.name)) checkWritable(meta, c, at, opts.allowIdentity);
        g = {
          columns,
          rowIdx: [],
          values: [],
          encoders: columns.map(cachedEncoder),
          rest: names.slice(key.length),
        };
        groups.set(shape, g);
      }
      last = g;
    }
    const cols = g.columns;
    const enc = g.encoders;
    const lits: (string | null)[] = new Array(cols.length);
    for (let j = 0; j < cols.length; j++) {
      try {
        lits[j] = enc[j]!(row[cols[j]!.name]);
      } catch (err) {
        throw valueError(meta, cols[j]!.name, at, err);
      }
    }
    g.rowIdx.push(i);
    g.values.push(lits);
  }
  return [...groups.values()].map(({ columns, rowIdx, values }) => ({ columns, rowIdx, values }));
}

interface Group extends EncodedGroup {
  encoders: Encoder[];
  /** The non-key columns, in the order the rows carried them. */
  rest: string[];
}

/** Does `row` carry exactly the group's non-key columns, in the same order? */
function sameShape(
  row: Row,
  g: Group,
  keySet: Set<string>,
  only: Set<string> | undefined,
): boolean {
  const rest = g.rest;
  let n = 0;
  for (const k in row) {
    if (row[k] === undefined || keySet.has(k)) continue;
    if (only && !only.has(k)) continue;
    if (rest[n] !== k) return false;
    n++;
  }
  return n === rest.length;
}
