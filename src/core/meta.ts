import type { Queryable } from './db.js';
import { BulkError } from './errors.js';
import { quoteIdent } from './ident.js';

/** How a column's values are encoded and decoded; domains are resolved to their base type. */
export type ValueKind =
  | 'bool'
  | 'int2'
  | 'int4'
  | 'int8'
  | 'float'
  | 'numeric'
  | 'text'
  | 'bytea'
  | 'json'
  | 'timestamp'
  | 'date'
  | 'uuid'
  | 'money'
  | 'interval'
  | 'point'
  | 'circle'
  | 'other';

export interface ColumnMeta {
  name: string;
  /** Quoted identifier, safe to put in SQL. */
  sqlName: string;
  /** The declared type as SQL (format_type): `text[]`, `numeric(12,2)`, `public.mood`. */
  typeSql: string;
  /**
   * The base type without its modifier, for casting bound values: `character varying`,
   * `numeric`; a domain's base type, an array of domains' element base type. An explicit cast
   * to `varchar(5)` (or to a domain over it) would silently truncate; the assignment to the
   * column then applies the modifier and the domain's checks, and refuses what does not fit,
   * as COPY does.
   */
  castSql: string;
  /** OID of the base type (domains resolved); for arrays, of the array type. */
  baseOid: number;
  kind: ValueKind;
  /** Array dimensions are not tracked by Postgres; this is true for any array column. */
  isArray: boolean;
  /** For arrays: the element's base OID and kind. */
  elemOid: number;
  elemKind: ValueKind;
  /** For arrays: the element type's delimiter in array text (`;` for box); `,` when absent. */
  elemDelim?: string;
  notNull: boolean;
  hasDefault: boolean;
  /** 'a' GENERATED ALWAYS AS IDENTITY, 'd' BY DEFAULT, '' none. */
  identity: '' | 'a' | 'd';
  /** GENERATED ALWAYS AS (...) STORED: never written. */
  generated: boolean;
  /** Default expression from the catalog (or nextval of the identity sequence). */
  defaultExpr: string | null;
}

export interface TableMeta {
  /** The table's pg_class oid: what the catalog resolved the name to. */
  oid: number;
  schema: string;
  name: string;
  /** "schema"."name", quoted. */
  sqlName: string;
  /**
   * The table as read and updated: `ONLY "schema"."name"` for a plain table (rows of tables
   * inheriting from it are other tables'), `"schema"."name"` for a partitioned one (its
   * partitions are its own storage).
   */
  scan: string;
  /** pg_class.relkind: r table, p partitioned table, v view, m materialized view, f foreign table. */
  relkind: string;
  /** schema.name as users read it. */
  displayName: string;
  columns: ColumnMeta[];
  byName: Map<string, ColumnMeta>;
  primaryKey: string[];
  /** The key columns of each valid plain btree index, in index order (the primary key's too). */
  indexes: string[][];
}

/** Parse `name`, `schema.name` or quoted forms into parts. Anything else is INVALID_IDENTIFIER. */
export function parseTableName(input: string): {
  schema: string | null;
  name: string;
  quoted: boolean;
} {
  if (typeof input !== 'string' || input.length === 0 || input.length > 200) {
    throw new BulkError('INVALID_IDENTIFIER', `invalid table name ${JSON.stringify(input)}`);
  }
  const parts: string[] = [];
  let quoted = false;
  let i = 0;
  while (i < input.length) {
    if (input[i] === '"') {
      quoted = true;
      let j = i + 1;
      let s = '';
      for (;;) {
        if (j >= input.length)
          throw new BulkError(
            'INVALID_IDENTIFIER',
            `unterminated quote in table name ${JSON.stringify(input)}`,
          );
        if (input[j] === '"') {
          if (input[j + 1] === '"') {
            s += '"';
            j += 2;
            continue;
          }
          break;
        }
        s += input[j];
        j++;
      }
      parts.push(s);
      i = j + 1;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(input.slice(i));
      if (!m)
        throw new BulkError('INVALID_IDENTIFIER', `invalid table name ${JSON.stringify(input)}`);
      parts.push(m[0]);
      i += m[0].length;
    }
    if (i < input.length) {
      if (input[i] !== '.')
        throw new BulkError('INVALID_IDENTIFIER', `invalid table name ${JSON.stringify(input)}`);
      i++;
      if (i >= input.length)
        throw new BulkError('INVALID_IDENTIFIER', `invalid table name ${JSON.stringify(input)}`);
    }
  }
  if (parts.length === 1) return { schema: null, name: parts[0]!, quoted };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]!, quoted };
  throw new BulkError(
    'INVALID_IDENTIFIER',
    `invalid table name ${JSON.stringify(input)}: use table or schema.table`,
  );
}

const FIND_TABLE = `
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'f', 'm')
  AND c.relname = $1
  AND (CASE WHEN $2::text IS NULL THEN n.nspname = ANY (current_schemas(false)) ELSE n.nspname = $2::text END)
ORDER BY array_position(current_schemas(false), n.nspname::text)
LIMIT 1`;

const COLUMNS = `
WITH RECURSIVE cols AS (
  SELECT a.attnum, a.attname, a.atttypid, a.attnotnull, a.atthasdef, a.attidentity, a.attgenerated,
         format_type(a.atttypid, a.atttypmod) AS type_sql,
         pg_get_expr(d.adbin, d.adrelid) AS default_expr,
         CASE WHEN a.attidentity <> '' THEN pg_get_serial_sequence($2, a.attname) END AS identity_seq
  FROM pg_catalog.pg_attribute a
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
), base(attnum, oid, depth) AS (
  SELECT attnum, atttypid, 0 FROM cols
  UNION ALL
  SELECT b.attnum, t.typbasetype, b.depth + 1 FROM base b JOIN pg_catalog.pg_type t ON t.oid = b.oid
  WHERE t.typtype = 'd' AND b.depth < 20
)
SELECT c.attname AS name, c.type_sql,
       -- casts go to the base type (domains resolved, for arrays the element's) without modifier
       CASE WHEN bt.typcategory = 'A' AND et.oid IS NOT NULL AND bt.typinput = 'array_in'::regproc
            THEN format_type(et.oid, -1) || '[]'
            ELSE format_type(bt.oid, -1) END AS cast_sql,
       c.attnotnull AS not_null, c.atthasdef AS has_default,
       c.attidentity AS identity, c.attgenerated AS generated, c.default_expr, c.identity_seq,
       bt.oid::int AS base_oid, bt.typname AS base_name, bt.typtype AS base_typtype, bt.typcategory AS base_category,
       et.oid::int AS elem_oid, et.typname AS elem_name, et.typtype AS elem_typtype,
       -- int2vector and oidvector are of category A without being arrays ('1 2 3')
       bt.typinput = 'array_in'::regproc AS array_in, et.typdelim AS elem_delim
FROM cols c
JOIN LATERAL (SELECT oid FROM base WHERE base.attnum = c.attnum ORDER BY depth DESC LIMIT 1) b ON true
JOIN pg_catalog.pg_type bt ON bt.oid = b.oid
LEFT JOIN LATERAL (
  WITH RECURSIVE eb(oid, depth) AS (
    SELECT bt.typelem, 0 WHERE bt.typcategory = 'A'
    UNION ALL
    SELECT t.typbasetype, eb.depth + 1 FROM eb JOIN pg_catalog.pg_type t ON t.oid = eb.oid
    WHERE t.typtype = 'd' AND eb.depth < 20
  ) SELECT oid FROM eb ORDER BY depth DESC LIMIT 1
) e ON true
LEFT JOIN pg_catalog.pg_type et ON et.oid = e.oid
ORDER BY c.attnum`;

const PRIMARY_KEY = `
SELECT a.attname AS name
FROM pg_catalog.pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisprimary
ORDER BY k.ord`;

const INDEXES = `
SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_am am ON am.oid = ic.relam
JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1 AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree'
  AND k.ord <= i.indnkeyatts AND NOT (0 = ANY (i.indkey::int2[]))
GROUP BY i.indexrelid`;

export function kindOf(typname: string, typtype: string): ValueKind {
  if (typtype === 'e') return 'text'; // enums take their label as a string
  switch (typname) {
    case 'bool':
      return 'bool';
    case 'int2':
      return 'int2';
    case 'int4':
      return 'int4';
    case 'oid': // 0 to 2^32-1: checked as int8 here, the exact range by Postgres
    case 'int8':
      return 'int8';
    case 'float4':
    case 'float8':
      return 'float';
    case 'numeric':
      return 'numeric';
    case 'money':
      return 'money';
    case 'interval':
      return 'interval';
    case 'point':
      return 'point';
    case 'circle':
      return 'circle';
    case 'text':
    case 'varchar':
    case 'bpchar':
    case 'char':
    case 'name':
    case 'citext':
    case 'xml':
      return 'text';
    case 'bytea':
      return 'bytea';
    case 'json':
    case 'jsonb':
      return 'json';
    case 'timestamp':
    case 'timestamptz':
      return 'timestamp';
    case 'date':
      return 'date';
    case 'uuid':
      return 'uuid';
    default:
      return 'other';
  }
}

interface ColumnRow {
  name: string;
  type_sql: string;
  cast_sql: string;
  not_null: boolean;
  has_default: boolean;
  identity: string;
  generated: string;
  default_expr: string | null;
  identity_seq: string | null;
  base_oid: number;
  base_name: string;
  base_typtype: string;
  base_category: string;
  elem_oid: number | null;
  elem_name: string | null;
  elem_typtype: string | null;
  array_in: boolean;
  elem_delim: string | null;
}

/**
 * The oids names resolve to now (undefined: no such table), in one round trip: a name's
 * spelling is tried as written, then, unquoted and in mixed case, in lower case, as
 * loadTableMeta does.
 */
export async function resolveOids(
  db: Queryable,
  tables: readonly string[],
): Promise<(number | undefined)[]> {
  const names: string[] = [];
  const schemas: (string | null)[] = [];
  const owner: number[] = [];
  tables.forEach((t, i) => {
    let p: ReturnType<typeof parseTableName>;
    try {
      p = parseTableName(t);
    } catch {
      return;
    }
    names.push(p.name);
    schemas.push(p.schema);
    owner.push(i);
    if (!p.quoted && p.name !== p.name.toLowerCase()) {
      names.push(p.name.toLowerCase());
      schemas.push(p.schema?.toLowerCase() ?? null);
      owner.push(i);
    }
  });
  const out: (number | undefined)[] = tables.map(() => undefined);
  if (names.length === 0) return out;
  const r = await db.query({
    text: `SELECT x.i, (SELECT c.oid FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'f', 'm') AND c.relname = x.name
          AND (CASE WHEN x.schema IS NULL THEN n.nspname = ANY (current_schemas(false)) ELSE n.nspname = x.schema END)
        ORDER BY array_position(current_schemas(false), n.nspname::text) LIMIT 1) AS oid
      FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(name, schema, i)
      ORDER BY x.i`,
    values: [names, schemas],
  });
  for (const row of r.rows as { i: string | number; oid: number | null }[]) {
    const t = owner[Number(row.i) - 1]!;
    if (out[t] === undefined && row.oid !== null) out[t] = Number(row.oid);
  }
  return out;
}

/** Read a table's columns, types and primary key from the catalog. */
export async function loadTableMeta(db: Queryable, table: string): Promise<TableMeta> {
  const parsed = parseTableName(table);
  let found = await db.query({ text: FIND_TABLE, values: [parsed.name, parsed.schema] });
  if (found.rows.length === 0 && !parsed.quoted && parsed.name !== parsed.name.toLowerCase()) {
    found = await db.query({
      text: FIND_TABLE,
      values: [parsed.name.toLowerCase(), parsed.schema?.toLowerCase() ?? null],
    });
  }
  const t = found.rows[0] as
    | { oid: number; nspname: string; relname: string; relkind: string }
    | undefined;
  if (!t) throw new BulkError('UNKNOWN_TABLE', `unknown table ${JSON.stringify(table)}`, { table });
  const sqlName = `${quoteIdent(t.nspname)}.${quoteIdent(t.relname)}`;
  const cols = await db.query({ text: COLUMNS, values: [t.oid, sqlName] });
  const pk = await db.query({ text: PRIMARY_KEY, values: [t.oid] });
  const ix = await db.query({ text: INDEXES, values: [t.oid] });
  const columns: ColumnMeta[] = (cols.rows as ColumnRow[]).map((r) => {
    const isArray = r.base_category === 'A' && r.elem_oid !== null && r.array_in;
    const kind = isArray ? 'other' : kindOf(r.base_name, r.base_typtype);
    const identity = (r.identity === 'a' || r.identity === 'd' ? r.identity : '') as '' | 'a' | 'd';
    return {
      name: r.name,
      sqlName: quoteIdent(r.name),
      typeSql: r.type_sql,
      castSql: r.cast_sql,
      baseOid: r.base_oid,
      kind,
      isArray,
      elemOid: r.elem_oid ?? 0,
      elemKind: isArray ? kindOf(r.elem_name ?? '', r.elem_typtype ?? '') : 'other',
      elemDelim: isArray ? (r.elem_delim ?? ',') : ',',
      notNull: r.not_null,
      hasDefault: r.has_default || identity !== '',
      identity,
      generated: r.generated === 's',
      defaultExpr:
        identity && r.identity_seq
          ? `nextval('${r.identity_seq.replace(/'/g, "''")}'::regclass)`
          : r.default_expr,
    };
  });
  const displayName = t.nspname === 'public' ? t.relname : `${t.nspname}.${t.relname}`;
  return {
    oid: Number(t.oid),
    schema: t.nspname,
    name: t.relname,
    sqlName,
    scan: t.relkind === 'p' ? sqlName : `ONLY ${sqlName}`,
    relkind: t.relkind,
    displayName,
    columns,
    byName: new Map(columns.map((c) => [c.name, c])),
    primaryKey: (pk.rows as { name: string }[]).map((r) => r.name),
    indexes: (ix.rows as { cols: string[] }[]).map((r) => r.cols),
  };
}

/** Look a column up by name; an unknown one is UNKNOWN_COLUMN naming table and column. */
export function columnOf(meta: TableMeta, name: string, row?: number): ColumnMeta {
  const c = meta.byName.get(name);
  if (!c) {
    throw new BulkError(
      'UNKNOWN_COLUMN',
      `${meta.displayName}: unknown column ${JSON.stringify(name)}${row === undefined ? '' : ` (row ${row})`}`,
      { table: meta.displayName, column: name, row },
    );
  }
  return c;
}
