import { mkdir, open, realpath, rename, rm } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { executeChunk } from '../core/chunkJob.js';
import type { BulkClient } from '../core/client.js';
import { BulkError } from '../core/errors.js';
import { QUEUE_DEFAULT_BATCH_SIZE } from '../core/options.js';
import type { Row } from '../core/signals.js';
import { type BulkEventName, publishEvent } from '../producer/events.js';
import type { ChunkJobReturn, OperationJobReturn } from '../producer/operation.js';
import type { ChunkPayload, OperationPayload, SealPayload } from '../producer/payload.js';
import { moveState, type QueueKeys } from '../producer/redis.js';
import { decodeRows, decodeValue, encodeRows, encodeValue } from '../producer/values.js';

export interface ProcessorContext {
  db: BulkClient;
  redis: Redis;
  keys: QueueKeys;
  exportDir: string;
  eventsMaxLen: number;
}

function decodeObject(o: Record<string, unknown> | undefined, what: string): Row | undefined {
  if (o === undefined) return undefined;
  return decodeValue({ $t: 'object', v: o }, what) as Row;
}

async function publish(ctx: ProcessorContext, name: BulkEventName, event: unknown): Promise<void> {
  await publishEvent(ctx.redis, ctx.keys, name, event, ctx.eventsMaxLen);
}

/** Count a chunk once (a replay does not count twice) and publish progress. */
/**
 * Count a chunk once (a bit per chunk: a replay does not count twice), move the operation to
 * running unless it has ended, and read the counters: one round trip.
 */
const MARK_CHUNK_DONE = `
if redis.call('setbit', KEYS[2], ARGV[1], 1) == 0 then
  redis.call('hincrby', KEYS[1], 'rowsDone', ARGV[2])
  redis.call('hincrby', KEYS[1], 'chunksDone', 1)
  local s = redis.call('hget', KEYS[1], 'state')
  if s ~= 'completed' and s ~= 'failed' and s ~= 'cancelled' then redis.call('hset', KEYS[1], 'state', 'running') end
end
return redis.call('hmget', KEYS[1], 'rowsDone', 'chunksDone', 'totalRows', 'totalChunks')`;

async function markChunkDone(ctx: ProcessorContext, p: ChunkPayload, count: number): Promise<void> {
  const [rowsDone, chunksDone, totalRows, totalChunks] = (await ctx.redis.eval(
    MARK_CHUNK_DONE,
    2,
    ctx.keys.op(p.operationId),
    ctx.keys.opDone(p.operationId),
    String(p.chunk.index),
    String(count),
  )) as (string | null)[];
  const ev: Record<string, unknown> = {
    operationId: p.operationId,
    table: p.table,
    kind: p.kind,
    rowsDone: Number(rowsDone ?? 0),
    chunksDone: Number(chunksDone ?? 0),
  };
  if (totalRows) ev.totalRows = Number(totalRows);
  if (totalChunks) ev.totalChunks = Number(totalChunks);
  await publish(ctx, 'progress', ev);
}

/** Record why an operation failed (first failure wins) and announce it. */
export async function failOperation(
  ctx: ProcessorContext,
  operationId: string,
  table: string,
  kind: string,
  err: BulkError,
): Promise<void> {
  const key = ctx.keys.op(operationId);
  const set = await ctx.redis.hsetnx(key, 'error', JSON.stringify(err.toJSON()));
  const moved = await moveState(ctx.redis, key, {
    state: 'failed',
    finishedAt: String(Date.now()),
  });
  if (set && moved)
    await publish(ctx, 'failed', {
      operationId,
      table,
      kind,
      state: 'failed',
      error: { code: err.code, message: err.message },
    });
}

/**
 * Refuse to run a job of an operation that was cancelled or has already failed (bad input in
 * another chunk): its remaining chunks are skipped rather than written, as in direct mode.
 */
export async function assertLive(
  ctx: ProcessorContext,
  operationId: string,
  table: string,
): Promise<void> {
  const state = await ctx.redis.hget(ctx.keys.op(operationId), 'state');
  if (state === 'cancelled')
    throw new BulkError('CANCELLED', `operation ${operationId} was cancelled`, { table });
  if (state === 'failed')
    throw new BulkError('CANCELLED', `operation ${operationId} failed earlier; chunk skipped`, {
      table,
    });
}

const SIGNALS_OF = {
  bulkCreate: ['preBulkCreate', 'postBulkCreate'],
  copyFrom: ['preCopyFrom', 'postCopyFrom'],
  updateFields: ['preUpdateFields', 'postUpdateFields'],
} as const;

/** A 'chunk' job: decode the rows and write them with the core, exactly once. */
export async function processChunk(
  ctx: ProcessorContext,
  p: ChunkPayload,
): Promise<ChunkJobReturn> {
  // json values stay JSON text, written as they came without being parsed into objects, unless
  // a listener in this process sees the rows (and may read or change them as objects).
  const [pre, post] = SIGNALS_OF[p.kind];
  const seen =
    p.options.signals !== false &&
    (ctx.db.signals.listenerCount(pre) > 0 || ctx.db.signals.listenerCount(post) > 0);
  const rows = decodeRows(p.columns, p.rows as unknown[][], p.chunk.offset, !seen, p.jsonColumns);
  const { returning, onConflict, key, fields, signals, batchSize } = p.options;
  const res = await executeChunk(ctx.db, p.kind, p.table, rows, p.chunk, {
    operationId: p.operationId,
    ...(returning !== undefined ? { returning } : {}),
    ...(onConflict !== undefined
      ? {
          onConflict:
            onConflict === 'ignore'
              ? 'ignore'
              : { target: onConflict.target, update: onConflict.update ?? [] },
        }
      : {}),
    ...(key ? { key } : {}),
    ...(fields ? { fields } : {}),
    ...(signals === false ? { signals: false } : {}),
    ...(batchSize ? { batchSize } : {}),
  });
  await markChunkDone(ctx, p, res.count);
  const out: ChunkJobReturn = { index: p.chunk.index, count: res.count };
  if (res.rows) {
    // Rows read back from Postgres: objects keep the exact tags (a type parser may give BigInts).
    const enc = encodeRows(res.rows, 0, false);
    out.columns = enc.columns;
    out.rows = enc.rows;
  }
  if (res.missing && res.missing.length > 0) out.missing = encodeValue(res.missing, 'missing');
  return out;
}

/** A 'seal' job runs once enqueueing ended; if it runs while the producer never sealed, the producer died. */
export async function processSeal(ctx: ProcessorContext, p: SealPayload): Promise<{ seal: true }> {
  const sealed = await ctx.redis.hget(ctx.keys.op(p.operationId), 'sealed');
  if (sealed !== '1') {
    throw new BulkError(
      'CANCELLED',
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
  const moved = await moveState(ctx.redis, ctx.keys.op(p.operationId), {
    state: 'completed',
    finishedAt: String(Date.now()),
    rowsDone: String(count),
  });
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

/** Resolve a copyTo path inside the worker's export directory; anything outside is refused. */
export function exportPath(exportDir: string, path: string): string {
  const root = resolve(exportDir);
  const full = resolve(root, path);
  if (!inside(root, full)) {
    throw new BulkError(
      'INVALID_OPTION',
      `copyTo path ${JSON.stringify(path)} is outside the worker's export directory ${root}`,
    );
  }
  return full;
}

function inside(root: string, full: string): boolean {
  const rel = relative(root, full);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/**
 * The same check on real directories: a symlink inside the export directory must not lead out.
 * Checked on the deepest directory that exists before creating the rest, and again after.
 */
async function checkRealDir(exportDir: string, full: string, path: string): Promise<void> {
  const root = await realpath(exportDir);
  let dir = dirname(full);
  for (;;) {
    const real = await realpath(dir).catch(() => undefined);
    if (real !== undefined) {
      if (real !== root && !inside(root, real)) {
        throw new BulkError(
          'INVALID_OPTION',
          `copyTo path ${JSON.stringify(path)} leads outside the worker's export directory`,
        );
      }
      return;
    }
    dir = dirname(dir);
  }
}

/**
 * NDJSON values where JSON has no exact form, as Postgres's to_json writes them: bigint as a
 * decimal string, bytea as '\\x' hex, NaN and ±Infinity as strings. (A replacer sees a Buffer
 * after its toJSON, so the raw value is read from the holder.)
 */
function ndjsonValue(this: unknown, key: string, v: unknown): unknown {
  const raw = (this as Record<string, unknown>)[key];
  if (typeof raw === 'bigint') return raw.toString();
  if (raw instanceof Uint8Array) return `\\x${Buffer.from(raw).toString('hex')}`;
  if (typeof raw === 'number' && !Number.isFinite(raw)) return String(raw);
  return v;
}

async function runCopyTo(
  ctx: ProcessorContext,
  p: OperationPayload,
  job: Job,
): Promise<OperationJobReturn> {
  const spec = p.copyTo!;
  const full = exportPath(ctx.exportDir, spec.path);
  await mkdir(ctx.exportDir, { recursive: true });
  await checkRealDir(ctx.exportDir, full, spec.path);
  await mkdir(dirname(full), { recursive: true });
  await checkRealDir(ctx.exportDir, full, spec.path);
  const tmp = `${full}.${job.id}.partial`;
  // A crashed earlier attempt may have left it; removing a symlink removes the link, not its target.
  await rm(tmp, { force: true });
  const model = ctx.db.model(p.table);
  const where = decodeObject(spec.where, 'where');
  const base = {
    ...(spec.columns ? { columns: spec.columns } : {}),
    ...(where ? { where } : {}),
    signals: p.options.signals !== false,
  };
  let count = 0;
  // Opened here, before any row is read: a failure (an unknown column, say) then always finds
  // the file to remove. Opened by the write stream instead, its open could finish after the
  // cleanup and leave an empty .partial file behind.
  const file = await open(tmp, 'wx');
  const sink = () => file.createWriteStream();
  try {
    if (spec.format === 'ndjson') {
      const rows = model.copyTo({ ...base, format: 'rows' });
      const lines = Readable.from(
        (async function* () {
          for await (const r of rows) {
            count++;
            yield `${JSON.stringify(r, ndjsonValue)}\n`;
          }
        })(),
      );
      await pipeline(lines, sink());
    } else {
      const out = model.copyTo({ ...base, format: spec.format ?? 'csv' });
      const bytes = Readable.from(
        (async function* () {
          for (;;) {
            const r = await out.next();
            if (r.done) {
              count = r.value.count;
              return;
            }
            yield r.value;
          }
        })(),
      );
      await pipeline(bytes, sink());
    }
    await rename(tmp, full);
  } catch (err) {
    // The stream has closed the file if it ended or failed before writing; not always when it
    // failed mid-stream. Closing it again is harmless.
    await file.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  return { count, path: full };
}

/** An 'operation' job: the parent of a chunked operation (all chunks done), or a whole update/copyTo. */
export async function processOperation(
  ctx: ProcessorContext,
  p: OperationPayload,
  job: Job,
): Promise<OperationJobReturn> {
  if (p.kind === 'update') {
    const where = decodeObject(p.update!.where, 'where')!;
    const set = decodeObject(p.update!.set, 'set')!;
    // Every run of the job (a retry, a stalled job handed to another worker) uses the operation's
    // id: batches that committed are recovered from the ledger with their counts, and the
    // key scan resumes after the last of them, so each row is updated once and counted once.
    const r = await ctx.db.model(p.table).update(
      { where, set },
      {
        operationId: p.operationId,
        batchSize: p.options.batchSize ?? QUEUE_DEFAULT_BATCH_SIZE,
        signals: p.options.signals !== false,
      },
    );
    return { count: r.count };
  }
  if (p.kind === 'copyTo') {
    const r = await runCopyTo(ctx, p, job);
    return r;
  }
  // The counters are exact (each chunk counted once): no need to load every chunk's result,
  // which holds its returned rows. Only updateFields gathers its chunks' missing keys.
  const [rowsDone, chunksDone] = await ctx.redis.hmget(
    ctx.keys.op(p.operationId),
    'rowsDone',
    'chunksDone',
  );
  const out: OperationJobReturn = { count: Number(rowsDone ?? 0), chunks: Number(chunksDone ?? 0) };
  if (p.kind === 'updateFields') {
    const values = (await job.getChildrenValues()) as Record<
      string,
      ChunkJobReturn | { seal: true }
    >;
    const parts = Object.values(values)
      .filter((v): v is ChunkJobReturn => typeof (v as ChunkJobReturn).index === 'number')
      .sort((a, b) => a.index - b.index);
    out.missing = parts.flatMap((c) => (c.missing as unknown[] | undefined) ?? []);
  }
  return out;
}

/** Forget operation records (hash, chunk bitmap, index entry) created before the retention. */
export async function pruneOperations(
  redis: Redis,
  keys: QueueKeys,
  retentionMs: number,
): Promise<number> {
  const cutoff = Date.now() - retentionMs;
  let removed = 0;
  for (;;) {
    const ids = await redis.zrangebyscore(keys.ops, '-inf', String(cutoff), 'LIMIT', 0, 500);
    if (ids.length === 0) return removed;
    const m = redis.multi();
    for (const id of ids) m.del(keys.op(id), keys.opDone(id)).zrem(keys.ops, id);
    await m.exec();
    removed += ids.length;
  }
}
