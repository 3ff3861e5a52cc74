import type { Job } from 'bullmq';
import { parse as parseCsv } from 'csv-parse/sync';
import { kindsFingerprint } from '../core/catalog.js';
import { executeChunk, executeCopyChunk } from '../core/chunkJob.js';
import type { BulkClient } from '../core/client.js';
import { isCsvNull } from '../core/csvDialect.js';
import { EXACT } from '../core/decode.js';
import { BulkError, storedError } from '../core/errors.js';
import { columnOf, type TableMeta } from '../core/meta.js';
import { fromTextField } from '../core/ndjson.js';
import { checkCopyGroups, textOf } from '../core/ops/copyText.js';
import { CopyTextParser } from '../core/ops/copyTo.js';
import { QUEUE_DEFAULT_BATCH_SIZE } from '../core/options.js';
import { setOwn } from '../core/rows.js';
import type { Row } from '../core/signals.js';
import { publishSnapshot } from '../queue/catalog.js';
import { type BulkEventName, publishEvent } from '../queue/events.js';
import { jobIds } from '../queue/keys.js';
import {
  type ChunkJobReturn,
  type ChunkPayload,
  type CopyChunkPayload,
  chunkDataDigest,
  chunkReturns,
  type DataChunkPayload,
  type OperationJobReturn,
  type OperationPayload,
  type SealPayload,
} from '../queue/payload.js';
import type { QueueState } from '../queue/state.js';
import { decodeRows, decodeValue, encodeValue } from '../queue/values.js';
import { type ExportTarget, exportToFile } from './export.js';

export interface ProcessorContext {
  db: BulkClient;
  /** The state beside the job's queue. */
  state: QueueState;
  /** Where copyTo jobs write; undefined refuses them (EXPORT_DISABLED). */
  exportTarget: ExportTarget | undefined;
  eventsMaxLen: number;
  /** Keep row values in recorded errors (the operator's opt-in, for debugging). */
  showValues: boolean;
  /** Deepest nesting of a value in a job (the worker's --max-nesting). */
  maxNesting: number;
  /** Most bytes of a job's data, and of a version 3 chunk's data (--max-payload-bytes). */
  maxPayloadBytes: number;
}

/** What the worker checked of a job before running it. */
export interface Checked {
  /** The allowed table's name as the catalog spells it. */
  table: string;
  /** sha256 of the job's data as stored (binds a chunk's ledger slot to its content). */
  fingerprint: string | undefined;
  /** The job's id (its place: recorded while it runs). */
  jobId: string;
}

/**
 * Decode a filter or `set` of a job. An `absent` tag anywhere in it is refused: decoded, it
 * would be dropped like an undefined property, silently widening the filter (`{ id: absent }`
 * matching every row) or leaving a column out of `set`.
 */
function decodeObject(
  o: Record<string, unknown> | undefined,
  what: string,
  maxDepth: number,
): Row | undefined {
  if (o === undefined) return undefined;
  const stack: [unknown, string][] = [[o, what]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if ((v as { $t?: unknown }).$t === 'absent')
      throw new BulkError(
        'INVALID_OPTION',
        `${path} is absent: a filter or set value must be given (null means NULL)`,
      );
    if (Array.isArray(v)) for (let i = 0; i < v.length; i++) stack.push([v[i], `${path}[${i}]`]);
    else
      for (const [k, x] of Object.entries(v))
        stack.push([x, k === 'v' || k === '$t' ? path : `${path}.${k}`]);
  }
  return decodeValue({ $t: 'object', v: o }, what, 0, false, maxDepth) as Row;
}

async function publish(ctx: ProcessorContext, name: BulkEventName, event: unknown): Promise<void> {
  await publishEvent(ctx.state, name, event, ctx.eventsMaxLen);
}

/**
 * Count a chunk once (a replay does not count twice), move the operation to running unless it
 * has ended, and announce the counters.
 */
async function markChunkDone(
  ctx: ProcessorContext,
  p: ChunkPayload | CopyChunkPayload,
  count: number,
  jobId: string,
): Promise<void> {
  // The chunk index is within the worker's limit (checkChunk): the bit offset is bounded. The
  // operation is indexed (once), so that its records are pruned even when no producer
  // registered it.
  const c = await ctx.state.chunkDone(p.operationId, p.chunk.index, count, jobId);
  await publish(ctx, 'progress', {
    operationId: p.operationId,
    table: p.table,
    kind: p.kind,
    ...c,
  });
}

/** Record why an operation failed (first failure wins) and announce it. */
export async function failOperation(
  ctx: ProcessorContext,
  operationId: string,
  table: string,
  kind: string,
  err: BulkError,
): Promise<void> {
  // Row values (Postgres's detail, the value refused) stay out unless the operator opted in.
  const moved = await ctx.state.fail(
    operationId,
    JSON.stringify(err.toJSON({ values: ctx.showValues })),
  );
  // The operation has ended (now, or before: a chunk refused as CANCELLED): its chunks that
  // have not run are refused, so their data (version 3) is no longer needed.
  await ctx.state.dropChunkData(operationId).catch(() => {});
  if (moved) {
    await publish(ctx, 'failed', {
      operationId,
      table,
      kind,
      state: 'failed',
      error: { code: err.code, message: err.toJSON().message },
    });
  }
}

/**
 * Refuse to run a job of an operation that was cancelled or has already failed (bad input in
 * another chunk): its remaining chunks are skipped rather than written, as in direct mode. A
 * chunk of an operation a producer registered must also be one of that operation's own: a
 * child of its parent job, and within its chunks once it is sealed. A chunk that is not fails
 * with CHUNK_CONFLICT before anything is written (it would otherwise be counted in the
 * operation's result).
 */
export async function assertLive(
  ctx: ProcessorContext,
  operationId: string,
  table: string,
  chunk?: { index: number; parentId: string | undefined },
): Promise<void> {
  const rec = await ctx.state.record(operationId);
  const state = rec?.state;
  if (state === 'cancelled')
    throw new BulkError('CANCELLED', `operation ${operationId} was cancelled`, { table });
  if (state === 'failed')
    throw new BulkError('CANCELLED', `operation ${operationId} failed earlier; chunk skipped`, {
      table,
    });
  if (!chunk || rec?.identity === undefined) return;
  if (chunk.parentId !== jobIds.parent(operationId))
    throw new BulkError(
      'CHUNK_CONFLICT',
      `operation ${operationId}: chunk ${chunk.index} is not a child of the operation's job: refused, not counted`,
      { table },
    );
  if (rec.sealed && chunk.index >= (rec.totalChunks ?? 0))
    throw new BulkError(
      'CHUNK_CONFLICT',
      `operation ${operationId}: chunk ${chunk.index} is beyond its ${rec.totalChunks ?? 0} chunks: refused, not counted`,
      { table },
    );
}

const SIGNALS_OF = {
  bulkCreate: ['preBulkCreate', 'postBulkCreate'],
  copyFrom: ['preCopyFrom', 'postCopyFrom'],
  updateFields: ['preUpdateFields', 'postUpdateFields'],
} as const;

/** A 'chunk' job: write its rows with the core, exactly once. */
export async function processChunk(
  ctx: ProcessorContext,
  job: ChunkPayload | CopyChunkPayload | DataChunkPayload,
  checked: Checked,
): Promise<ChunkJobReturn> {
  // Version 3: the data beside the job, read and checked, makes it a version 2 chunk.
  const p = job.v === 3 ? await readChunkData(ctx, job) : job;
  // json values stay JSON text, written as they came without being parsed into objects, unless
  // a listener in this process sees the rows (and may read or change them as objects).
  const [pre, post] = SIGNALS_OF[p.kind];
  const seen =
    p.options.signals !== false &&
    (ctx.db.signals.listenerCount(pre) > 0 || ctx.db.signals.listenerCount(post) > 0);
  let rows: Row[];
  if (p.v === 2) {
    const meta = await ctx.db.meta(checked.table);
    // The data is checked as Postgres will read it before anything else (an event, a listener).
    checkCopyGroups(p.groups, p.format, meta.displayName);
    checkCatalog(ctx, meta, p);
    if (seen && p.options.onError !== undefined)
      throw new BulkError(
        'INVALID_PAYLOAD',
        `${meta.displayName}: onError 'skip' leaves records out in COPY, which a worker with in-process signal listeners does not use`,
        { table: meta.displayName },
      );
    // COPY data goes into COPY as it is: no value decoded, unless a listener here must see rows.
    if (!seen) {
      try {
        return await processCopyData(ctx, p, checked, meta);
      } catch (err) {
        // The table changed under the worker's catalog: read it again and publish it, so that
        // producers encode the next operations for the types the table has now.
        if (err instanceof BulkError && err.code === 'CATALOG_MISMATCH') {
          const fresh = await ctx.db.meta(checked.table, true).catch(() => undefined);
          if (fresh) void publishSnapshot(ctx.state, [p.table], fresh).catch(() => {});
        }
        throw err;
      }
    }
    rows = decodeCopyGroups(meta, p);
  } else {
    rows = decodeRows(
      p.columns,
      p.rows as unknown[][],
      p.chunk.offset,
      !seen,
      p.jsonColumns,
      ctx.maxNesting,
    );
  }
  if (p.options.onError !== undefined)
    throw new BulkError(
      'INVALID_PAYLOAD',
      `${checked.table}: onError 'skip' is for chunks of COPY data (payload versions 2 and 3)`,
      { table: checked.table },
    );
  const { returning, onConflict, key, fields, signals, batchSize } = p.options;
  // The table as the allowlist resolved it (schema-qualified, quoted): no search_path again.
  const res = await executeChunk(ctx.db, p.kind, checked.table, rows, p.chunk, {
    operationId: p.operationId,
    ...(checked.fingerprint ? { fingerprint: checked.fingerprint } : {}),
    ...(returning !== undefined ? { returning } : {}),
    ...conflictOption(onConflict),
    ...(key ? { key } : {}),
    ...(fields ? { fields } : {}),
    ...(signals === false ? { signals: false } : {}),
    ...(batchSize ? { batchSize } : {}),
    ...(returning ? { rowText: true } : {}),
  });
  await markChunkDone(ctx, p, res.count, checked.jobId);
  const out: ChunkJobReturn = { index: p.chunk.index, count: res.count };
  // Rows read back: Postgres's text of each value with its column's type, decoded by the
  // producer with its own decode options (exact, whatever the worker's are).
  if (res.text) out.returned = res.text;
  if (res.missing && res.missing.length > 0) out.missing = encodeValue(res.missing, 'missing');
  return out;
}

/**
 * A version 3 chunk's data, read from beside the queue: at most the worker's payload limit (a
 * larger one is not read), exactly the length and sha256 its job gives, then cut into its
 * groups. The chunk becomes the version 2 chunk it stands for, its data as bytes.
 */
async function readChunkData(
  ctx: ProcessorContext,
  p: DataChunkPayload,
): Promise<CopyChunkPayload> {
  const table = p.table;
  const where = `${table}: chunk ${p.chunk.index} of operation ${p.operationId}`;
  const bad = (message: string) =>
    new BulkError('INVALID_PAYLOAD', `${where}: ${message}: nothing written`, { table });
  const got = await ctx.state.chunkData(p.operationId, p.chunk.index, ctx.maxPayloadBytes);
  if (got === null) {
    // An operation's data goes when it ends: a chunk of a failed or cancelled one says so.
    await assertLive(ctx, p.operationId, table);
    throw bad(
      'its data is not in the queue (it goes when its job completes or its operation ends, and with its record when that is pruned)',
    );
  }
  if (!Buffer.isBuffer(got))
    throw new BulkError(
      'PAYLOAD_TOO_LARGE',
      `${where}: its data is ${got.bytes} bytes, over this worker's limit of ${ctx.maxPayloadBytes} (--max-payload-bytes): not read`,
      { table },
    );
  if (got.length !== p.data.bytes)
    throw bad(`its data is ${got.length} bytes, and the job says ${p.data.bytes}`);
  if (chunkDataDigest(got) !== p.data.sha256)
    throw bad('its data does not have the sha256 the job gives (it was written for another job)');
  let at = 0;
  const groups = p.groups.map((g) => {
    const data = got.subarray(at, at + g.bytes);
    at += g.bytes;
    return {
      columns: g.columns,
      rows: g.rows,
      data,
      ...(g.rowIdx ? { rowIdx: g.rowIdx } : {}),
    };
  });
  const { v: _v, data: _data, groups: _groups, ...rest } = p;
  return { ...rest, v: 2, groups };
}

/**
 * A v2 chunk encoded as COPY text must have been encoded for the column kinds this worker's
 * catalog has: otherwise (a column's type changed since the producer's snapshot) its text may
 * mean something else now. The worker publishes its current snapshot, so that producers
 * encode the next chunks right, and refuses this one.
 */
function checkCatalog(ctx: ProcessorContext, meta: TableMeta, p: CopyChunkPayload): void {
  if (p.format !== 'text' || p.catalog === undefined) return;
  const cols = p.groups.flatMap((g) => g.columns.map((n) => columnOf(meta, n)));
  if (kindsFingerprint(cols) === p.catalog) return;
  void publishSnapshot(ctx.state, [p.table], meta).catch(() => {});
  throw new BulkError(
    'CATALOG_MISMATCH',
    `${meta.displayName}: the chunk was encoded for column types the table no longer has (its catalog changed since the producer read it): enqueue the operation again`,
    { table: meta.displayName },
  );
}

/**
 * The rows of a v2 chunk (checked by checkCopyGroups), for listeners in this process: every
 * value in its exact form. A record whose fields do not match its group's columns is refused,
 * as COPY would refuse it.
 */
function decodeCopyGroups(meta: TableMeta, p: CopyChunkPayload): Row[] {
  const out: Row[] = [];
  let next = 0;
  const bad = (message: string) =>
    new BulkError('INVALID_PAYLOAD', `${meta.displayName}: ${message}`, {
      table: meta.displayName,
    });
  for (const g of p.groups) {
    const cols = g.columns.map((n) => columnOf(meta, n));
    let rows: Row[];
    if (p.format === 'text') {
      const parser = new CopyTextParser(cols, EXACT);
      rows = [];
      try {
        parser.push(textOf(g.data), rows);
        parser.end();
      } catch (err) {
        throw bad(`COPY data does not match its ${cols.length} columns: ${(err as Error).message}`);
      }
    } else {
      let records: (string | null)[][];
      try {
        records = parseCsv(textOf(g.data), {
          delimiter: p.csv?.delimiter ?? ',',
          cast: (value, c) => (isCsvNull(p.csv, value, c.quoting) ? null : value) as string,
          relax_column_count: true,
        }) as (string | null)[][];
      } catch (err) {
        throw bad(`CSV data cannot be read: ${(err as Error).message}`);
      }
      const wrong = records.findIndex((rec) => rec.length !== cols.length);
      if (wrong >= 0)
        throw bad(
          `CSV record ${wrong + 1} has ${records[wrong]!.length} fields for ${cols.length} columns`,
        );
      rows = records.map((rec) => {
        const row: Row = {};
        cols.forEach((c, j) => {
          setOwn(row, c.name, fromTextField(c, rec[j] ?? null));
        });
        return row;
      });
    }
    if (rows.length !== g.rows)
      throw bad(`a COPY group declares ${g.rows} rows and holds ${rows.length}`);
    rows.forEach((r, i) => {
      out[g.rowIdx ? g.rowIdx[i]! : next + i] = r;
    });
    next += rows.length;
  }
  return out;
}

/** Write a v2 chunk's COPY data as it is; signals go out as events with counts. */
async function processCopyData(
  ctx: ProcessorContext,
  p: CopyChunkPayload,
  checked: Checked,
  meta: TableMeta,
): Promise<ChunkJobReturn> {
  const [pre, post] = SIGNALS_OF[p.kind];
  const signals = p.options.signals !== false;
  const rowsCount = p.groups.reduce((n, g) => n + g.rows, 0);
  const base = {
    table: meta.displayName,
    operationId: p.operationId,
    chunkIndex: p.chunk.index,
    batchSize: p.options.batchSize ?? QUEUE_DEFAULT_BATCH_SIZE,
    rowsCount,
  };
  if (signals) await publish(ctx, pre, base);
  const { onConflict } = p.options;
  const res = await executeCopyChunk(ctx.db, checked.table, p.groups, p.chunk, {
    operationId: p.operationId,
    fingerprint: checked.fingerprint,
    format: p.format,
    ...(p.csv ? { csv: p.csv } : {}),
    firstLine: p.chunk.line,
    // COPY text was encoded for the types the catalog fingerprint names (CSV from a file is
    // text whatever the types: Postgres reads it as psql's \copy would).
    verifyTypes: p.format === 'text' && p.catalog !== undefined,
    groupsChecked: true, // by processChunk, before anything else
    ...conflictOption(onConflict),
    ...(p.options.onError
      ? { onError: p.options.onError, maxErrors: p.options.maxErrors ?? 0 }
      : {}),
  });
  await markChunkDone(ctx, p, res.count, checked.jobId);
  if (signals) await publish(ctx, post, { ...base, count: res.count });
  return {
    index: p.chunk.index,
    count: res.count,
    ...(res.rejected ? { rejected: res.rejected } : {}),
  };
}

/** A payload's onConflict as the core takes it (`update` defaults to no columns). */
function conflictOption(c: ChunkPayload['options']['onConflict']): {
  onConflict?: 'ignore' | { target: string[]; update: string[] };
} {
  if (c === undefined) return {};
  return { onConflict: c === 'ignore' ? 'ignore' : { target: c.target, update: c.update ?? [] } };
}

/** A 'seal' job runs once enqueueing ended; if it runs while the producer never sealed, the producer died. */
export async function processSeal(ctx: ProcessorContext, p: SealPayload): Promise<{ seal: true }> {
  const rec = await ctx.state.record(p.operationId);
  if (!rec?.sealed) {
    // A producer that gave up on it recorded why (PAYLOAD_TOO_LARGE, its input's error): that
    // is the operation's error; without one, the producer died.
    if (rec?.error) throw storedError(rec.error, undefined, p.operationId);
    throw new BulkError(
      'ENQUEUE_STOPPED',
      `operation ${p.operationId}: the producer stopped before it finished enqueueing`,
    );
  }
  return { seal: true };
}

/**
 * Mark an operation completed and announce it. Called once BullMQ has stored the parent job as
 * completed (the worker's 'completed' event), so a producer woken by the event finds the result.
 */
export async function finishOperation(
  ctx: ProcessorContext,
  p: OperationPayload,
  count: number,
): Promise<void> {
  const moved = await ctx.state.finish(p.operationId, 'completed', { rowsDone: count });
  // Every chunk has committed: their data (version 3) is no longer needed.
  await ctx.state.dropChunkData(p.operationId).catch(() => {});
  // cancelled meanwhile: it stays cancelled
  if (!moved) return;
  await publish(ctx, 'completed', {
    operationId: p.operationId,
    table: p.table,
    kind: p.kind,
    state: 'completed',
    count,
  });
}

/**
 * A queued copyTo: stream the table into a new file of the export directory. The file's name
 * and count are kept on the operation's record, so a run of the same job after the file was
 * made (its worker died before the job completed) finds it done instead of FILE_EXISTS.
 */
async function runCopyTo(
  ctx: ProcessorContext,
  p: OperationPayload,
  checked: Checked,
): Promise<OperationJobReturn> {
  const spec = p.copyTo!;
  return exportToFile({
    db: ctx.db,
    target: ctx.exportTarget,
    table: checked.table,
    spec,
    where: decodeObject(spec.where, 'where', ctx.maxNesting),
    signals: p.options.signals !== false,
    remember: (identity, count) => ctx.state.setExport(p.operationId, identity, count),
    recall: (identity) => ctx.state.getExport(p.operationId, identity),
  });
}

/** An 'operation' job: the parent of a chunked operation (all chunks done), or a whole update/copyTo. */
export async function processOperation(
  ctx: ProcessorContext,
  p: OperationPayload,
  job: Job,
  checked: Checked,
): Promise<OperationJobReturn> {
  if (p.kind === 'update') {
    const u = p.update!;
    const set = decodeObject(u.set, 'set', ctx.maxNesting)!;
    // The core refuses an empty or undefined filter: only `all: true` updates every row.
    const args =
      u.all === true
        ? { all: true as const, set }
        : { where: decodeObject(u.where, 'where', ctx.maxNesting)!, set };
    // Every run of the job (a retry, a stalled job handed to another worker) uses the operation's
    // id: batches that committed are recovered from the ledger with their counts, and the
    // key scan resumes after the last of them, so each row is updated once and counted once.
    const r = await ctx.db.model(checked.table).update(args, {
      operationId: p.operationId,
      ...(checked.fingerprint ? { fingerprint: checked.fingerprint } : {}),
      batchSize: p.options.batchSize ?? QUEUE_DEFAULT_BATCH_SIZE,
      signals: p.options.signals !== false,
    });
    return { count: r.count };
  }
  if (p.kind === 'copyTo') return runCopyTo(ctx, p, checked);
  // The counters are exact (each chunk counted once): no need to load every chunk's result,
  // which holds its returned rows. Only updateFields gathers its chunks' missing keys.
  const rec = await ctx.state.record(p.operationId);
  const chunksDone = rec?.chunksDone ?? 0;
  // Every chunk the producer enqueued was counted once, and nothing else was: a count that
  // disagrees means chunks that were not the operation's own, and the result cannot be trusted.
  if (rec?.identity !== undefined && chunksDone !== (rec.totalChunks ?? -1))
    throw new BulkError(
      'CHUNK_CONFLICT',
      `operation ${p.operationId}: ${chunksDone} chunks were counted, ${rec.totalChunks ?? 'none'} were enqueued`,
      { table: p.table },
    );
  const out: OperationJobReturn = { count: rec?.rowsDone ?? 0, chunks: chunksDone };
  if (p.kind === 'updateFields') {
    const parts = await chunkReturns(job);
    out.missing = parts.flatMap((c) => (c.missing as unknown[] | undefined) ?? []);
  }
  if (p.options.onError === 'skip') {
    const rejected = (await chunkReturns(job)).flatMap((c) => c.rejected ?? []);
    if (rejected.length > 0) out.rejected = rejected;
  }
  return out;
}
