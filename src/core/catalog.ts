import { createHash } from 'node:crypto';
import { quoteIdent } from './ident.js';
import type { ColumnMeta, TableMeta, ValueKind } from './meta.js';

/**
 * What a producer needs of a table to encode rows into COPY text: each column's name, the
 * kind of value it takes, and whether it can be written. Workers publish it beside the queue
 * for the tables they allow; a chunk encoded with it carries its fingerprint, and a worker
 * whose catalog disagrees for the chunk's columns refuses it (CATALOG_MISMATCH).
 */
export interface TableSnapshot {
  schema: string;
  name: string;
  columns: {
    name: string;
    kind: ValueKind;
    isArray: boolean;
    elemKind: ValueKind;
    /** The base type's name for casts (jsonb or json: they refuse different things). */
    castSql: string;
    /** Array elements' delimiter, when not a comma. */
    elemDelim?: string;
    /** Generated (or GENERATED ALWAYS AS IDENTITY): never written. */
    readOnly: boolean;
  }[];
}

export function snapshotOf(meta: TableMeta): TableSnapshot {
  return {
    schema: meta.schema,
    name: meta.name,
    columns: meta.columns.map((c) => ({
      name: c.name,
      kind: c.kind,
      isArray: c.isArray,
      elemKind: c.elemKind,
      castSql: c.castSql,
      ...(c.elemDelim && c.elemDelim !== ',' ? { elemDelim: c.elemDelim } : {}),
      readOnly: c.generated || c.identity === 'a',
    })),
  };
}

/** A table's columns from a snapshot, as the encoders and row checks read them. */
export function metaFromSnapshot(s: TableSnapshot): TableMeta {
  const sqlName = `${quoteIdent(s.schema)}.${quoteIdent(s.name)}`;
  const columns: ColumnMeta[] = s.columns.map((c) => ({
    name: c.name,
    sqlName: quoteIdent(c.name),
    typeSql: '',
    castSql: typeof c.castSql === 'string' ? c.castSql : '',
    baseOid: 0,
    kind: c.kind,
    isArray: c.isArray,
    elemOid: 0,
    elemKind: c.elemKind,
    ...(c.elemDelim ? { elemDelim: c.elemDelim } : {}),
    notNull: false,
    hasDefault: false,
    identity: c.readOnly ? 'a' : '',
    generated: false,
    defaultExpr: null,
  }));
  return {
    oid: 0,
    schema: s.schema,
    name: s.name,
    sqlName,
    scan: sqlName,
    relkind: 'r',
    displayName: s.schema === 'public' ? s.name : `${s.schema}.${s.name}`,
    columns,
    byName: new Map(columns.map((c) => [c.name, c])),
    primaryKey: [],
    indexes: [],
  };
}

/** The fingerprint of how these columns' values are encoded: names and kinds, in order. */
export function kindsFingerprint(
  columns: readonly Pick<ColumnMeta, 'name' | 'kind' | 'isArray' | 'elemKind' | 'elemDelim'>[],
): string {
  const parts = columns.map((c) => [
    c.name,
    c.isArray ? `${c.elemKind}[${c.elemDelim && c.elemDelim !== ',' ? c.elemDelim : ''}]` : c.kind,
  ]);
  return createHash('sha1').update(JSON.stringify(parts)).digest('base64url');
}
