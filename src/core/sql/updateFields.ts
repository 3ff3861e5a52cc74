import type { TableMeta } from '../meta.js';
import type { EncodedGroup } from '../rows.js';
import { castField, chunkDocument, type Statement } from './insert.js';

/**
 * One UPDATE ... FROM for one group whose first `keyCount` columns are the key and the rest the
 * fields to write. The target rows are first locked in key order (`l`: ORDER BY key FOR UPDATE,
 * whose LockRows sits above the sort), so concurrent updateFields of overlapping keys wait for
 * each other instead of deadlocking, whatever join the planner picks for the UPDATE itself.
 * Returns the 1-based ordinals of the rows that matched (rows as arrays), so the caller can
 * report the keys that matched nothing.
 */
export function buildUpdateFields(
  meta: TableMeta,
  group: EncodedGroup,
  keyCount: number,
): Statement {
  const cols = group.columns;
  const keys = cols.slice(0, keyCount);
  const src = cols.map((c, j) => `${castField(j, c)} AS c${j}`).join(', ');
  const set = cols
    .slice(keyCount)
    .map((c, j) => `${c.sqlName} = v.c${j + keyCount}`)
    .join(', ');
  const match = keys.map((c, j) => `t.${c.sqlName} = v.c${j}`).join(' AND ');
  const lockCols = keys.map((c, j) => `t.${c.sqlName} AS l${j}`).join(', ');
  const lockOrder = keys.map((c) => `t.${c.sqlName}`).join(', ');
  const lockJoin = keys.map((_, j) => `l.l${j} = v.c${j}`).join(' AND ');
  return {
    text:
      `WITH v AS MATERIALIZED (SELECT x.i, ${src} FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, i)), ` +
      `l AS MATERIALIZED (SELECT ${lockCols} FROM ${meta.sqlName} AS t JOIN v ON ${match} ORDER BY ${lockOrder} FOR UPDATE OF t) ` +
      `UPDATE ${meta.sqlName} AS t SET ${set} FROM v JOIN l ON ${lockJoin} WHERE ${match} RETURNING v.i`,
    values: [chunkDocument(group)],
  };
}
