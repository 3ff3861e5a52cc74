import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFromStdin } from 'pg-copy-streams';
import type { DbClient } from '../db.js';
import { RAW_TEXT_TYPES } from '../decode.js';
import { copyEscape } from '../encode.js';
import { fromPgError } from '../errors.js';
import type { EncodedGroup } from '../rows.js';
import type { ChunkSteps } from '../runner.js';
import type { Row } from '../signals.js';
import { buildCopyIn } from '../sql/copy.js';
import { buildInsert, jsonSource, stageSource } from '../sql/insert.js';
import type { OpContext } from './context.js';
import {
  collectReturned,
  type InsertChunkResult,
  type InsertPlan,
  insertLedger,
  type PreparedInsert,
  prepareInsert,
  rawKeysOf,
  recoverInsert,
  selectByKeys,
} from './insertCommon.js';

/** COPY text format: one line per row, tab-separated, escaped; `ordinal` prefixes each row's 1-based index. */
export function copyText(group: EncodedGroup, ordinal: boolean): string {
  let out = '';
  for (let i = 0; i < group.values.length; i++) {
    const lits = group.values[i]!;
    let line = ordinal ? `${i + 1}` : '';
    for (let j = 0; j < lits.length; j++) {
      if (j > 0 || ordinal) line += '\t';
      line += copyEscape(lits[j]!);
    }
    out += `${line}\n`;
  }
  return out;
}

/**
 * Stream `text` into `COPY ... FROM STDIN`; a COPY error names the row it came from, and the
 * table's column (a staging table's columns c0, c1, ... are named back to the group's columns).
 */
export async function copyIn(
  client: DbClient,
  sql: string,
  text: string,
  table: string,
  group: EncodedGroup,
  offset: number,
): Promise<number> {
  const stream = client.query(copyFromStdin(sql));
  // The COPY stays the connection's active query until Postgres says ReadyForQuery: a backend
  // killed in between reports its error on this stream after pipeline() has let go of it, and
  // an unheard error event would crash the process. The connection's next query fails anyway.
  stream.on('error', () => {});
  try {
    await pipeline(Readable.from([Buffer.from(text, 'utf8')]), stream);
    // Rows Postgres wrote: a BEFORE trigger returning NULL skips a row.
    return stream.rowCount;
  } catch (err) {
    const e = fromPgError(err, {
      table,
      rowIndexOfLine: (line) =>
        group.rowIdx[line - 1] === undefined ? undefined : offset + group.rowIdx[line - 1]!,
    });
    const staged = e.column === undefined ? null : /^c(\d+)$/.exec(e.column);
    const real = staged ? group.columns[Number(staged[1])] : undefined;
    if (real && !group.columns.some((c) => c.name === e.column)) {
      e.message = e.message.replace(`column ${e.column}`, `column ${real.name}`);
      e.column = real.name;
    }
    throw e;
  }
}

/**
 * copyFrom's chunk. Without onConflict each group is COPYed straight into the table; keys for
 * returning were reserved up front, so keys come back without a query and whole rows with one
 * SELECT by key. With onConflict the group is COPYed into a temporary staging table and moved
 * with INSERT ... SELECT ... ON CONFLICT (RETURNING when asked), in the same transaction.
 */
/**
 * The COPY write of an insert chunk (copyFrom's, and bulkCreate's unless it uses INSERT).
 * Without onConflict each group is COPYed straight into the table; keys for returning were
 * reserved up front, so keys come back without a query and whole rows with one SELECT by key.
 * With onConflict the group is COPYed into a temporary staging table and moved with INSERT ...
 * SELECT ... ON CONFLICT (RETURNING when asked), in the same transaction.
 */
export function copyWrite(
  plan: InsertPlan,
): (
  client: DbClient,
  p: PreparedInsert,
) => Promise<{ result: InsertChunkResult; ledger: unknown }> {
  const table = plan.meta.displayName;
  const ret = plan.returning;
  const keysOnly = ret?.columns.every((c) => ret.pairKey.includes(c.name)) ?? false;
  return async (client, p) => {
    let count = 0;
    let echoed = true;
    const returned: (Row | undefined)[] | undefined = ret ? [] : undefined;
    const keys: (string | number)[][] = [];
    for (let gi = 0; gi < p.groups.length; gi++) {
      const g = p.groups[gi]!;
      if (g.columns.length === 0) {
        // Rows with no columns (all defaults): COPY needs a column, INSERT does not.
        const text = buildInsert(plan.meta, g.columns, jsonSource(g.columns), {
          onConflict: plan.onConflict,
        });
        const r = await client.query({ text, values: [JSON.stringify(g.values)] });
        count += r.rowCount ?? 0;
        continue;
      }
      if (plan.onConflict === undefined) {
        const written = await copyIn(
          client,
          buildCopyIn(plan.meta, g.columns),
          copyText(g, false),
          table,
          g,
          p.chunk.offset,
        );
        count += written;
        if (written !== g.values.length) echoed = false; // some rows were skipped: ask the table
        if (ret) {
          const kidx = ret.pairKey.map((k) => g.columns.findIndex((c) => c.name === k));
          for (let i = 0; i < g.values.length; i++)
            keys.push([g.rowIdx[i]!, ...kidx.map((j) => g.values[i]![j] as string)]);
        }
        continue;
      }
      const stage = `bulkmodel_stage_${gi}`;
      const cols = g.columns.map((c, j) => `t.${c.sqlName} AS c${j}`).join(', ');
      await client.query({
        text: `CREATE TEMP TABLE ${stage} ON COMMIT DROP AS SELECT NULL::int8 AS i, ${cols} FROM ${plan.meta.sqlName} AS t LIMIT 0`,
      });
      const stageCols = ['i', ...g.columns.map((_, j) => `c${j}`)].join(', ');
      await copyIn(
        client,
        `COPY ${stage} (${stageCols}) FROM STDIN`,
        copyText(g, true),
        table,
        g,
        p.chunk.offset,
      );
      const text = buildInsert(plan.meta, g.columns, stageSource(stage, g.columns), {
        onConflict: plan.onConflict,
        overriding: p.overriding,
        returning: ret,
      });
      if (ret) {
        const r = await client.query({ text, rowMode: 'array', types: RAW_TEXT_TYPES });
        collectReturned(plan, g, r.rows, returned!);
        rawKeysOf(plan, g, r.rows, keys);
        count += r.rows.length;
      } else {
        const r = await client.query({ text });
        count += r.rowCount ?? 0;
      }
      await client.query({ text: `DROP TABLE ${stage}` });
    }
    if (ret && plan.onConflict === undefined) {
      // Keys reserved from Postgres are the stored text; keys the caller gave may be spelled
      // otherwise (an uppercase uuid, '1.50'): read those back, as INSERT ... RETURNING would.
      if (keysOnly && echoed && p.keysFromPostgres) {
        for (const k of keys) {
          const obj: Row = {};
          ret.columns.forEach((c, j) => {
            obj[c.name] = plan.decoders[j]!(k[1 + ret.pairKey.indexOf(c.name)] as string);
          });
          returned![k[0] as number] = obj;
        }
      } else {
        const got = await selectByKeys(client, plan, keys);
        got.forEach((r, i) => {
          returned![i] = r;
        });
      }
    }
    const result: InsertChunkResult = returned ? { count, returned } : { count };
    return { result, ledger: insertLedger(plan, result, keys) };
  };
}

export function copyFromSteps(
  ctx: OpContext,
  plan: InsertPlan,
): ChunkSteps<PreparedInsert, InsertChunkResult> {
  const table = plan.meta.displayName;
  return {
    prepare: (chunk, client) =>
      prepareInsert(
        ctx.engine,
        ctx.signals,
        'preCopyFrom',
        plan,
        chunk,
        ctx.op.operationId,
        ctx.op.batchSize,
        client,
      ),
    write: copyWrite(plan),
    recover: (client, _p, value) => recoverInsert(client, plan, value),
    async after(p, r) {
      await ctx.signals?.emitPost('postCopyFrom', {
        table,
        operationId: ctx.op.operationId,
        chunkIndex: p.chunk.index,
        batchSize: ctx.op.batchSize,
        rows: p.inputRows,
        count: r.count,
        ...(r.returned ? { returned: r.returned.filter((x): x is Row => x !== undefined) } : {}),
      });
    },
  };
}
