import { cachedEncoder, valueError } from '../encode.js';
import { BulkError } from '../errors.js';
import { type ColumnMeta, columnOf, type TableMeta } from '../meta.js';

/**
 * A structured filter: `{ col: value | value[] | { eq, ne, gt, gte, lt, lte, in, isNull } }`.
 * Conditions are ANDed. `null` means IS NULL. For a scalar column an array means IN; for an
 * array column an array means equality (use `{ in: [...] }` for membership).
 */
export type WhereValue = unknown;
export type Where = Record<string, WhereValue>;

const OPS = new Set(['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'isNull']);
const CMP: Record<string, string> = { eq: '=', ne: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' };

function isOpObject(v: unknown): v is Record<string, unknown> {
  return (
    v !== null &&
    typeof v === 'object' &&
    !Array.isArray(v) &&
    !(v instanceof Date) &&
    !(v instanceof Uint8Array) &&
    Object.keys(v).length > 0 &&
    Object.keys(v).every((k) => OPS.has(k))
  );
}

/** How the n-th bound value (0-based) is referenced: `$k`, or a setting for COPY, which takes no parameters. */
export type ParamRef = (n: number) => string;

export const dollarParams =
  (first: number): ParamRef =>
  (n) =>
    `$${first + n}`;

/** For COPY (SELECT ...): values travel as transaction-local settings, still never spliced into SQL. */
export const settingParams: ParamRef = (n) => `current_setting('bulkmodel.w${n}')`;

/** Build `a = $1::type AND ...`; '' for an empty filter. Values are literals (text) to bind. */
export function buildWhere(
  meta: TableMeta,
  where: Where | undefined,
  param: ParamRef,
  alias = '',
): { sql: string; values: (string | null | (string | null)[])[] } {
  if (where === undefined) return { sql: '', values: [] };
  if (where === null || typeof where !== 'object' || Array.isArray(where)) {
    throw new BulkError(
      'INVALID_OPTION',
      `${meta.displayName}: where must be an object of column conditions`,
      { table: meta.displayName },
    );
  }
  const parts: string[] = [];
  const values: (string | null | (string | null)[])[] = [];
  const prefix = alias ? `${alias}.` : '';
  const bind = (col: ColumnMeta, v: unknown): string => {
    let lit: string | null;
    try {
      lit = cachedEncoder(col)(v);
    } catch (err) {
      throw valueError(meta, col.name, undefined, err);
    }
    values.push(lit);
    return `${param(values.length - 1)}::${col.castSql}`;
  };
  const bindList = (col: ColumnMeta, list: unknown[]): string => {
    const lits = list.map((v) => {
      if (v === null || v === undefined)
        throw new BulkError(
          'INVALID_OPTION',
          `${meta.displayName}.${col.name}: an IN list cannot hold null`,
          { table: meta.displayName, column: col.name },
        );
      try {
        return cachedEncoder(col)(v);
      } catch (err) {
        throw valueError(meta, col.name, undefined, err);
      }
    });
    values.push(lits);
    return `${param(values.length - 1)}::text[]::${col.castSql}[]`;
  };
  const undefinedAt = (path: string) =>
    new BulkError(
      'INVALID_OPTION',
      `${meta.displayName}: where.${path} is undefined: a filter value must be given (null means IS NULL)`,
      { table: meta.displayName },
    );
  for (const [name, cond] of Object.entries(where)) {
    // A missing value never widens a filter: { id: undefined } would match every row.
    if (cond === undefined) throw undefinedAt(name);
    const col = columnOf(meta, name);
    const c = `${prefix}${col.sqlName}`;
    if (cond === null) {
      parts.push(`${c} IS NULL`);
    } else if (Array.isArray(cond) && !col.isArray) {
      parts.push(cond.length === 0 ? 'false' : `${c} = ANY(${bindList(col, cond)})`);
    } else if (isOpObject(cond)) {
      for (const [op, v] of Object.entries(cond)) {
        if (v === undefined) throw undefinedAt(`${name}.${op}`);
        if (op === 'isNull') {
          parts.push(`${c} IS ${v ? '' : 'NOT '}NULL`);
        } else if (op === 'in') {
          if (!Array.isArray(v))
            throw new BulkError(
              'INVALID_OPTION',
              `${meta.displayName}.${name}: 'in' takes an array`,
              { table: meta.displayName, column: name },
            );
          if (v.length === 0) parts.push('false');
          else if (col.isArray) {
            if (v.some((x) => x === null || x === undefined))
              throw new BulkError(
                'INVALID_OPTION',
                `${meta.displayName}.${col.name}: an IN list cannot hold null`,
                { table: meta.displayName, column: col.name },
              );
            // Membership of a whole array value: one equality each (= ANY would flatten them).
            parts.push(`(${v.map((x) => `${c} = ${bind(col, x)}`).join(' OR ')})`);
          } else parts.push(`${c} = ANY(${bindList(col, v)})`);
        } else if (v === null) {
          if (op === 'eq') parts.push(`${c} IS NULL`);
          else if (op === 'ne') parts.push(`${c} IS NOT NULL`);
          else
            throw new BulkError(
              'INVALID_OPTION',
              `${meta.displayName}.${name}: '${op}' cannot compare with null`,
              { table: meta.displayName, column: name },
            );
        } else {
          parts.push(`${c} ${CMP[op]} ${bind(col, v)}`);
        }
      }
    } else {
      parts.push(`${c} = ${bind(col, cond)}`);
    }
  }
  return { sql: parts.join(' AND '), values };
}
