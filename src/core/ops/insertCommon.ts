import { checkOnConflictShape, columnList } from '../checks.js';
import type { DbClient } from '../db.js';
import { type DecodeOptions, type Decoder, decoderFor, RAW_TEXT_TYPES } from '../decode.js';
import { BulkError } from '../errors.js';
import { type ColumnMeta, columnOf, type TableMeta, type ValueKind } from '../meta.js';
import type { InsertLikeOptions } from '../options.js';
import { type EncodedGroup, encodeRows, groupRows, type RowGroup, setOwn } from '../rows.js';
import { type Chunk, type ChunkSteps, type Engine, queryWithRetry } from '../runner.js';
import type { Row, Signals } from '../signals.js';
import type { OnConflict } from '../sql/insert.js';
import type { OpContext } from './context.js';

/** What bulkCreate and copyFrom decide once per call. */
export interface InsertPlan {
  meta: TableMeta;
  onConflict: OnConflict | undefined;
  /** Columns returned (pairing key included), or undefined when nothing is returned. */
  returning: { columns: ColumnMeta[]; pairKey: string[] } | undefined;
  /** The single pairing-key column whose default we evaluate up front for rows that lack it. */
  reserve: ColumnMeta | undefined;
  decoders: Decoder[];
  /** How chunks are written: COPY (copyFrom; bulkCreate without onConflict) or INSERT ... SELECT. */
  strategy: 'copy' | 'insert';
  /** Keep each returned row's text too (rowText), for a queue worker to pass on exactly. */
  keepText?: boolean;
}

/** Where a returned row keeps Postgres's text of its values, when the plan asks (not enumerable). */
export const ROW_TEXT: unique symbol = Symbol('bulkmodel.rowText');

/** The text of a returned row's values, in the plan's returning columns' order, if kept. */
export function rowText(row: Row): (string | null)[] | undefined {
  return (row as { [ROW_TEXT]?: (string | null)[] })[ROW_TEXT];
}

/** A returned row from Postgres's text of its values (the plan's returning columns). */
export function returnedRow(plan: InsertPlan, texts: (string | null)[]): Row {
  const cols = plan.returning!.columns;
  const obj: Row = {};
  for (let j = 0; j < cols.length; j++) setOwn(obj, cols[j]!.name, plan.decoders[j]!(texts[j]!));
  if (plan.keepText) Object.defineProperty(obj, ROW_TEXT, { value: texts });
  return obj;
}

export interface PreparedInsert {
  chunk: Chunk;
  /** Rows as written (after pre-signal listeners; for INSERT, with their reserved keys). */
  rows: Row[];
  /** Rows as the caller gave them (after pre-signal listeners), for post signals. */
  inputRows: Row[];
  /** INSERT: the rows encoded, by group. */
  groups: EncodedGroup[];
  /** COPY: the rows grouped, encoded as they stream. */
  rowGroups: RowGroup[];
  /** COPY with returning: rows whose key is drawn in the chunk's transaction. */
  lacking: number[];
  overriding: boolean;
  /** Every row's key came from Postgres (reserved): its text is the stored one. */
  keysFromPostgres: boolean;
}

/** What the ledger keeps of an insert chunk: the count and, with returning, each row's key. */
export interface InsertLedger {
  count: number;
  /** [row index within chunk, ...pairing key as text] */
  keys?: (string | number)[][];
  /**
   * The same, for an integer key, as runs of consecutive rows with consecutive keys (keys drawn
   * from a sequence): [first row index, first key, length]. A chunk's keys take a few bytes.
   */
  runs?: [number, string, number][];
}

/**
 * The ledger's keys of a chunk written by COPY: `lits` holds the key literals of rows
 * `rowIdx` (nk per row). A single integer key whose rows and values both ascend by one is kept
 * as runs; anything else as the full list.
 */
export function ledgerKeys(
  rowIdx: readonly number[],
  lits: readonly string[],
  nk: number,
): Pick<InsertLedger, 'keys' | 'runs'> {
  if (nk === 1) {
    const runs: [number, string, number][] = [];
    let ok = true;
    let prevRow = Number.NaN;
    let prevKey = Number.NaN;
    for (let i = 0; i < rowIdx.length && ok; i++) {
      const lit = lits[i]!;
      const k = Number(lit);
      // Only canonical integers: a text key '007' must come back as written.
      if (!Number.isSafeInteger(k) || String(k) !== lit) ok = false;
      const last = runs[runs.length - 1];
      if (last && rowIdx[i] === prevRow + 1 && k === prevKey + 1) last[2]++;
      else runs.push([rowIdx[i]!, lit, 1]);
      prevRow = rowIdx[i]!;
      prevKey = k;
    }
    if (ok) return { runs };
  }
  const keys: (string | number)[][] = new Array(rowIdx.length);
  for (let i = 0; i < rowIdx.length; i++)
    keys[i] = [rowIdx[i]!, ...lits.slice(i * nk, i * nk + nk)];
  return { keys };
}

/** The ledger's keys as [row index, ...key text], whichever form they were kept in. */
export function keysOfLedger(v: Partial<InsertLedger>): (string | number)[][] {
  const out: (string | number)[][] = [...(v.keys ?? [])];
  for (const [row, first, len] of v.runs ?? []) {
    const k0 = Number(first);
    for (let j = 0; j < len; j++) out.push([row + j, String(k0 + j)]);
  }
  return out;
}

export interface InsertChunkResult {
  count: number;
  /** Returned rows by row index within the chunk (holes for rows skipped by ON CONFLICT). */
  returned?: (Row | undefined)[];
}

/** Column names of an option (one name is a one-column list), each a column of the table. */
function checkNames(meta: TableMeta, names: unknown, what: string): string[] {
  // An empty list is a valid onConflict.update (update nothing), not a malformed one.
  const list =
    Array.isArray(names) && names.length === 0
      ? []
      : columnList(names ?? null, what, meta.displayName)!;
  for (const n of list) columnOf(meta, n);
  return list;
}

export function planInsert(
  meta: TableMeta,
  opts: InsertLikeOptions & { strategy?: 'auto' | 'copy' | 'insert' },
  decode: DecodeOptions,
): InsertPlan {
  const strategy = opts.strategy ?? 'auto';
  if (strategy !== 'auto' && strategy !== 'copy' && strategy !== 'insert') {
    throw new BulkError(
      'INVALID_OPTION',
      `strategy must be 'auto', 'copy' or 'insert', got ${String(strategy)}`,
      {
        table: meta.displayName,
      },
    );
  }
  let onConflict: OnConflict | undefined;
  checkOnConflictShape(opts.onConflict, meta.displayName);
  if (opts.onConflict !== undefined) {
    if (opts.onConflict === 'ignore') onConflict = 'ignore';
    else if (opts.onConflict && typeof opts.onConflict === 'object') {
      const target = checkNames(meta, opts.onConflict.target, 'onConflict.target');
      if (target.length === 0)
        throw new BulkError('INVALID_OPTION', `${meta.displayName}: onConflict.target is empty`, {
          table: meta.displayName,
        });
      const update = checkNames(meta, opts.onConflict.update ?? [], 'onConflict.update');
      for (const n of update) {
        const c = columnOf(meta, n);
        if (c.generated || c.identity === 'a') {
          throw new BulkError(
            'READ_ONLY_COLUMN',
            `${meta.displayName}.${n} is generated and cannot be updated on conflict`,
            { table: meta.displayName, column: n },
          );
        }
      }
      onConflict = { target, update };
    } else {
      throw new BulkError('INVALID_OPTION', `onConflict must be 'ignore' or { target, update }`, {
        table: meta.displayName,
      });
    }
  }
  const resolved = strategy === 'auto' ? (onConflict === undefined ? 'copy' : 'insert') : strategy;
  const ret = opts.returning ?? false;
  if (ret === false)
    return {
      meta,
      onConflict,
      returning: undefined,
      reserve: undefined,
      decoders: [],
      strategy: resolved,
    };
  const pairKey =
    opts.key !== undefined
      ? checkNames(meta, opts.key, 'key')
      : onConflict && onConflict !== 'ignore'
        ? onConflict.target
        : meta.primaryKey;
  if (pairKey.length === 0) {
    throw new BulkError(
      'NO_KEY',
      `${meta.displayName} has no primary key: pass \`key\` (unique columns the rows carry) to pair returned rows`,
      {
        table: meta.displayName,
      },
    );
  }
  const names = ret === true ? meta.columns.map((c) => c.name) : checkNames(meta, ret, 'returning');
  const columns = [...new Set([...pairKey, ...names])].map((n) => columnOf(meta, n));
  const only = pairKey.length === 1 ? columnOf(meta, pairKey[0]!) : undefined;
  return {
    meta,
    onConflict,
    returning: { columns, pairKey },
    reserve: only?.defaultExpr ? only : undefined,
    decoders: columns.map((c) => decoderFor(c, decode)),
    strategy: resolved,
  };
}

/**
 * Rows (by index) that lack a pairing key: their key is the key column's default, evaluated up
 * front (nextval, gen_random_uuid(), ...) so that rows and keys pair without RETURNING order.
 */
function lackingKeys(plan: InsertPlan, rows: Row[], offset: number): number[] {
  const col = plan.reserve;
  const pairKey = plan.returning?.pairKey ?? [];
  const lacking: number[] = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (r === null || typeof r !== 'object') continue; // groupRows reports it
    for (const k of pairKey) {
      const v = r[k];
      if (col?.identity === 'a' && k === col.name && v !== undefined) {
        // The reserved keys are written with OVERRIDING SYSTEM VALUE: a key of the caller's
        // own must not ride along with them.
        throw new BulkError(
          'READ_ONLY_COLUMN',
          `${plan.meta.displayName}.${k} is GENERATED ALWAYS AS IDENTITY and cannot be written (row ${offset + i})`,
          { table: plan.meta.displayName, column: k, row: offset + i },
        );
      }
      if (v === undefined || v === null) {
        if (!col) {
          throw new BulkError(
            'MISSING_KEY',
            `${plan.meta.displayName}: row ${offset + i} lacks key column ${JSON.stringify(k)}, needed to pair returned rows`,
            {
              table: plan.meta.displayName,
              column: k,
              row: offset + i,
            },
          );
        }
        lacking.push(i);
        break;
      }
    }
  }
  return col ? lacking : [];
}

/** Key types whose text never holds a comma: their keys travel as one comma-separated text. */
const COMMA_FREE: ReadonlySet<ValueKind> = new Set(['int2', 'int4', 'int8', 'numeric', 'uuid']);

/** Evaluate the reserve column's default `n` times: the keys of rows that lack one, as text. */
export async function drawKeys(client: DbClient, plan: InsertPlan, n: number): Promise<string[]> {
  // One row holding every key: parsing one value beats parsing n result rows. Integers and
  // uuids as one comma-separated text (half the time of a JSON array, on the server and here).
  const col = plan.reserve!;
  const plain = COMMA_FREE.has(col.kind);
  const r = await client.query({
    text: plain
      ? `SELECT string_agg((${col.defaultExpr})::text, ',') FROM generate_series(1, $1::int)`
      : `SELECT json_agg((${col.defaultExpr})::text)::text FROM generate_series(1, $1::int)`,
    values: [n],
    rowMode: 'array',
    types: RAW_TEXT_TYPES,
  });
  const text = (r.rows as (string | null)[][])[0]![0] ?? '';
  const keys = plain
    ? text === ''
      ? []
      : text.split(',')
    : (JSON.parse(text || '[]') as string[]);
  if (keys.length !== n) throw new Error(`drew ${keys.length} keys, expected ${n}`);
  return keys;
}

/**
 * Before a chunk's transaction: the pre signal, the checks, and for INSERT the encoding (and
 * the reserved keys, drawn now on a connection of their own). A COPY chunk is only grouped
 * here: its values are encoded as they stream, and its keys are drawn in its transaction.
 */
export async function prepareInsert(
  engine: Engine,
  signals: Signals | null,
  signal: 'preBulkCreate' | 'preCopyFrom',
  plan: InsertPlan,
  chunk: Chunk,
  operationId: string,
  batchSize: number,
  client?: DbClient,
): Promise<PreparedInsert> {
  let rows = chunk.rows;
  if (signals) {
    const ev = {
      table: plan.meta.displayName,
      operationId,
      chunkIndex: chunk.index,
      batchSize,
      rows,
    };
    await signals.emitPre(signal, ev);
    rows = ev.rows;
  }
  const lacking = plan.returning ? lackingKeys(plan, rows, chunk.offset) : [];
  const overriding = lacking.length > 0 && plan.reserve?.identity === 'a';
  const keysFromPostgres = plan.returning !== undefined && lacking.length === rows.length;
  const allowIdentity = overriding ? new Set([plan.reserve!.name]) : undefined;
  const base = { chunk, inputRows: rows, overriding, keysFromPostgres };
  if (plan.strategy === 'copy') {
    const supplied = lacking.length > 0 ? plan.reserve!.name : undefined;
    const rowGroups = groupRows(plan.meta, rows, chunk.offset, { allowIdentity, supplied });
    return { ...base, rows, groups: [], rowGroups, lacking };
  }
  let toWrite = rows;
  if (lacking.length > 0) {
    // Inside an operation-wide transaction, on its own connection: a second one could wait forever.
    const draw = (c: DbClient) => drawKeys(c, plan, lacking.length);
    const keys = client ? await draw(client) : await queryWithRetry(engine, draw);
    toWrite = rows.slice();
    const name = plan.reserve!.name;
    lacking.forEach((i, n) => {
      toWrite[i] = { ...rows[i], [name]: keys[n] };
    });
  }
  const groups = encodeRows(plan.meta, toWrite, chunk.offset, { allowIdentity });
  return { ...base, rows: toWrite, groups, rowGroups: [], lacking: [] };
}

/** Turn RETURNING rows ([ordinal, ...text]) of one group into decoded rows by chunk row index. */
export function collectReturned(
  plan: InsertPlan,
  group: Pick<EncodedGroup, 'rowIdx'>,
  result: unknown[],
  into: (Row | undefined)[],
): void {
  for (const r of result as (string | null)[][]) {
    into[group.rowIdx[Number(r[0]) - 1]!] = returnedRow(plan, r.slice(1));
  }
}

/** The ledger value for a chunk: its count and the key text of each returned row. */
export function insertLedger(
  plan: InsertPlan,
  res: InsertChunkResult,
  rawKeys: (string | number)[][],
): InsertLedger {
  return plan.returning ? { count: res.count, keys: rawKeys } : { count: res.count };
}

/** Key texts of returned rows, read from the raw RETURNING arrays, for the ledger. */
export function rawKeysOf(
  plan: InsertPlan,
  group: Pick<EncodedGroup, 'rowIdx'>,
  result: unknown[],
  into: (string | number)[][],
): void {
  const p = plan.returning!;
  const idx = p.pairKey.map((k) => p.columns.findIndex((c) => c.name === k));
  for (const r of result as unknown[][]) {
    into.push([group.rowIdx[Number(r[0]) - 1]!, ...idx.map((j) => r[j + 1] as string)]);
  }
}

/**
 * Read rows back by key: `keys` are [row index within chunk, ...key text]. Used to recover the
 * result of a chunk that had committed before, and by COPY, which has no RETURNING.
 */
export async function selectByKeys(
  client: DbClient,
  plan: InsertPlan,
  keys: (string | number)[][],
): Promise<(Row | undefined)[]> {
  const p = plan.returning!;
  const out: (Row | undefined)[] = [];
  if (keys.length === 0) return out;
  const match = p.pairKey
    .map((k, j) => {
      const col = columnOf(plan.meta, k);
      // As stored: keys echoed from input (COPY) may carry more digits than numeric(6,1) keeps.
      const asStored = col.typeSql === col.castSql ? '' : `::${col.typeSql}`;
      return `t.${col.sqlName} = (x.e->>${j + 1})::${col.castSql}${asStored}`;
    })
    .join(' AND ');
  const cols = p.columns.map((c) => `, t.${c.sqlName}`).join('');
  const r = await client.query({
    text: `SELECT (x.e->>0)::int${cols} FROM jsonb_array_elements($1::jsonb) AS x(e) JOIN ${plan.meta.scan} AS t ON ${match}`,
    values: [JSON.stringify(keys.map((k) => [String(k[0]), ...k.slice(1)]))],
    rowMode: 'array',
    types: RAW_TEXT_TYPES,
  });
  for (const row of r.rows as (string | null)[][])
    out[Number(row[0])] = returnedRow(plan, row.slice(1));
  return out;
}

/** Recover a committed chunk's result from its ledger value. */
export async function recoverInsert(
  client: DbClient,
  plan: InsertPlan,
  value: unknown,
): Promise<InsertChunkResult> {
  const v = (value ?? {}) as Partial<InsertLedger>;
  const count = typeof v.count === 'number' ? v.count : 0;
  if (!plan.returning) return { count };
  return { count, returned: await selectByKeys(client, plan, keysOfLedger(v)) };
}

/**
 * The chunk steps of an insert, bulkCreate's or copyFrom's: they differ only in their signals'
 * names and in how rows are written (`signalsBusy` when the write holds the signals' turn).
 */
export function insertSteps(
  ctx: OpContext,
  plan: InsertPlan,
  signal: 'BulkCreate' | 'CopyFrom',
  write: ChunkSteps<PreparedInsert, InsertChunkResult>['write'],
  signalsBusy: boolean,
): ChunkSteps<PreparedInsert, InsertChunkResult> {
  return {
    prepare: (chunk, client) =>
      prepareInsert(
        ctx.engine,
        ctx.signals,
        `pre${signal}` as const,
        plan,
        chunk,
        ctx.op.operationId,
        ctx.op.batchSize,
        client,
      ),
    write,
    signalsBusy,
    recover: (client, _p, value) => recoverInsert(client, plan, value),
    async after(p, r) {
      await ctx.signals?.emitPost(`post${signal}` as const, {
        table: plan.meta.displayName,
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
