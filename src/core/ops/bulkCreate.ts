import type { DbClient } from '../db.js';
import { RAW_TEXT_TYPES } from '../decode.js';
import type { EncodedGroup } from '../rows.js';
import type { ChunkSteps } from '../runner.js';
import type { Row } from '../signals.js';
import { buildInsert, jsonSource } from '../sql/insert.js';
import type { OpContext } from './context.js';
import { copyWrite } from './copyFrom.js';
import {
  collectReturned,
  type InsertChunkResult,
  type InsertPlan,
  insertLedger,
  insertSteps,
  type PreparedInsert,
  rawKeysOf,
} from './insertCommon.js';
import { explainRowError } from './locate.js';

/**
 * bulkCreate's chunk. Strategy 'copy' (the default without onConflict) writes with COPY, like
 * copyFrom: the fastest path Postgres has. Strategy 'insert' (the default with onConflict) runs
 * one INSERT ... SELECT FROM jsonb_array_elements($1) per group of rows.
 */
export function bulkCreateSteps(
  ctx: OpContext,
  plan: InsertPlan,
): ChunkSteps<PreparedInsert, InsertChunkResult> {
  const copy = plan.strategy === 'copy';
  return insertSteps(ctx, plan, 'BulkCreate', copy ? copyWrite(plan) : insertWrite, copy);

  async function insertWrite(client: DbClient, p: PreparedInsert) {
    let count = 0;
    const returned: (Row | undefined)[] | undefined = plan.returning ? [] : undefined;
    const keys: (string | number)[][] = [];
    const textOf = (g: EncodedGroup) =>
      buildInsert(plan.meta, g.columns, jsonSource(g.columns), {
        onConflict: plan.onConflict,
        overriding: p.overriding,
        returning: plan.returning,
      });
    for (let gi = 0; gi < p.groups.length; gi++) {
      const g = p.groups[gi]!;
      const text = textOf(g);
      const values = [JSON.stringify(g.values)];
      try {
        if (returned) {
          const r = await client.query({ text, values, rowMode: 'array', types: RAW_TEXT_TYPES });
          collectReturned(plan, g, r.rows, returned);
          rawKeysOf(plan, g, r.rows, keys);
          count += r.rows.length;
        } else {
          const r = await client.query({ text, values });
          count += r.rowCount ?? 0;
        }
      } catch (err) {
        // Locating the row takes a few round trips: not inside a whole-operation transaction,
        // nor while concurrent chunks would keep being scheduled behind a failure not yet known.
        if (ctx.op.transaction === 'operation' || ctx.op.concurrency > 1) throw err;
        throw await explainRowError(client, err, {
          table: plan.meta.displayName,
          offset: p.chunk.offset,
          groups: p.groups,
          failed: gi,
          run: (sub) => client.query({ text: textOf(sub), values: [JSON.stringify(sub.values)] }),
        });
      }
    }
    const result: InsertChunkResult = returned ? { count, returned } : { count };
    return { result, ledger: insertLedger(plan, result, keys) };
  }
}
