import { MAX_NESTING } from '../core/checks.js';
import { BulkError } from '../core/errors.js';
import { MAX_BATCH_SIZE } from '../core/options.js';
import { defaultOf } from '../core/settings.js';
import type { ChunkPayload, CopyChunkPayload, DataChunkPayload } from '../queue/payload.js';

/**
 * What a worker accepts from a job, enforced by the worker itself (a job may come from anyone
 * who can write to the queue, not only from BulkProducer). Defaults match the producer's.
 */
export interface WorkerLimits {
  /** A job's data larger than this is refused before it is parsed. Default 16 MiB. */
  maxPayloadBytes: number;
  /** Rows in one chunk job. Default 1,000,000 (the largest batchSize a producer takes). */
  maxChunkRows: number;
  /** Chunks in one operation (a chunk's index is below this). Default 1,000,000. */
  maxChunks: number;
  /** Nesting of values (arrays, objects) in a job. Default 64. */
  maxNesting: number;
}

export const DEFAULT_LIMITS: Readonly<WorkerLimits> = {
  maxPayloadBytes: defaultOf('maxPayloadBytes'),
  maxChunkRows: defaultOf('maxChunkRows'),
  maxChunks: defaultOf('maxChunks'),
  maxNesting: defaultOf('maxNesting'),
};

/**
 * The largest value each limit takes: Redis strings end at 512 MiB; no producer sends bigger
 * batches or deeper values; 10,000,000 chunks keep an operation's done-bitmap at 1.25 MB (and
 * chunk indexes within the ledger's integer).
 */
export const MAX_LIMITS: Readonly<WorkerLimits> = {
  maxPayloadBytes: 512 * 1024 * 1024,
  maxChunkRows: MAX_BATCH_SIZE,
  maxChunks: 10_000_000,
  maxNesting: MAX_NESTING,
};

/** Check the limits given to a worker (INVALID_OPTION) and fill in the defaults. */
export function resolveLimits(given: Partial<WorkerLimits> | undefined): WorkerLimits {
  const out = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(given ?? {})) {
    if (!(k in DEFAULT_LIMITS))
      throw new BulkError('INVALID_OPTION', `limits: unknown limit ${JSON.stringify(k)}`);
    if (v === undefined) continue;
    const max = MAX_LIMITS[k as keyof WorkerLimits];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max)
      throw new BulkError('INVALID_OPTION', `limits.${k} must be an integer from 1 to ${max}`);
    out[k as keyof WorkerLimits] = v;
  }
  return out;
}

/**
 * How deep `v` nests (objects and arrays), without recursion: a hostile job 200,000 levels
 * deep must not overflow the stack of the validator. Stops counting past `max`.
 */
export function depthOver(v: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    if (d >= max) return true;
    if (Array.isArray(x)) for (const y of x) stack.push([y, d + 1]);
    else for (const k in x) stack.push([(x as Record<string, unknown>)[k], d + 1]);
  }
  return false;
}

/**
 * A job's structure nests a few levels around its values (rows, row, tag, tag value): a value
 * nested `maxNesting` deep, as the producer allows, stays within this.
 */
export function payloadDepth(limits: WorkerLimits): number {
  return 2 * limits.maxNesting + 8;
}

/** Refuse a job nested deeper than a payload can be (before any recursive validator runs). */
export function checkDepth(data: unknown, jobName: string, limits: WorkerLimits): void {
  if (depthOver(data, payloadDepth(limits)))
    throw new BulkError(
      'LIMIT_EXCEEDED',
      `job ${jobName}: data nested more than ${payloadDepth(limits)} deep (values at most ${limits.maxNesting})`,
    );
}

/** A valid chunk's numbers within the worker's limits: its index, offset and rows. */
export function checkChunk(
  p: ChunkPayload | CopyChunkPayload | DataChunkPayload,
  limits: WorkerLimits,
): void {
  // (v2: the rows declared; the worker checks the data holds exactly that many before COPY.)
  const rows = 'groups' in p ? p.groups.reduce((n, g) => n + g.rows, 0) : p.rows.length;
  if (rows === 0) throw new BulkError('INVALID_PAYLOAD', 'a chunk holds no rows');
  if (p.chunk.index >= limits.maxChunks)
    throw new BulkError(
      'LIMIT_EXCEEDED',
      `chunk index ${p.chunk.index} is beyond this worker's limit of ${limits.maxChunks} chunks per operation`,
    );
  if (!Number.isSafeInteger(p.chunk.offset))
    throw new BulkError('LIMIT_EXCEEDED', 'chunk offset is beyond 2^53');
  // v3: its data is beside the job, read only when within the limit.
  if ('data' in p && p.data.bytes > limits.maxPayloadBytes)
    throw new BulkError(
      'PAYLOAD_TOO_LARGE',
      `chunk data is ${p.data.bytes} bytes, over this worker's limit of ${limits.maxPayloadBytes} (--max-payload-bytes)`,
    );
  const most = Math.min(limits.maxChunkRows, p.options.batchSize ?? limits.maxChunkRows);
  if (rows > most)
    throw new BulkError(
      'PAYLOAD_TOO_LARGE',
      rows > limits.maxChunkRows
        ? `chunk holds ${rows} rows, over this worker's limit of ${limits.maxChunkRows}`
        : `chunk holds ${rows} rows, more than its own batchSize of ${p.options.batchSize}`,
    );
}
