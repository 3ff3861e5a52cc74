import { checkDefined } from '../checks.js';
import type { DbClient } from '../db.js';
import { cachedEncoder, valueError } from '../encode.js';
import { BulkError } from '../errors.js';
import { type ColumnMeta, columnOf, type TableMeta } from '../meta.js';
import { checkRow } from '../rows.js';
import type { Chunk, ChunkSteps, Engine } from '../runner.js';
import { queryWithRetry } from '../runner.js';
import type { Row } from '../signals.js';
import { buildBatchEnd, buildUpdateAll, buildUpdateRange } from '../sql/update.js';
import { buildWhere, dollarParams, type Where } from '../sql/where.js';

export interface UpdateArgs {
  /** The rows to update: a filter of column conditions (never empty). */
  where?: Where;
  /** Update every row of the table; required instead of `where` for that. */
  all?: true;
  set: Row;
}

export interface UpdatePlan {
  meta: TableMeta;
  key: ColumnMeta[];
  set: { col: ColumnMeta; lit: string | null }[];
  /** The filter; `undefined` when the call asked for every row (`all: true`). */
  where: Where | undefined;
}

const UPDATE_KEYS = new Set(['where', 'all', 'set']);

/**
 * Check the shape of `update({ where, set })` / `update({ all: true, set })`: a missing value
 * never widens the update. `undefined` anywhere, an empty `where`, or neither `where` nor
 * `all: true` is INVALID_OPTION; updating the whole table takes `all: true`, which no missing
 * variable can produce.
 */
export function checkUpdateArgs(args: unknown, table: string): asserts args is UpdateArgs {
  const bad = (msg: string) => new BulkError('INVALID_OPTION', `${table}: ${msg}`, { table });
  if (args === null || typeof args !== 'object' || Array.isArray(args))
    throw bad('update takes { where, set } (or { all: true, set })');
  for (const k of Object.keys(args))
    if (!UPDATE_KEYS.has(k)) throw bad(`update takes where, set and all, not ${JSON.stringify(k)}`);
  const a = args as { where?: unknown; all?: unknown; set?: unknown };
  if ('all' in a) {
    if (a.all !== true) throw bad('all must be true (to update every row) or left out');
    if ('where' in a) throw bad('update takes where or all: true, not both');
  } else {
    if (!('where' in a) || a.where === undefined)
      throw bad('update needs a where (or all: true to update every row)');
    if (a.where === null || typeof a.where !== 'object' || Array.isArray(a.where))
      throw bad('where must be an object of column conditions');
    if (Object.keys(a.where).length === 0)
      throw bad('where is empty: pass all: true (instead of where) to update every row');
    checkDefined(a.where, 'where', table);
  }
  if (a.set === null || typeof a.set !== 'object' || Array.isArray(a.set))
    throw bad('set must be an object of column values');
  checkDefined(a.set, 'set', table);
}

/** Validate and encode `set`; check `where` names real columns. */
export function planUpdate(meta: TableMeta, args: UpdateArgs): UpdatePlan {
  checkUpdateArgs(args, meta.displayName);
  checkRow(meta, args.set, 0);
  const set: UpdatePlan['set'] = [];
  for (const [name, v] of Object.entries(args.set)) {
    const col = columnOf(meta, name);
    if (col.generated || col.identity === 'a') {
      throw new BulkError('READ_ONLY_COLUMN', `${meta.displayName}.${name} cannot be written`, {
        table: meta.displayName,
        column: name,
      });
    }
    try {
      set.push({ col, lit: cachedEncoder(col)(v) });
    } catch (err) {
      throw valueError(meta, name, undefined, err);
    }
  }
  if (set.length === 0)
    throw new BulkError(
      'INVALID_OPTION',
      `${meta.displayName}: update needs at least one column in set`,
      { table: meta.displayName },
    );
  // Build once to validate the filter (unknown columns, bad values) before anything runs.
  buildWhere(meta, args.where, dollarParams(1), 't');
  return {
    meta,
    key: meta.primaryKey.map((k) => columnOf(meta, k)),
    set,
    where: args.all === true ? undefined : args.where,
  };
}

/**
 * A batch that committed in an earlier run of the same operation: its last key, to go on after,
 * or `final` when it was the open-ended last batch.
 */
interface DoneBatch {
  done: true;
  key: (string | null)[] | null;
  final: boolean;
}

/** One batch: the rows with keys in (after, last], `last` null for the open-ended final batch. */
interface KeyRange {
  after: (string | null)[] | null;
  last: (string | null)[] | null;
}

/**
 * Key ranges of `batchSize` rows the filter matches, found lazily (keyset pagination on the
 * primary key: each scan returns only the range's last key; the last range is open-ended).
 *
 * With `resume` (a stable operation id, as a queue job's replay has), batch i that already
 * committed under that id is not scanned again: the ledger keeps its last key, and the scan goes
 * on after it. Re-scanning instead would put other keys under batch i's number (a filter the
 * update makes false, like `where: { flag: false }, set: { flag: true }`), and the ledger would
 * skip them as done. The ledger read and the scan share one snapshot, so a batch that commits
 * meanwhile (another runner of the operation) is either seen as done or not yet written.
 */
export async function* keyBatches(
  engine: Engine,
  plan: UpdatePlan,
  batchSize: number,
  resume?: { operationId: string; fingerprint?: string | undefined },
  /** Read on this client (an operation-wide transaction's): a second connection could wait forever. */
  client?: DbClient,
): AsyncGenerator<Row[]> {
  if (plan.key.length === 0) {
    yield [{ all: true }];
    return;
  }
  const w = buildWhere(plan.meta, plan.where, dollarParams(1), 't');
  const ledger = resume ? engine.ledger : null;
  let after: (string | null)[] | null = null;
  for (let index = 0; ; index++) {
    const scan = async (c: DbClient): Promise<KeyRange> => {
      const st = buildBatchEnd(plan.meta, plan.key, w.sql, w.values, after, batchSize);
      const r = await c.query({ text: st.text, values: st.values, rowMode: 'array' });
      return { after, last: (r.rows[0] as (string | null)[] | undefined) ?? null };
    };
    const found: DoneBatch | KeyRange = client
      ? await scan(client)
      : await queryWithRetry(engine, async (c) => {
          if (!ledger || !resume) return scan(c);
          await c.query({ text: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' });
          const prev = await ledger.read(c, resume.operationId, index, resume.fingerprint);
          const v = prev?.result as { last?: unknown; final?: unknown } | null | undefined;
          const out: DoneBatch | KeyRange = Array.isArray(v?.last)
            ? { done: true, key: v.last as (string | null)[], final: false }
            : v?.final === true
              ? { done: true, key: null, final: true }
              : await scan(c);
          await c.query({ text: 'COMMIT' });
          return out;
        });
    if ('done' in found) {
      yield [found as unknown as Row];
      if (found.final) return;
      after = found.key;
      continue;
    }
    yield [found as unknown as Row];
    if (found.last === null) return;
    after = found.last;
  }
}

export function updateSteps(plan: UpdatePlan): ChunkSteps<Chunk, { count: number }> {
  return {
    prepare: async (chunk) => chunk,
    async write(client, chunk) {
      const first = chunk.rows[0] as
        | ({ all?: boolean; done?: boolean } & Partial<KeyRange>)
        | undefined;
      // A batch found done in the ledger before its claim, whose ledger row then went (pruned):
      // nothing is known of its keys any more, so nothing is written.
      if (first?.done) return { result: { count: 0 }, ledger: { count: 0 } };
      let st: { text: string; values: unknown[] };
      if (first?.all) {
        const w = buildWhere(plan.meta, plan.where, dollarParams(plan.set.length + 1), 't');
        st = buildUpdateAll(plan.meta, plan.set, w.sql, w.values);
      } else {
        const w = buildWhere(plan.meta, plan.where, dollarParams(1), 't');
        const after = first?.after ?? null;
        const last = first?.last ?? null;
        st = buildUpdateRange(plan.meta, plan.key, plan.set, w.sql, w.values, after, last);
      }
      const r = await client.query({ text: st.text, values: st.values });
      const result = { count: r.rowCount ?? 0 };
      // The batch's last key lets a replay of the operation resume after it (keyBatches); the
      // open-ended last batch is marked final, so a replay stops there.
      if (first?.all) return { result, ledger: result };
      return {
        result,
        ledger: first?.last ? { ...result, last: first.last } : { ...result, final: true },
      };
    },
    async recover(_c, _p, value) {
      const v = (value ?? {}) as { count?: unknown };
      return { count: typeof v.count === 'number' ? v.count : 0 };
    },
  };
}
