import { cachedEncoder, valueError } from '../encode.js';
import { BulkError } from '../errors.js';
import { type ColumnMeta, columnOf, type TableMeta } from '../meta.js';
import { checkRow } from '../rows.js';
import type { Chunk, ChunkSteps, Engine } from '../runner.js';
import { queryWithRetry } from '../runner.js';
import type { Row } from '../signals.js';
import { buildSelectBatch, buildUpdateAll, buildUpdateBatch } from '../sql/update.js';
import { buildWhere, dollarParams, type Where } from '../sql/where.js';

export interface UpdateArgs {
  where: Where;
  set: Row;
}

export interface UpdatePlan {
  meta: TableMeta;
  key: ColumnMeta[];
  set: { col: ColumnMeta; lit: string | null }[];
  where: Where;
}

/** Validate and encode `set`; check `where` names real columns. */
export function planUpdate(meta: TableMeta, args: UpdateArgs): UpdatePlan {
  if (args === null || typeof args !== 'object') {
    throw new BulkError('INVALID_OPTION', `${meta.displayName}: update takes { where, set }`, {
      table: meta.displayName,
    });
  }
  if (args.where === undefined) {
    throw new BulkError(
      'INVALID_OPTION',
      `${meta.displayName}: update needs a where ({} to update every row)`,
      { table: meta.displayName },
    );
  }
  checkRow(meta, args.set, 0);
  const set: UpdatePlan['set'] = [];
  for (const [name, v] of Object.entries(args.set)) {
    if (v === undefined) continue;
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
  return { meta, key: meta.primaryKey.map((k) => columnOf(meta, k)), set, where: args.where };
}

/** Key batches of the rows the filter matches, read lazily (keyset pagination on the primary key). */
export async function* keyBatches(
  engine: Engine,
  plan: UpdatePlan,
  batchSize: number,
): AsyncGenerator<Row[]> {
  if (plan.key.length === 0) {
    yield [{ all: true }];
    return;
  }
  const w = buildWhere(plan.meta, plan.where, dollarParams(1), 't');
  let after: (string | null)[] | null = null;
  for (;;) {
    const st = buildSelectBatch(plan.meta, plan.key, w.sql, w.values, after, batchSize);
    const r = await queryWithRetry(engine, (c) =>
      c.query({ text: st.text, values: st.values, rowMode: 'array' }),
    );
    const keys = r.rows as (string | null)[][];
    if (keys.length === 0) return;
    yield keys.map((k) => ({ key: k }));
    if (keys.length < batchSize) return;
    after = keys[keys.length - 1]!;
  }
}

export function updateSteps(plan: UpdatePlan): ChunkSteps<Chunk, { count: number }> {
  return {
    prepare: async (chunk) => chunk,
    async write(client, chunk) {
      const first = chunk.rows[0] as { all?: boolean } | undefined;
      let st: { text: string; values: unknown[] };
      if (first?.all) {
        const w = buildWhere(plan.meta, plan.where, dollarParams(plan.set.length + 1), 't');
        st = buildUpdateAll(plan.meta, plan.set, w.sql, w.values);
      } else {
        const w = buildWhere(plan.meta, plan.where, dollarParams(1), 't');
        const keys = JSON.stringify(chunk.rows.map((r) => (r as { key: unknown[] }).key));
        st = buildUpdateBatch(plan.meta, plan.key, plan.set, w.sql, w.values, keys);
      }
      const r = await client.query({ text: st.text, values: st.values });
      const result = { count: r.rowCount ?? 0 };
      return { result, ledger: result };
    },
    async recover(_c, _p, value) {
      const v = (value ?? {}) as { count?: unknown };
      return { count: typeof v.count === 'number' ? v.count : 0 };
    },
  };
}
