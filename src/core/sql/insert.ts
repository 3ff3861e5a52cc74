import { BulkError } from '../errors.js';
import { quoteIdent } from '../ident.js';
import type { ColumnMeta, TableMeta } from '../meta.js';
import type { EncodedGroup } from '../rows.js';

export type OnConflict = 'ignore' | { target: string[]; update: string[] };

/** `(x.e->>j)::type`: column j of the JSON document's row, cast by the column's own input function. */
export function castField(j: number, col: ColumnMeta): string {
  return `(x.e->>${j})::${col.castSql}`;
}

/** The JSON document a chunk travels in: an array of rows, each an array of literals. */
export function chunkDocument(group: EncodedGroup): string {
  return JSON.stringify(group.values);
}

export interface Statement {
  text: string;
  values: unknown[];
}

/**
 * The ON CONFLICT clause. Only columns the rows carry are updated: a column a group of rows
 * omits would otherwise be overwritten with its default (EXCLUDED holds the default there).
 */
export function onConflictSql(
  onConflict: OnConflict | undefined,
  carried?: ReadonlySet<string>,
): string {
  if (onConflict === undefined) return '';
  if (onConflict === 'ignore') return ' ON CONFLICT DO NOTHING';
  const target = onConflict.target.map((c) => quoteIdent(c)).join(', ');
  const update = carried ? onConflict.update.filter((c) => carried.has(c)) : onConflict.update;
  if (update.length === 0) return ` ON CONFLICT (${target}) DO NOTHING`;
  const set = update.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ');
  return ` ON CONFLICT (${target}) DO UPDATE SET ${set}`;
}

export interface InsertOptions {
  onConflict?: OnConflict | undefined;
  /** Write into GENERATED ALWAYS identity columns (keys reserved by us). */
  overriding?: boolean;
  /** Return these columns, paired to input rows by `pairKey` (which the rows must carry). */
  returning?: { columns: ColumnMeta[]; pairKey: string[] } | undefined;
}

/** Source rows from the JSON document in $1: columns i (1-based ordinal), c0, c1, ... typed. */
export function jsonSource(cols: ColumnMeta[]): string {
  const casts = cols.map((c, j) => `, ${castField(j, c)} AS c${j}`).join('');
  return `SELECT x.i${casts} FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, i)`;
}

/** Source rows from a staging table filled by COPY, with the same columns i, c0, c1, ... */
export function stageSource(stage: string, cols: ColumnMeta[]): string {
  return `SELECT i${cols.map((_, j) => `, c${j}`).join('')} FROM ${stage}`;
}

/**
 * One INSERT from a source of typed rows (`jsonSource`: one bound JSON document whatever the
 * row count; or `stageSource`). With returning, inserted rows are joined back to their source
 * rows on the pairing key, so results pair by key, never by position; result rows are arrays:
 * [ordinal (1-based), ...returned columns as text].
 */
export function buildInsert(
  meta: TableMeta,
  cols: ColumnMeta[],
  source: string,
  opts: InsertOptions = {},
): string {
  // Rows that carry no column at all take every default: no column list, an empty SELECT list.
  const names = cols.length ? ` (${cols.map((c) => c.sqlName).join(', ')})` : '';
  const overriding = opts.overriding ? ' OVERRIDING SYSTEM VALUE' : '';
  const conflict = onConflictSql(opts.onConflict, new Set(cols.map((c) => c.name)));
  const srcList = cols.map((_, j) => `c${j}`).join(', ');
  if (!opts.returning) {
    return `INSERT INTO ${meta.sqlName} AS t${names}${overriding} SELECT ${srcList} FROM (${source}) AS src${conflict}`;
  }
  const { columns: ret, pairKey } = opts.returning;
  const join = pairKey
    .map((k) => {
      const j = cols.findIndex((c) => c.name === k);
      if (j < 0) {
        throw new BulkError(
          'MISSING_KEY',
          `${meta.displayName}: rows lack the pairing key column ${k}`,
          {
            table: meta.displayName,
            column: k,
          },
        );
      }
      // Compare as stored: a key of numeric(6,1) or timestamp(0) is rounded on the way in.
      const col = cols[j]!;
      return `ins.${quoteIdent(k)} = src.c${j}${col.typeSql === col.castSql ? '' : `::${col.typeSql}`}`;
    })
    .join(' AND ');
  // A key repeated in the source (ON CONFLICT DO NOTHING kept its first row) pairs once, with
  // the first source row that carries it, not with every one.
  const keyList = pairKey.map((k) => `ins.${quoteIdent(k)}`).join(', ');
  const need = [...new Set([...ret.map((c) => c.name), ...pairKey])];
  const insRet = need.map((n) => `t.${quoteIdent(n)}`).join(', ');
  // Each column's own output text (no ::text cast, which trims char(n) and adds inet's /32).
  const retList = ret.map((c) => `, ins.${c.sqlName}`).join('');
  return (
    `WITH src AS MATERIALIZED (${source}), ` +
    `ins AS (INSERT INTO ${meta.sqlName} AS t${names}${overriding} SELECT ${srcList} FROM src ORDER BY i${conflict} RETURNING ${insRet}) ` +
    `SELECT DISTINCT ON (${keyList}) src.i${retList} FROM ins JOIN src ON ${join} ORDER BY ${keyList}, src.i`
  );
}
