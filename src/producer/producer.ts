import { isUtf8 } from 'node:buffer';
import { createHash, randomUUID } from 'node:crypto';
import { type FlowProducer, Job } from 'bullmq';
import { kindsFingerprint, metaFromSnapshot } from '../core/catalog.js';
import { checkDefined } from '../core/checks.js';
import { checkCsvDialect } from '../core/csvDialect.js';
import { type DecodeOptions, resolveDecode } from '../core/decode.js';
import { BulkError } from '../core/errors.js';
import { defaultLogger, type Logger } from '../core/logger.js';
import { columnOf, parseTableName } from '../core/meta.js';
import { checkUpdateArgs, type UpdateArgs } from '../core/ops/update.js';
import { checkOptionKeys } from '../core/optionKeys.js';
import { checkOperationId, QUEUE_DEFAULT_BATCH_SIZE } from '../core/options.js';
import { chunked } from '../core/runner.js';
import { declaredOptions, defaultOf, fromEnv } from '../core/settings.js';
import type { Row } from '../core/signals.js';
import { type BackendKind, openBackend, type QueueBackend } from '../queue/backend.js';
import { parseSnapshot, SnapshotCache } from '../queue/catalog.js';
import type { RedisInput } from '../queue/connection.js';
import { BulkEvents } from '../queue/events.js';
import { jobIds, queueNames } from '../queue/keys.js';
import type { LenientQueue } from '../queue/lenientJob.js';
import {
  type ChunkKind,
  type ChunkPayload,
  type CopyChunkPayload,
  checkExportFileName,
  MAX_CHUNKS,
  type OperationKind,
  type OperationPayload,
  type PayloadOptions,
} from '../queue/payload.js';
import { type OperationStatus, statusOf } from '../queue/state.js';
import { type Encoded, encodeRows, encodeValue, jsonSizeBound } from '../queue/values.js';
import { besideJob, copyOptions, encodeCopyChunk, inlineJob } from './copyPayload.js';
import { csvChunks, csvHead } from './csvChunks.js';
import { Operation, type OperationQueue } from './operation.js';
import {
  abandon,
  addFlow,
  chunkJobOptions,
  PARENT_JOB,
  promoteSeal,
  register,
} from './opRecord.js';
import {
  checkNames,
  payloadOptions,
  type QueueCopyToOptions,
  type QueueCsvOptions,
  type QueueInsertOptions,
  type QueueUpdateFieldsOptions,
  type QueueWriteOptions,
} from './options.js';

export interface BulkProducerOptions {
  /**
   * Where the queues live: 'redis' (default) or 'postgres' (BullMQ's PostgreSQL backend, no
   * Redis at all). Default: BULKMODEL_BACKEND, else 'redis'.
   */
  backend?: BackendKind;
  /**
   * Postgres backend: the database the queues live in, normally the target database (a
   * connection string). Default: BULKMODEL_QUEUE_DATABASE, else DATABASE_URL.
   */
  database?: string;
  /** Postgres backend: the queue database, when other than `database`. */
  queueDatabase?: string;
  /** Postgres backend: the schema of the queues. Default 'bulkmodel_queue' (BULKMODEL_QUEUE_SCHEMA). */
  queueSchema?: string;
  /** Postgres backend: create or upgrade the queue schema on first use. Default false (QUEUE_SCHEMA). */
  migrate?: boolean;
  /**
   * Redis: a URL, ioredis options, a cluster's nodes (`{ cluster: 'host:port,...' }`) or an
   * ioredis `Redis` or `Cluster`. Default: REDIS_CLUSTER, else REDIS_URL, else
   * redis://127.0.0.1:6379.
   */
  redis?: RedisInput;
  /**
   * The queue, or several to spread operations over (a list, or 'a,b,c'): each operation goes
   * to one of them, chosen by `pickQueue`. Default 'bulkmodel' (BULKMODEL_QUEUE).
   */
  queue?: string | readonly string[];
  /**
   * Which queue an operation goes to. Default: a hash of its id, so that the same operation id
   * always lands on the same queue (enqueueing it again stays idempotent) and random ids
   * spread evenly. A custom choice must also give one id one queue.
   */
  pickQueue?: (op: { id: string; kind: string; table: string }) => string;
  /** BullMQ key prefix (Redis only: on Postgres the queue schema keeps queues apart). Default 'bull'. */
  prefix?: string;
  /** A chunk's payload larger than this is refused at enqueue (PAYLOAD_TOO_LARGE). Default 16 MiB. */
  maxPayloadBytes?: number;
  /** Attempts per chunk job for transient failures (each attempt also retries inside). Default 8. */
  attempts?: number;
  /** How long a sealed-but-abandoned operation waits before failing. Default 24 h. */
  sealTimeoutMs?: number;
  /**
   * How rows read back (returning) are shaped, as BulkClient's `decode`: workers pass on
   * Postgres's exact text, decoded here. Default: node-postgres's shapes.
   */
  decode?: DecodeOptions;
  /**
   * 3 (default): bulkCreate and copyFrom without returning send their rows as COPY text
   * (docs/payload.md), encoded here with the column kinds workers publish beside the queue,
   * and kept beside the job rather than in its JSON; when no catalog is published yet for the
   * table, or with returning, rows go as version 1. 2: the COPY text inside the job (for
   * workers older than version 3). 1: always JSON values (for workers older than version 2).
   */
  payloadVersion?: 1 | 2 | 3;
  logger?: Logger;
}

export type {
  QueueCopyToOptions,
  QueueCsvOptions,
  QueueInsertOptions,
  QueueUpdateFieldsOptions,
  QueueWriteOptions,
};

type Input = readonly Row[] | Iterable<Row> | AsyncIterable<Row>;

/** What the producer keeps per queue it has used. */
interface QueueHandle extends OperationQueue {
  bull: LenientQueue;
  flows: FlowProducer;
  snapshots: SnapshotCache;
  reader: BulkEvents | undefined;
}

/** An operation id's queue among n: FNV-1a of the id, so that it is stable across processes. */
export function hashPick(id: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % n;
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('base64');
}

/**
 * A COPY chunk's fingerprint without serializing its data into JSON (the data is most of it):
 * the rest of the payload as JSON, then each group's columns and data. The same whether the
 * data then travels in the job (version 2) or beside it (version 3), and whether it is text or
 * its UTF-8 bytes, so that enqueueing an id again after an upgrade finds the same chunks.
 */
function fingerprintCopyChunk(p: CopyChunkPayload): string {
  const h = createHash('sha1').update(JSON.stringify({ ...p, groups: p.groups.length }));
  for (const g of p.groups)
    h.update(JSON.stringify([g.columns, g.rows, g.rowIdx ?? null])).update(g.data);
  return h.digest('base64');
}

/** One chunk to enqueue: its row count, and its payload once its place is known. */
interface ChunkSource {
  rows: number;
  payload(index: number, offset: number): ChunkPayload | CopyChunkPayload;
}

const PRODUCER_KEYS = declaredOptions<BulkProducerOptions>()('BulkProducer');

/**
 * App-side API: validates and encodes an operation, enqueues it as one BullMQ flow (a parent job
 * and one child job per chunk) and returns a handle to await or watch.
 */
export class BulkProducer {
  readonly logger: Logger;
  /** Where the queues live (Redis, a Redis Cluster, Postgres). */
  readonly backend: QueueBackend;
  /** The queues this producer enqueues to. */
  readonly queues: readonly string[];
  private readonly handles = new Map<string, QueueHandle>();
  private readonly options: BulkProducerOptions;
  private closed = false;
  private readonly decode: DecodeOptions;

  constructor(options: BulkProducerOptions = {}) {
    checkOptionKeys(options, PRODUCER_KEYS, 'BulkProducer');
    this.options = options;
    this.decode = resolveDecode(options.decode);
    this.logger = options.logger ?? defaultLogger;
    this.queues = queueNames(options.queue, fromEnv('queue')!);
    if (options.pickQueue !== undefined && typeof options.pickQueue !== 'function')
      throw new BulkError('INVALID_OPTION', 'pickQueue must be a function');
    this.backend = openBackend(options, options.database);
  }

  /** The queue's BullMQ objects and state, made on first use. */
  private handle(name: string): QueueHandle {
    let h = this.handles.get(name);
    if (!h) {
      const bull = this.backend.queue(name);
      const flows = this.backend.flows(name);
      const state = this.backend.state(name);
      bull.on('error', (err) => this.logger.warn({ err, queue: name }, 'queue connection error'));
      flows.on('error', (err) =>
        this.logger.warn({ err, queue: name }, 'flow producer connection error'),
      );
      const handle: QueueHandle = {
        name,
        bull,
        flows,
        state,
        snapshots: new SnapshotCache(state),
        reader: undefined,
        events: () => {
          handle.reader ??= new BulkEvents({ backend: this.backend, queue: name });
          return handle.reader;
        },
      };
      h = handle;
      this.handles.set(name, h);
    }
    return h;
  }

  /** The queue an operation goes to. */
  private pick(id: string, kind: string, table: string): QueueHandle {
    if (this.queues.length === 1) return this.handle(this.queues[0]!);
    const name = this.options.pickQueue
      ? this.options.pickQueue({ id, kind, table })
      : this.queues[hashPick(id, this.queues.length)]!;
    if (typeof name !== 'string' || !this.queues.includes(name))
      throw new BulkError(
        'INVALID_OPTION',
        `pickQueue returned ${JSON.stringify(name)}, not one of this producer's queues (${this.queues.join(', ')})`,
      );
    return this.handle(name);
  }

  /** Enqueue a bulk INSERT. */
  bulkCreate(table: string, rows: Input, options: QueueInsertOptions = {}): Promise<Operation> {
    return this.enqueueChunks('bulkCreate', table, rows, options);
  }

  /** Enqueue a COPY FROM. */
  copyFrom(table: string, rows: Input, options: QueueInsertOptions = {}): Promise<Operation> {
    return this.enqueueChunks('copyFrom', table, rows, options);
  }

  /** Enqueue a heterogeneous update. */
  updateFields(
    table: string,
    rows: Input,
    options: QueueUpdateFieldsOptions = {},
  ): Promise<Operation> {
    return this.enqueueChunks('updateFields', table, rows, options);
  }

  /**
   * Enqueue a homogeneous update; one worker runs it in key batches. `{ where, set }` updates
   * the rows the filter matches; `{ all: true, set }` every row (an empty or undefined filter
   * is refused, never read as "every row").
   */
  async update(
    table: string,
    args: UpdateArgs,
    options: QueueWriteOptions = {},
  ): Promise<Operation> {
    checkUpdateArgs(args, table);
    const update: NonNullable<OperationPayload['update']> = {
      ...(args.all === true
        ? { all: true as const }
        : { where: this.encodeObject(args.where, 'where') }),
      set: this.encodeObject(args.set, 'set'),
    };
    return this.enqueueSingle('update', table, payloadOptions(options), options.operationId, {
      update,
    });
  }

  /** Enqueue an export: a worker streams COPY TO into `path` (CSV with header, COPY text, or NDJSON). */
  async copyTo(table: string, options: QueueCopyToOptions): Promise<Operation> {
    if (!options || typeof options !== 'object')
      throw new BulkError('INVALID_OPTION', `${table}: copyTo needs { path }`);
    // A plain file name in the worker's export directory (the worker checks it again).
    checkExportFileName(options.path);
    const format = options.format ?? 'csv';
    if (!['csv', 'text', 'ndjson'].includes(format))
      throw new BulkError('INVALID_OPTION', `format must be csv, text or ndjson`);
    const copyTo: NonNullable<OperationPayload['copyTo']> = { path: options.path, format };
    const columns = checkNames(options.columns, 'columns');
    if (columns) copyTo.columns = columns;
    if (options.where !== undefined) {
      checkDefined(options.where, 'where', table);
      copyTo.where = this.encodeObject(options.where, 'where');
    }
    const opts: PayloadOptions = options.signals === false ? { signals: false } : {};
    return this.enqueueSingle('copyTo', table, opts, options.operationId, { copyTo });
  }

  /**
   * A handle on an operation enqueued earlier (by this or another process). With several
   * queues, it is looked for on the queue its id hashes to first, then on the others.
   */
  operation(id: string): Operation {
    checkOperationId(id);
    return new Operation(
      {
        locate: async (opId) => {
          await this.backend.prepare();
          const first = this.queues[hashPick(opId, this.queues.length)]!;
          if (this.queues.length === 1) return this.handle(first);
          for (const name of [first, ...this.queues.filter((q) => q !== first)]) {
            const h = this.handle(name);
            if ((await h.state.stateOf(opId)) !== null) return h;
          }
          return this.handle(first);
        },
        logger: this.logger,
        decode: this.decode,
      },
      id,
    );
  }

  /** The `limit` most recent operations over this producer's queues, newest first. */
  async operations(options: { limit?: number } = {}): Promise<OperationStatus[]> {
    const limit = options.limit ?? 20;
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
      throw new BulkError('INVALID_OPTION', 'limit must be an integer from 1 to 10000');
    await this.backend.prepare();
    const all: OperationStatus[] = [];
    for (const name of this.queues)
      for (const r of await this.handle(name).state.records(limit)) all.push(statusOf(r, name));
    return all.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0)).slice(0, limit);
  }

  /** The handle of an operation this producer enqueued on `h`. */
  private opOn(h: QueueHandle, id: string): Operation {
    return new Operation({ locate: async () => h, logger: this.logger, decode: this.decode }, id);
  }

  private encodeObject(o: unknown, what: string): Record<string, Encoded> {
    if (o === null || typeof o !== 'object' || Array.isArray(o))
      throw new BulkError('INVALID_OPTION', `${what} must be an object`);
    const e = encodeValue(o, what) as { v: Record<string, Encoded> };
    return e.v;
  }

  private assertOpen(): void {
    if (this.closed) throw new BulkError('CLOSED', 'this BulkProducer is closed');
  }

  private async enqueueChunks(
    kind: ChunkKind,
    table: string,
    rows: Input,
    options: QueueInsertOptions & QueueUpdateFieldsOptions,
  ): Promise<Operation> {
    this.assertOpen();
    parseTableName(table);
    await this.backend.prepare();
    const popts = payloadOptions(options);
    if (
      kind === 'updateFields' &&
      (popts.returning !== undefined || popts.onConflict !== undefined)
    ) {
      throw new BulkError(
        'INVALID_OPTION',
        'updateFields takes fields and key, not returning or onConflict',
      );
    }
    if (kind !== 'updateFields' && popts.fields !== undefined)
      throw new BulkError('INVALID_OPTION', `${kind} does not take fields`);
    const isIterable =
      rows !== null &&
      typeof rows === 'object' &&
      (typeof (rows as Iterable<Row>)[Symbol.iterator] === 'function' ||
        typeof (rows as AsyncIterable<Row>)[Symbol.asyncIterator] === 'function');
    if (!isIterable)
      throw new BulkError(
        'INVALID_OPTION',
        `${table}: rows must be an array or an (async) iterable of row objects`,
      );
    const batchSize = popts.batchSize ?? QUEUE_DEFAULT_BATCH_SIZE;
    // COPY text (version 2) when the table's column kinds are known here and nothing is
    // returned (returned rows need the worker to see its rows).
    const v2 =
      this.options.payloadVersion !== 1 &&
      (kind === 'bulkCreate' || kind === 'copyFrom') &&
      popts.returning === undefined;
    const { id, h } = this.place(options.operationId, kind, table);
    let snap = v2 ? await h.snapshots.get(table) : null;
    // Skipping rows Postgres refuses needs COPY text: wait a while for a worker's snapshot.
    if (popts.onError === 'skip') {
      if (!v2)
        throw new BulkError(
          'INVALID_OPTION',
          `onError 'skip' is for bulkCreate and copyFrom without returning, as COPY text (payload versions 2 and 3)`,
        );
      for (let waited = 0; !snap && waited < 30_000; waited += 500) {
        await new Promise((r) => setTimeout(r, 500));
        const raw = await h.state.snapshot(table).catch(() => null);
        if (raw) snap = parseSnapshot(raw);
      }
      if (!snap)
        throw new BulkError(
          'INVALID_OPTION',
          `onError 'skip' needs the column types a worker publishes for ${table}: start one that allows the table`,
        );
    }
    // The same id enqueued again encodes as it did the first time (a snapshot published since
    // must not turn version 1 chunks into version 2 ones, which would differ).
    if (snap && options.operationId !== undefined)
      if ((await h.state.record(id))?.encoding === 'v1') snap = null;
    const copyMeta = snap ? metaFromSnapshot(snap) : undefined;
    // Recorded with the operation: enqueueing the same id again must encode the same way.
    const encoding = copyMeta ? `v2:${kindsFingerprint(copyMeta.columns)}` : 'v1';
    async function* chunks(): AsyncGenerator<ChunkSource> {
      for await (const chunk of chunked(rows as AsyncIterable<Row>, batchSize)) {
        yield {
          rows: chunk.length,
          payload(index, offset) {
            const copy = copyMeta ? encodeCopyChunk(copyMeta, chunk, offset) : undefined;
            if (!copy && popts.onError === 'skip')
              throw new BulkError(
                'INVALID_ROW',
                `${table}: rows that name no column (all defaults) cannot be sent as COPY text, which onError 'skip' needs`,
                { table },
              );
            if (copy)
              return {
                v: 2,
                kind: kind as CopyChunkPayload['kind'],
                operationId: '',
                table,
                chunk: { index, offset },
                options: copyOptions(popts),
                format: 'text',
                catalog: copy.catalog,
                groups: copy.groups,
              };
            const enc = encodeRows(chunk, offset);
            return {
              v: 1,
              kind,
              operationId: '',
              table,
              chunk: { index, offset },
              options: popts,
              columns: enc.columns,
              rows: enc.rows,
              ...(enc.jsonColumns ? { jsonColumns: enc.jsonColumns } : {}),
            };
          },
        };
      }
    }
    return this.enqueueFlow(
      kind,
      table,
      popts,
      h,
      id,
      options.operationId !== undefined,
      chunks(),
      encoding,
    );
  }

  /** An operation's id (given or new) and its queue. */
  private place(operationId: string | undefined, kind: string, table: string) {
    checkOperationId(operationId);
    const id = operationId ?? randomUUID();
    return { id, h: this.pick(id, kind, table) };
  }

  /**
   * Enqueue a CSV file (or any stream of CSV bytes) with COPY semantics, without parsing a
   * field: the stream is split into chunks of whole records by a byte scan (quotes and
   * newlines only), and each chunk travels as the file's own bytes (payload version 3, format
   * csv) for Postgres to parse, as `COPY ... CSV` (an unquoted empty field is NULL, `""` the
   * empty string). The first record names the columns unless `columns` is given with
   * `header: false`. A value Postgres refuses fails the operation with the file's line
   * (`BulkError.line`) and column.
   */
  async copyFromCsv(
    table: string,
    source: AsyncIterable<Buffer>,
    options: QueueCsvOptions = {},
  ): Promise<Operation> {
    this.assertOpen();
    parseTableName(table);
    await this.backend.prepare();
    const {
      columns: given,
      header = true,
      path = 'input',
      onEnqueued,
      delimiter,
      null: nullText,
      ...rest
    } = options ?? {};
    const csv = checkCsvDialect({ delimiter, null: nullText }, 'copyFromCsv');
    // (onError and maxErrors are checked with the other write options.)
    const popts = copyOptions(payloadOptions(rest));
    const batchSize = popts.batchSize ?? QUEUE_DEFAULT_BATCH_SIZE;
    const { id, h } = this.place(options.operationId, 'copyFrom', table);
    const { columns, body, firstLine } = await csvHead(source, {
      header,
      columns: checkNames(given, 'columns'),
      path,
      delimiter: csv.delimiter,
    });
    // The header's names, checked at once when the table's catalog is known here (a worker
    // refuses an unknown or read-only column otherwise, on the first chunk).
    const snap = await h.snapshots.get(table);
    if (snap) {
      const meta = metaFromSnapshot(snap);
      for (const n of columns) {
        const c = columnOf(meta, n);
        if (c.identity === 'a')
          throw new BulkError('READ_ONLY_COLUMN', `${meta.displayName}.${n} cannot be written`, {
            table: meta.displayName,
            column: n,
          });
      }
    }
    let enqueuedRows = 0;
    let enqueuedBytes = 0;
    let chunkIndex = 0;
    async function* chunks(): AsyncGenerator<ChunkSource> {
      for await (const c of csvChunks(body, { batchSize, firstLine, path })) {
        enqueuedRows += c.records;
        enqueuedBytes += c.data.length;
        onEnqueued?.({
          rows: enqueuedRows,
          bytes: enqueuedBytes,
          chunk: chunkIndex++,
          line: c.firstLine,
          lastLine: c.lastLine,
        });
        if (!isUtf8(c.data))
          throw new BulkError(
            'INVALID_ROW',
            `${path} line ${c.firstLine}: the file is not valid UTF-8 in the ${c.records} records from here`,
            { table },
          );
        const data = c.data; // the file's bytes, as they are
        yield {
          rows: c.records,
          payload: (index, offset) => ({
            v: 2,
            kind: 'copyFrom',
            operationId: '',
            table,
            chunk: { index, offset, line: c.firstLine },
            options: popts,
            format: 'csv',
            ...(csv.delimiter || csv.null !== undefined ? { csv } : {}),
            groups: [{ columns, rows: c.records, data }],
          }),
        };
      }
    }
    return this.enqueueFlow(
      'copyFrom',
      table,
      popts,
      h,
      id,
      options.operationId !== undefined,
      chunks(),
    );
  }

  /**
   * One operation as a BullMQ flow: its record, the parent with its delayed seal, one chunk
   * job per source chunk (each checked against the size limit and, for a given operation id,
   * fingerprinted so that enqueueing again is idempotent), then the seal.
   */
  private async enqueueFlow(
    kind: ChunkKind,
    table: string,
    popts: PayloadOptions,
    h: QueueHandle,
    id: string,
    givenId: boolean,
    source: AsyncIterable<ChunkSource>,
    encoding?: string,
  ): Promise<Operation> {
    const {
      created,
      sealed,
      state: before,
    } = await register(
      h.state,
      id,
      { kind, table, options: popts },
      {
        kind,
        table,
        returning: popts.returning !== undefined,
        ...(encoding !== undefined ? { encoding } : {}),
      },
    );
    // Enqueued before under this id. An operation that ended in failure is returned as is (its
    // done() rejects); otherwise the input must be the same, chunk by chunk, or it is a conflict.
    if (sealed && (before === 'failed' || before === 'cancelled')) return this.opOn(h, id);
    const parent: OperationPayload = { v: 1, kind, operationId: id, table, options: popts };
    const qualified = this.backend.qualifiedName(h.name);
    if (!sealed && !(await Job.fromId(h.bull, jobIds.parent(id)))) {
      await addFlow(
        h.flows,
        h.name,
        parent,
        this.options.sealTimeoutMs ?? defaultOf('sealTimeoutMs'),
      );
    }
    const maxBytes = this.options.maxPayloadBytes ?? defaultOf('maxPayloadBytes');
    const attempts = this.options.attempts ?? defaultOf('attempts');
    const conflict = (what: string) =>
      new BulkError(
        'OPERATION_CONFLICT',
        `operation ${id}: ${what} the one enqueued before under this id`,
        { table },
      );
    let index = 0;
    let offset = 0;
    try {
      for await (const src of source) {
        if (index >= MAX_CHUNKS)
          throw new BulkError(
            'LIMIT_EXCEEDED',
            `${table}: more than ${MAX_CHUNKS} chunks in one operation (workers refuse more): raise batchSize or split the input`,
            { table, row: offset },
          );
        const built = src.payload(index, offset);
        built.operationId = id;
        // COPY data travels beside the job (version 3) unless version 2 was asked for.
        const beside =
          built.v === 2 && (this.options.payloadVersion ?? 3) === 3 ? besideJob(built) : undefined;
        const data = beside?.payload ?? (built.v === 2 ? inlineJob(built) : built);
        // Serialized here only when a cheap bound cannot rule out the size limit (BullMQ
        // serializes it anyway to store it), or to fingerprint a version 1 chunk.
        const copyData = built.v === 2;
        const json =
          beside === undefined && ((givenId && !copyData) || jsonSizeBound(data) > maxBytes)
            ? JSON.stringify(data)
            : undefined;
        const bytes = beside
          ? beside.data.length
          : json === undefined
            ? 0
            : Buffer.byteLength(json);
        if (bytes > maxBytes) {
          throw new BulkError(
            'PAYLOAD_TOO_LARGE',
            `${table}: chunk ${index} (rows ${offset}-${offset + src.rows - 1}) is ${bytes} bytes, over the ${maxBytes}-byte limit: lower batchSize`,
            { table, row: offset },
          );
        }
        // Fingerprints make a repeated operationId safe; an id generated here cannot be reused,
        // so those calls skip them (and check the operation's state every few chunks only).
        let prevFp: string | null = null;
        let fp: string | undefined;
        let state: string | null = null;
        if (givenId) {
          fp = copyData ? fingerprintCopyChunk(built as CopyChunkPayload) : sha1(json!);
          ({ fp: prevFp, state } = await h.state.chunkFingerprint(id, index));
          if (prevFp !== null && prevFp !== fp) throw conflict(`chunk ${index} differs from`);
          if (sealed && prevFp === null) throw conflict('the input is longer than');
        } else if (index % 8 === 7) {
          state = await h.state.stateOf(id);
        }
        // A worker failed the operation (bad input): enqueueing more would only be skipped.
        // (Data stored since it ended, before this call saw it, goes too.)
        if (state === 'failed' || state === 'cancelled') {
          await h.state.dropChunkData(id).catch(() => {});
          break;
        }
        if (prevFp === null) {
          // The data first: a worker that takes the job finds it.
          if (beside) await h.state.putChunkData(id, index, beside.data);
          await h.bull.add('chunk', data, chunkJobOptions(id, index, qualified, attempts));
          if (fp) await h.state.setChunkFingerprint(id, index, fp);
        }
        index++;
        offset += src.rows;
      }
    } catch (err) {
      // This call was enqueueing the operation and cannot finish: fail it, so that its done()
      // rejects instead of waiting for the seal timeout. A conflict leaves the earlier one alone.
      // Only the call that created the record fails it: another call enqueueing the same id may
      // be mid-way, and its operation is not this call's to fail.
      if (created && !(err instanceof BulkError && err.code === 'OPERATION_CONFLICT'))
        await abandon(h.state, h.bull, { id, table, kind }, err).catch((e) =>
          this.logger.warn({ err: e, operationId: id }, 'could not mark the operation failed'),
        );
      throw err;
    }
    if (sealed) {
      const rec = await h.state.record(id);
      if (rec?.totalChunks !== index || rec.totalRows !== offset)
        throw conflict('the input is shorter than');
      return this.opOn(h, id);
    }
    await h.state.seal(id, { totalRows: offset, totalChunks: index });
    await promoteSeal(h.bull, id);
    return this.opOn(h, id);
  }

  private async enqueueSingle(
    kind: OperationKind,
    table: string,
    popts: PayloadOptions,
    operationId: string | undefined,
    extra: Pick<OperationPayload, 'update' | 'copyTo'>,
  ): Promise<Operation> {
    this.assertOpen();
    parseTableName(table);
    await this.backend.prepare();
    const { id, h } = this.place(operationId, kind, table);
    // What the operation does is part of its identity: the same id for another filter or
    // another file is a conflict, not the earlier operation.
    const { sealed } = await register(
      h.state,
      id,
      { kind, table, options: popts, ...extra },
      { kind, table },
    );
    if (!sealed) {
      const data: OperationPayload = {
        v: 1,
        kind,
        operationId: id,
        table,
        options: popts,
        ...extra,
      };
      await h.bull.add('operation', data, {
        jobId: jobIds.parent(id),
        ...PARENT_JOB,
        attempts: this.options.attempts ?? defaultOf('attempts'),
      });
      await h.state.seal(id, undefined);
    }
    return this.opOn(h, id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.handles.values()) {
      await h.reader?.close();
      await h.flows.close();
      await h.bull.close();
    }
    await this.backend.close();
  }
}
