import type { DbClient } from '../db.js';
import { fromPgError } from '../errors.js';
import type { ColumnMeta } from '../meta.js';
import type { EncodedGroup } from '../rows.js';
import { castField } from '../sql/insert.js';

/** Errors a row's data causes (class 22: bad value; class 23: constraint), never transient. */
export function isRowError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

async function failsIn(client: DbClient, fn: () => Promise<unknown>): Promise<boolean> {
  await client.query({ text: 'SAVEPOINT bulkmodel_locate' });
  try {
    await fn();
    return false;
  } catch (err) {
    if (!isRowError(err)) throw err;
    return true;
  } finally {
    await client.query({ text: 'ROLLBACK TO SAVEPOINT bulkmodel_locate' });
  }
}

export interface LocateInput {
  table: string;
  /** The chunk's first row index in the operation. */
  offset: number;
  groups: EncodedGroup[];
  /** Index of the group whose statement failed. */
  failed: number;
  /** Run the statement of a group (or of the first rows of one). */
  run: (group: EncodedGroup) => Promise<unknown>;
}

/**
 * A statement over a whole group failed with bad data, and Postgres did not say which row (the
 * rows travel as one document). Find it: roll the chunk's transaction back, then in a fresh one
 * replay the earlier groups and bisect the failing group by prefix under savepoints, so the
 * first row whose prefix fails is the culprit; for a bad value, try each column's cast on that
 * row to name the column. Nothing is committed (the transaction is rolled back at the end) and
 * this costs nothing unless a chunk already failed. Returns the error as a BulkError naming
 * what was found; any trouble while looking gives the error as it was.
 */
export async function explainRowError(
  client: DbClient,
  err: unknown,
  input: LocateInput,
): Promise<unknown> {
  if (!isRowError(err)) return err;
  const e = fromPgError(err, { table: input.table });
  if (e.row !== undefined) return e;
  try {
    await client.query({ text: 'ROLLBACK' });
    await client.query({ text: 'BEGIN' });
    try {
      for (let gi = 0; gi < input.failed; gi++) await input.run(input.groups[gi]!);
      const g = input.groups[input.failed]!;
      const prefix = (m: number): EncodedGroup => ({
        columns: g.columns,
        rowIdx: g.rowIdx.slice(0, m),
        values: g.values.slice(0, m),
      });
      const fails = (m: number) => failsIn(client, () => input.run(prefix(m)));
      if (!(await fails(g.values.length))) return e;
      let lo = 1;
      let hi = g.values.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (await fails(mid)) hi = mid;
        else lo = mid + 1;
      }
      const row = input.offset + g.rowIdx[lo - 1]!;
      e.row = row;
      e.message += `; row ${row}`;
      if (e.column === undefined) {
        const column = await badCast(client, g.columns, g.values[lo - 1]!);
        if (column) {
          e.column = column;
          e.message += `; column ${column}`;
        }
      }
    } finally {
      await client.query({ text: 'ROLLBACK' });
    }
  } catch {
    return e;
  }
  return e;
}

/** The first column whose value Postgres refuses to cast (bad syntax, out of range, domain check). */
async function badCast(
  client: DbClient,
  columns: ColumnMeta[],
  lits: (string | null)[],
): Promise<string | undefined> {
  const doc = JSON.stringify([lits]);
  for (let j = 0; j < columns.length; j++) {
    if (lits[j] === null) continue;
    // Through the declared type too: a domain's check or numeric(p,s) overflow fails there.
    const text = `SELECT ${castField(j, columns[j]!)}::${columns[j]!.typeSql} FROM jsonb_array_elements($1::jsonb) AS x(e)`;
    if (await failsIn(client, () => client.query({ text, values: [doc] }))) return columns[j]!.name;
  }
  return undefined;
}
