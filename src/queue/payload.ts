import { createHash } from 'node:crypto';
import AjvModule from 'ajv';
import type { Job } from 'bullmq';
import { type CsvDialect, checkCsvDialect } from '../core/csvDialect.js';
import type { ColumnType } from '../core/decode.js';
import { BulkError } from '../core/errors.js';
import type { RejectedRecord } from '../core/ops/copyText.js';
import { defaultOf } from '../core/settings.js';
import { PAYLOAD_SCHEMA } from './schema.js';
import { type Encoded, isJsonColumnValue } from './values.js';

/**
 * The newest payload version: chunks as COPY data kept beside the job (v3). Versions 1 (rows as
 * JSON values) and 2 (COPY data inside the job) stay accepted.
 */
export const PAYLOAD_VERSION = 3;
/** Versions a worker reads. */
export const PAYLOAD_VERSIONS: readonly number[] = [1, 2, 3];

/** Chunks in one operation: chunk indexes run below this (a worker's default limit too). */
export const MAX_CHUNKS = defaultOf('maxChunks');

export type ChunkKind = 'bulkCreate' | 'updateFields' | 'copyFrom';
export type OperationKind = ChunkKind | 'update' | 'copyTo';

export interface PayloadOptions {
  returning?: boolean | string[];
  onConflict?: 'ignore' | { target: string[]; update?: string[] };
  key?: string[];
  fields?: string[];
  signals?: boolean;
  batchSize?: number;
  /** v2 chunks, without onConflict: leave out records Postgres refuses, up to maxErrors. */
  onError?: 'skip';
  maxErrors?: number;
}

/** Job 'chunk': rows of one chunk, column names once. */
export interface ChunkPayload {
  v: 1;
  kind: ChunkKind;
  operationId: string;
  table: string;
  chunk: { index: number; offset: number };
  options: PayloadOptions;
  columns: string[];
  rows: Encoded[][];
  /** Indexes of columns whose values are bare JSON text (or null, or the absent tag). */
  jsonColumns?: number[];
}

/**
 * One COPY's worth of a v2 chunk: columns in order, the number of rows, their COPY data (a
 * string in a v2 job; the bytes of a v3 chunk's data once a worker has read them).
 */
export interface CopyGroupPayload {
  columns: string[];
  rows: number;
  data: string | Buffer;
  /** The rows' indexes within the chunk, when it has several groups. */
  rowIdx?: number[];
}

/**
 * Job 'chunk', version 2: rows as Postgres's COPY data, streamed into COPY by the worker
 * without decoding a value. `format` 'text': the COPY text format, encoded by the producer for
 * the column kinds its catalog snapshot gave (`catalog`: their fingerprint); 'csv': records of
 * a CSV file as they were in it (`chunk.line`: the file line of the first).
 */
export interface CopyChunkPayload {
  v: 2;
  kind: 'bulkCreate' | 'copyFrom';
  operationId: string;
  table: string;
  chunk: { index: number; offset: number; line?: number };
  options: PayloadOptions;
  format: 'text' | 'csv';
  /** format 'csv': the file's delimiter and NULL text, when not COPY's defaults. */
  csv?: CsvDialect;
  catalog?: string;
  groups: CopyGroupPayload[];
}

/** One COPY's worth of a v3 chunk: its columns, rows and the length of its part of the data. */
export interface DataGroupPayload {
  columns: string[];
  rows: number;
  /** Bytes of the chunk's data that are this group's, in group order. */
  bytes: number;
  rowIdx?: number[];
}

/**
 * Job 'chunk', version 3: version 2 with the COPY data kept beside the job instead of inside
 * its JSON (the queue state's chunk data, under the operation id and chunk index), so that no
 * one serializes, parses or measures it as JSON. `data` gives its length and sha256; the worker
 * reads at most its limit, checks both, and cuts it into the groups by their `bytes`.
 */
export interface DataChunkPayload extends Omit<CopyChunkPayload, 'v' | 'groups'> {
  v: 3;
  data: { bytes: number; sha256: string };
  groups: DataGroupPayload[];
}

/** A v3 chunk's data digest as its job names it: sha256, base64url without padding. */
export function chunkDataDigest(data: Buffer): string {
  return createHash('sha256').update(data).digest('base64url');
}

/** Job 'operation': the parent of an operation's chunks; for update and copyTo, the whole job. */
export interface OperationPayload {
  v: 1;
  kind: OperationKind;
  operationId: string;
  table: string;
  options: PayloadOptions;
  /** `where` (never empty) or `all: true` (every row), never both. */
  update?: { where?: Record<string, Encoded>; all?: true; set: Record<string, Encoded> };
  copyTo?: {
    path: string;
    format?: 'csv' | 'text' | 'ndjson';
    columns?: string[];
    where?: Record<string, Encoded>;
  };
}

/** Job 'seal': completes when enqueueing has finished, letting the parent run. */
export interface SealPayload {
  v: 1;
  operationId: string;
  seal: true;
}

export type Payload =
  | ChunkPayload
  | CopyChunkPayload
  | DataChunkPayload
  | OperationPayload
  | SealPayload;

const Ajv = (AjvModule as unknown as { default?: typeof AjvModule }).default ?? AjvModule;
interface ValidateFn {
  (data: unknown): boolean;
  errors?: { instancePath: string; message?: string }[] | null;
}

/**
 * The schema's validators, compiled on first use: compiling takes tens of milliseconds, which
 * a process that never validates a job (a producer, most CLI commands) should not pay at start.
 */
let validators: { all: ValidateFn; envelope: ValidateFn } | undefined;
function compiled(): { all: ValidateFn; envelope: ValidateFn } {
  if (!validators) {
    const ajv = new (Ajv as unknown as new (opts: object) => { compile(s: object): ValidateFn })({
      allErrors: false,
      strict: false,
    });
    validators = { all: ajv.compile(PAYLOAD_SCHEMA), envelope: ajv.compile(ENVELOPE_SCHEMA) };
  }
  return validators;
}

/**
 * The same schema with a chunk's row values left unchecked: the worker decodes every value
 * right after (`decodeRows`, which refuses what the schema's `value` refuses, and in a
 * `jsonColumns` column anything but JSON text, null or the absent tag), so checking them here
 * too would walk thousands of values twice.
 */
const ENVELOPE_SCHEMA = (() => {
  const s = JSON.parse(JSON.stringify(PAYLOAD_SCHEMA));
  s.definitions.chunk.properties.rows = { type: 'array', items: { type: 'array' } };
  s.$id = `${s.$id.replace(/\.json$/, '')}-envelope.json`;
  return s;
})();

/**
 * Validate a job's data against payload v1; INVALID_PAYLOAD says where it is wrong. With
 * `values: false` a chunk's row values are left to the decoder (the worker's fast path).
 */
export function validatePayload(
  data: unknown,
  jobName: string,
  options: { values?: boolean } = {},
): Payload {
  const validateFn = options.values === false ? compiled().envelope : compiled().all;
  const v = (data as { v?: unknown } | null)?.v;
  if (typeof v !== 'number' || !PAYLOAD_VERSIONS.includes(v)) {
    throw new BulkError(
      'INVALID_PAYLOAD',
      `job ${jobName}: payload version ${JSON.stringify(v)} is not supported (this worker reads versions ${PAYLOAD_VERSIONS.slice(0, -1).join(', ')} and ${PAYLOAD_VERSIONS.at(-1)})`,
    );
  }
  if (!validateFn(data)) {
    const e = validateFn.errors?.[0];
    throw new BulkError(
      'INVALID_PAYLOAD',
      `job ${jobName}: invalid payload at ${e?.instancePath || '/'}: ${e?.message ?? 'does not match the schema'}`,
    );
  }
  const p = data as Payload;
  const expect = 'seal' in p ? 'seal' : 'chunk' in p ? 'chunk' : 'operation';
  if (expect !== jobName)
    throw new BulkError('INVALID_PAYLOAD', `job ${jobName}: payload is for a '${expect}' job`);
  if ('chunk' in p && p.v === 3) {
    const sum = p.groups.reduce((n, g) => n + g.bytes, 0);
    if (sum !== p.data.bytes)
      throw new BulkError(
        'INVALID_PAYLOAD',
        `job ${jobName}: the groups hold ${sum} bytes of the chunk's ${p.data.bytes}`,
      );
  }
  if ('chunk' in p && (p.v === 2 || p.v === 3)) {
    if (p.options.onError !== undefined && p.options.onConflict)
      throw new BulkError(
        'INVALID_PAYLOAD',
        `job ${jobName}: onError 'skip' does not go with onConflict`,
      );
    if (p.csv !== undefined) {
      if (p.format !== 'csv')
        throw new BulkError('INVALID_PAYLOAD', `job ${jobName}: csv options go with format 'csv'`);
      try {
        checkCsvDialect(p.csv);
      } catch (err) {
        throw new BulkError('INVALID_PAYLOAD', `job ${jobName}: ${(err as Error).message}`);
      }
    }
    return p;
  }
  if ('chunk' in p && p.jsonColumns?.some((j) => j >= p.columns.length)) {
    throw new BulkError(
      'INVALID_PAYLOAD',
      `job ${jobName}: jsonColumns must name columns by index (0-${p.columns.length - 1})`,
    );
  }
  if ('chunk' in p && p.rows.some((r) => r.length !== p.columns.length)) {
    throw new BulkError(
      'INVALID_PAYLOAD',
      `job ${jobName}: every row must hold ${p.columns.length} values`,
    );
  }
  // What a JSON Schema cannot say: the values of a jsonColumns column (by index) are JSON text.
  if ('chunk' in p && p.jsonColumns && options.values !== false) {
    for (let i = 0; i < p.rows.length; i++) {
      for (const j of p.jsonColumns) {
        if (!isJsonColumnValue(p.rows[i]![j])) {
          throw new BulkError(
            'INVALID_PAYLOAD',
            `job ${jobName}: invalid payload at /rows/${i}/${j}: a jsonColumns value must be JSON text, null or the absent tag`,
          );
        }
      }
    }
  }
  return p;
}

/** Whether `s` holds a control character (U+0000 to U+001F, or DEL). */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * A queued copyTo names a plain file in the worker's export directory: no directory part, not a
 * dot-file, no control characters, at most 255 bytes. INVALID_OPTION otherwise.
 */
export function checkExportFileName(name: unknown): string {
  const bad = (why: string) =>
    new BulkError(
      'INVALID_OPTION',
      `copyTo path must be a plain file name in the worker's export directory: ${why}`,
    );
  if (typeof name !== 'string' || name.length === 0) throw bad('it is empty');
  if (/[/\\]/.test(name)) throw bad('it holds a / or \\ (no directories)');
  if (hasControl(name)) throw bad('it holds a control character (NUL, newline, ...)');
  if (name.startsWith('.')) throw bad('it starts with a dot');
  if (!name.isWellFormed()) throw bad('it is not valid Unicode');
  if (Buffer.byteLength(name) > 255) throw bad('it is longer than 255 bytes');
  return name;
}

/** What a chunk job returns (its result in BullMQ). */
export interface ChunkJobReturn {
  index: number;
  count: number;
  /** Records left out (onError 'skip'): file line, code and reason, never values. */
  rejected?: RejectedRecord[];
  /** Returned rows as Postgres's text, with their columns' names and types. */
  returned?: { names: string[]; types: ColumnType[]; rows: (string | null)[][] };
  /** (Workers before `returned`: rows in the payload's value encoding.) */
  columns?: string[];
  rows?: unknown[][];
  missing?: unknown;
}

/** The results of an operation's chunk jobs (its parent job's children), in chunk order. */
export async function chunkReturns(parent: Job): Promise<ChunkJobReturn[]> {
  const values = (await parent.getChildrenValues()) as Record<
    string,
    ChunkJobReturn | { seal: true }
  >;
  return Object.values(values)
    .filter((v): v is ChunkJobReturn => typeof (v as ChunkJobReturn).index === 'number')
    .sort((a, b) => a.index - b.index);
}

/** What the parent job returns once every chunk committed. */
export interface OperationJobReturn {
  count: number;
  /** Records left out by its chunks (onError 'skip'), in file order. */
  rejected?: RejectedRecord[];
  chunks?: number;
  missing?: unknown;
  path?: string;
}
