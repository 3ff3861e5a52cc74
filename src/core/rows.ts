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

/** Assign as an own property, even for the key "__proto__" (a legal JSON key and column name). */
export function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__')
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
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
  /**
   * A column every group carries, after the keys, although rows may lack it: its value for
   * those rows is supplied when the group is written (a key reserved from Postgres).
   */
  supplied?: string;
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
 * Rows of one chunk that carry the same columns, checked but not yet encoded: a COPY encodes
 * each value as it streams, so that Node's encoding and the server's parsing overlap.
 */
export interface RowGroup {
  columns: ColumnMeta[];
  /** Index of each row within the chunk. */
  rowIdx: number[];
  encoders: Encoder[];
}

/**
 * Check a chunk's rows and group them by the set of columns they carry, so that a row that
 * omits a column gets that column's default (one statement per group, usually one). Rows,
 * keys, column names and writability are checked here; values when the group is encoded.
 * `offset` is the chunk's first row index in the operation, for error messages.
 */
export function groupRows(
  meta: TableMeta,
  rows: readonly unknown[],
  offset: number,
  opts: EncodeOptions = {},
): RowGroup[] {
  const groups = new Map<string, Group>();
  const key = opts.key ?? [];
  const lead = opts.supplied === undefined ? key : [...key, opts.supplied];
  const leadSet = new Set(lead);
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
    let g = last && sameShape(row, last, leadSet, opts.only) ? last : undefined;
    if (!g) {
      const names: string[] = [...lead];
      for (const k in row) {
        if (row[k] === undefined || leadSet.has(k)) continue;
        if (opts.only && !opts.only.has(k)) continue;
        names.push(k);
      }
      const shape = names.join('\u0000');
      g = groups.get(shape);
      if (!g) {
        const columns = names.map((n) => columnOf(meta, n, at));
        for (const c of columns)
          if (!key.includes(c.name)) checkWritable(meta, c, at, opts.allowIdentity);
        g = {
          columns,
          rowIdx: [],
          encoders: columns.map(cachedEncoder),
          rest: names.slice(lead.length),
        };
        groups.set(shape, g);
      }
      last = g;
    }
    g.rowIdx.push(i);
  }
  return [...groups.values()].map(({ columns, rowIdx, encoders }) => ({
    columns,
    rowIdx,
    encoders,
  }));
}

/** Encode a group's values: values[i][j] is column j of row rowIdx[i]. */
export function encodeGroup(
  meta: TableMeta,
  rows: readonly unknown[],
  g: RowGroup,
  offset: number,
): EncodedGroup {
  const cols = g.columns;
  const enc = g.encoders;
  const values: (string | null)[][] = new Array(g.rowIdx.length);
  for (let i = 0; i < g.rowIdx.length; i++) {
    const ri = g.rowIdx[i]!;
    const row = rows[ri] as Row;
    const lits: (string | null)[] = new Array(cols.length);
    for (let j = 0; j < cols.length; j++) {
      try {
        lits[j] = enc[j]!(row[cols[j]!.name]);
      } catch (err) {
        throw valueError(meta, cols[j]!.name, offset + ri, err);
      }
    }
    values[i] = lits;
  }
  return { columns: cols, rowIdx: g.rowIdx, values };
}

/** Validate and encode a chunk: groupRows, then every group's values. */
export function encodeRows(
  meta: TableMeta,
  rows: readonly unknown[],
  offset: number,
  opts: EncodeOptions = {},
): EncodedGroup[] {
  return groupRows(meta, rows, offset, opts).map((g) => encodeGroup(meta, rows, g, offset));
}

interface Group extends RowGroup {
  /** The non-key columns, in the order the rows carried them. */
  rest: string[];
}

/** Does `row` carry exactly the group's non-key columns, in the same order? */
function sameShape(
  row: Row,
  g: Group,
  leadSet: Set<string>,
  only: Set<string> | undefined,
): boolean {
  const rest = g.rest;
  let n = 0;
  for (const k in row) {
    if (row[k] === undefined || leadSet.has(k)) continue;
    if (only && !only.has(k)) continue;
    if (rest[n] !== k) return false;
    n++;
  }
  return n === rest.length;
}
