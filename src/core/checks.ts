import { BulkError } from './errors.js';
import { SETTINGS } from './settings.js';

/** Deepest nesting of objects and arrays accepted in filters, `set` and queue payloads. */
export const MAX_NESTING: number = SETTINGS.maxNesting.max;

function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  if (v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) return true;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Where `v` holds `undefined` (as a property value or an array element), as a path such as
 * `where.id.eq`; or where it nests deeper than `maxDepth`. Walks without recursion, so a
 * hostile 200,000-deep value cannot overflow the stack. Dates, Buffers and class instances
 * are leaves.
 */
export function findProblem(
  v: unknown,
  path: string,
  maxDepth = MAX_NESTING,
): { path: string; problem: 'undefined' | 'too deep' } | undefined {
  const stack: { v: unknown; path: string; depth: number }[] = [{ v, path, depth: 0 }];
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.v === undefined) return { path: top.path, problem: 'undefined' };
    if (!isContainer(top.v)) continue;
    if (top.depth >= maxDepth) return { path: top.path, problem: 'too deep' };
    if (Array.isArray(top.v)) {
      for (let i = top.v.length - 1; i >= 0; i--)
        stack.push({ v: top.v[i], path: `${top.path}[${i}]`, depth: top.depth + 1 });
    } else {
      const keys = Object.keys(top.v);
      for (let i = keys.length - 1; i >= 0; i--)
        stack.push({
          v: top.v[keys[i]!],
          path: `${top.path}.${keys[i]}`,
          depth: top.depth + 1,
        });
    }
  }
  return undefined;
}

/**
 * A filter or `set` holding `undefined` is refused: a missing variable must never widen a
 * filter (`{ id: undefined }` would otherwise match every row) nor silently drop a column.
 */
export function checkDefined(v: unknown, path: string, table?: string): void {
  const p = findProblem(v, path);
  if (!p) return;
  const where = table ? `${table}: ` : '';
  throw new BulkError(
    'INVALID_OPTION',
    p.problem === 'undefined'
      ? `${where}${p.path} is undefined: a filter or set value must be given (null means NULL)`
      : `${where}${p.path} is nested more than ${MAX_NESTING} deep`,
    { table },
  );
}

/** A non-empty array of non-empty strings. */
export function isNameList(v: unknown): v is string[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x.length > 0);
}

/**
 * A list of column names as an option takes it: an array of names, or one name alone (a
 * one-element list). Anything else (an empty list, a number, an empty name) is INVALID_OPTION.
 */
export function columnList(v: unknown, what: string, table?: string): string[] | undefined {
  if (v === undefined) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!isNameList(list)) {
    throw new BulkError(
      'INVALID_OPTION',
      `${table ? `${table}: ` : ''}${what} must be a column name or a non-empty array of column names`,
      { table },
    );
  }
  return list as string[];
}

/**
 * The shape of an `onConflict` option: 'ignore', or an object of `target` (and `update`), with
 * no other key (a misspelt `updates` would silently mean DO NOTHING) and no column twice.
 */
export function checkOnConflictShape(v: unknown, table?: string): void {
  if (v === undefined || v === 'ignore') return;
  const where = table ? `${table}: ` : '';
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new BulkError(
      'INVALID_OPTION',
      `${where}onConflict must be 'ignore' or { target, update }`,
      {
        table,
      },
    );
  for (const k of Object.keys(v))
    if (k !== 'target' && k !== 'update')
      throw new BulkError(
        'INVALID_OPTION',
        `${where}onConflict takes target and update, not ${JSON.stringify(k)}`,
        { table },
      );
  const { update } = v as { update?: unknown };
  if (Array.isArray(update) && new Set(update).size !== update.length)
    throw new BulkError('INVALID_OPTION', `${where}onConflict.update names a column twice`, {
      table,
    });
}
