import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFromStdin } from 'pg-copy-streams';
import type { DbClient } from '../db.js';
import { RAW_TEXT_TYPES } from '../decode.js';
import { copyEscape, valueError } from '../encode.js';
import { fromPgError } from '../errors.js';
import type { TableMeta } from '../meta.js';
import type { RowGroup } from '../rows.js';
import type { ChunkSteps, WriteHooks } from '../runner.js';
import type { Row } from '../signals.js';
import { buildCopyIn, buildStageCopy, buildStageTable } from '../sql/copy.js';
import { buildInsert, jsonSource, stageSource } from '../sql/insert.js';
import type { OpContext } from './context.js';
import {
  collectReturned,
  drawKeys,
  type InsertChunkResult,
  type InsertLedger,
  type InsertPlan,
  insertLedger,
  insertSteps,
  keysOfLedger,
  ledgerKeys,
  type PreparedInsert,
  rawKeysOf,
  returnedRow,
  selectByKeys,
} from './insertCommon.js';

/** Where a COPY's rows come from: the chunk's rows, a group of them, and keys drawn for them. */
export interface CopySource {
  meta: TableMeta;
  rows: readonly Row[];
  group: RowGroup;
  /** The chunk's first row index in the operation, for error messages. */
  offset: number;
  /** Prefix each line with the row's 1-based ordinal in the group (staging tables). */
  ordinal: boolean;
  /** Keys drawn from Postgres by row index, for column `reservedAt` where the row has none. */
  reserved?: (string | undefined)[];
  reservedAt?: number;
  /** Collect the literals of these columns, row after row (returned keys). */
  keyColumns?: number[];
  keysOut?: string[];
  /** Called after each row's key literals were added to keysOut, at position `at`. */
  onRowKeys?: (ri: number, keysOut: readonly string[], at: number) => void;
  /** Called once every line has been produced (the server still has the tail to parse). */
  onEnd?: () => void;
}

const PIECE = 1 << 16;

/**
 * The COPY text of a group, in pieces of about 64 KB: each value is encoded (and checked) as it
 * streams, so the server parses one piece while Node encodes the next. A bad value throws its
 * BulkError here, which cancels the COPY (CopyFail) and with it the chunk's transaction.
 */
export function* copyLines(src: CopySource): Generator<string> {
  const { meta, rows, group, offset, reserved, keyColumns, keysOut } = src;
  const names = group.columns.map((c) => c.name);
  const enc = group.encoders;
  const n = names.length;
  const isKey = new Array<boolean>(n).fill(false);
  for (const j of keyColumns ?? []) isKey[j] = true;
  const nk = keysOut === undefined ? 0 : (keyColumns?.length ?? 0);
  // Key literals in key order: a row's key columns need not come in that order in the group.
  const keyBuf: string[] = new Array(n);
  let out = '';
  for (let i = 0; i < group.rowIdx.length; i++) {
    const ri = group.rowIdx[i]!;
    const row = rows[ri]!;
    let line = src.ordinal ? `${i + 1}\t` : '';
    for (let j = 0; j < n; j++) {
      let lit: string | null;
      const supplied = j === src.reservedAt && reserved !== undefined ? reserved[ri] : undefined;
      if (supplied !== undefined) lit = supplied;
      else {
        try {
          lit = enc[j]!(row[names[j]!]);
        } catch (err) {
          throw valueError(meta, names[j]!, offset + ri, err);
        }
      }
      if (nk > 0 && isKey[j]) keyBuf[j] = lit as string;
      line += j === 0 ? copyEscape(lit) : `\t${copyEscape(lit)}`;
    }
    out += `${line}\n`;
    if (nk > 0) {
      const at = keysOut!.length;
      for (let k = 0; k < nk; k++) keysOut!.push(keyBuf[keyColumns![k]!]!);
      src.onRowKeys?.(ri, keysOut!, at);
    }
    if (out.length >= PIECE) {
      yield out;
      out = '';
    }
  }
  if (out.length > 0) yield out;
  src.onEnd?.();
}

/**
 * Stream `src`'s rows into `COPY ... FROM STDIN`; a COPY error names the row it came from, and
 * the table's column (a staging table's columns c0, c1, ... are named back to the group's columns).
 */
export async function copyIn(client: DbClient, sql: string, src: CopySource): Promise<number> {
  const { group, offset } = src;
  const table = src.meta.displayName;
  // A refused value cancels the COPY (CopyFail, which the server logs): the server is told
  // only that, the caller gets the BulkError naming row and column (values stay out of logs).
  let refused: unknown;
  function* guarded(): Generator<string> {
    try {
      yield* copyLines(src);
    } catch (err) {
      refused = err;
      throw new Error('bulkmodel cancelled the COPY: a value was refused');
    }
  }
  const stream = client.query(copyFromStdin(sql));
  // The COPY stays the connection's active query until Postgres says ReadyForQuery: a backend
  // killed in between reports its error on this stream after pipeline() has let go of it, and
  // an unheard error event would crash the process. The connection's next query fails anyway.
  stream.on('error', () => {});
  try {
    await pipeline(Readable.from(guarded(), { objectMode: false }), stream);
    // Rows Postgres wrote: a BEFORE trigger returning NULL skips a row.
    return stream.rowCount;
  } catch (err) {
    if (refused !== undefined) throw refused;
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
 * The COPY write of an insert chunk (copyFrom's, and bulkCreate's unless it uses INSERT).
 * Without onConflict each group is COPYed straight into the table; keys for returning are drawn
 * first in the same transaction, so keys come back without a query and whole rows with one
 * SELECT by key. With onConflict the group is COPYed into a temporary staging table and moved
 * with INSERT ... SELECT ... ON CONFLICT (RETURNING when asked), in the same transaction.
 */
export function copyWrite(
  plan: InsertPlan,
): (
  client: DbClient,
  p: PreparedInsert,
  hooks: WriteHooks,
) => Promise<{ result: InsertChunkResult; ledger: unknown }> {
  const ret = plan.returning;
  const keysOnly = ret?.columns.every((c) => ret.pairKey.includes(c.name)) ?? false;
  return async (client, p, hooks) => {
    let count = 0;
    let echoed = true;
    const returned: (Row | undefined)[] | undefined = ret ? [] : undefined;
    const keys: (string | number)[][] = [];
    // COPY with returning: key literals of the rows written, by group (nk per row).
    const copied: { rowIdx: number[]; lits: string[] }[] = [];
    let reserved: (string | undefined)[] | undefined;
    // Keys reserved from Postgres are the stored text: with returning of keys only, the rows
    // come back without a query.
    const keysFromStream =
      ret !== undefined && keysOnly && p.keysFromPostgres && plan.onConflict === undefined;
    const keyAt = ret ? ret.columns.map((c) => ret.pairKey.indexOf(c.name)) : [];
    const keyRow = (ri: number, lits: readonly string[], at: number) => {
      returned![ri] = returnedRow(
        plan,
        keyAt.map((k) => lits[at + k]!),
      );
    };
    if (p.lacking.length > 0) {
      const drawn = await drawKeys(client, plan, p.lacking.length);
      reserved = new Array(p.rows.length);
      p.lacking.forEach((ri, n) => {
        reserved![ri] = drawn[n];
      });
    }
    for (let gi = 0; gi < p.rowGroups.length; gi++) {
      const g = p.rowGroups[gi]!;
      if (g.columns.length === 0) {
        // Rows with no columns (all defaults): COPY needs a column, INSERT does not.
        const text = buildInsert(plan.meta, g.columns, jsonSource(g.columns), {
          onConflict: plan.onConflict,
        });
        const r = await client.query({
          text,
          values: [JSON.stringify(g.rowIdx.map(() => []))],
        });
        count += r.rowCount ?? 0;
        continue;
      }
      const src: CopySource = {
        meta: plan.meta,
        rows: p.rows,
        group: g,
        offset: p.chunk.offset,
        ordinal: plan.onConflict !== undefined,
        reserved,
        reservedAt: plan.reserve ? g.columns.findIndex((c) => c.name === plan.reserve!.name) : -1,
        onEnd: gi === p.rowGroups.length - 1 ? hooks.busy : undefined,
      };
      if (plan.onConflict === undefined) {
        if (ret) {
          src.keyColumns = ret.pairKey.map((k) => g.columns.findIndex((c) => c.name === k));
          src.keysOut = [];
          copied.push({ rowIdx: g.rowIdx, lits: src.keysOut });
          // Returned rows are built as the rows stream (Node works while the server parses),
          // kept only if the COPY wrote every row (a trigger may skip some).
          if (keysFromStream) src.onRowKeys = keyRow;
        }
        const written = await copyIn(client, buildCopyIn(plan.meta, g.columns), src);
        count += written;
        if (written !== g.rowIdx.length) echoed = false; // some rows were skipped: ask the table
        continue;
      }
      const stage = `bulkmodel_stage_${gi}`;
      await client.query({ text: buildStageTable(stage, g.columns) });
      await copyIn(client, buildStageCopy(stage, g.columns), src);
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
      const nk = ret.pairKey.length;
      const ledger: InsertLedger = { count };
      if (copied.length === 1)
        Object.assign(ledger, ledgerKeys(copied[0]!.rowIdx, copied[0]!.lits, nk));
      else ledger.keys = copied.flatMap((c) => keysOfLedger(ledgerKeys(c.rowIdx, c.lits, nk)));
      // Unless keyRow filled `returned` as the rows streamed: keys the caller gave may be
      // spelled otherwise than stored (an uppercase uuid, '1.50'), other columns are asked for,
      // or a trigger skipped rows; read the rows back by key, as INSERT ... RETURNING would.
      if (!(keysFromStream && echoed)) {
        returned!.length = 0;
        const got = await selectByKeys(client, plan, keysOfLedger(ledger));
        got.forEach((r, i) => {
          returned![i] = r;
        });
      }
      return { result: { count, returned: returned! }, ledger };
    }
    const result: InsertChunkResult = returned ? { count, returned } : { count };
    return { result, ledger: insertLedger(plan, result, keys) };
  };
}

export function copyFromSteps(
  ctx: OpContext,
  plan: InsertPlan,
): ChunkSteps<PreparedInsert, InsertChunkResult> {
  return insertSteps(ctx, plan, 'CopyFrom', copyWrite(plan), true);
}
