import { createHash, randomUUID } from 'node:crypto';
import { FlowProducer, Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { BulkError } from '../core/errors.js';
import { defaultLogger, type Logger } from '../core/logger.js';
import { parseTableName } from '../core/meta.js';
import { DEFAULT_BATCH_SIZE } from '../core/options.js';
import { chunked } from '../core/runner.js';
import type { Row } from '../core/signals.js';
import type { OnConflict } from '../core/sql/insert.js';
import type { Where } from '../core/sql/where.js';
import { BulkEvents, publishEvent } from './events.js';
import { Operation } from './operation.js';
import type {
  ChunkKind,
  ChunkPayload,
  OperationKind,
  OperationPayload,
  PayloadOptions,
  SealPayload,
} from './payload.js';
import { connect, jobIds, moveState, QueueKeys, type RedisInput } from './redis.js';
import { type Encoded, encodeRows, encodeValue } from './values.js';

export interface BulkProducerOptions {
  /** Redis URL, ioredis options or instance. Default: REDIS_URL, else redis://127.0.0.1:6379. */
  redis?: RedisInput;
  /** BullMQ queue name. Default 'bulkmodel' (BULKMODEL_QUEUE). */
  queue?: string;
  /** BullMQ key prefix. Default 'bull'. */
  prefix?: string;
  /** A chunk's payload larger than this is refused at enqueue (PAYLOAD_TOO_LARGE). Default 16 MiB. */
  maxPayloadBytes?: number;
  /** Attempts per chunk job for transient failures (each attempt also retries inside). Default 8. */
  attempts?: number;
  /** How long a sealed-but-abandoned operation waits before failing. Default 24 h. */
  sealTimeoutMs?: number;
  logger?: Logger;
}

/** Options of queued writes: as in direct mode, but the chunks run on the workers. */
export interface QueueWriteOptions {
  batchSize?: number;
  signals?: boolean;
  /** Makes enqueue idempotent: the same id enqueues once (letters, digits, ._-). */
  operationId?: string;
  /**
   * Accepted for parity with direct mode. In queue mode the parallelism of an operation is
   * the workers' (`--concurrency` times the number of workers); these do not limit it.
   */
  concurrent?: boolean;
  maxConcurrentWorkers?: number;
}

export interface QueueInsertOptions extends QueueWriteOptions {
  returning?: boolean | string[];
  onConflict?: OnConflict;
  key?: string[];
}

export interface QueueUpdateFieldsOptions extends QueueWriteOptions {
  fields?: string[];
  key?: string[];
}

export interface QueueCopyToOptions {
  /** File the worker writes (inside its export directory). */
  path: string;
  format?: 'csv' | 'text' | 'ndjson';
  columns?: string[];
  where?: Where;
  operationId?: string;
  signals?: boolean;
}

type Input = readonly Row[] | Iterable<Row> | AsyncIterable<Row>;

const MAX_BATCH = 1_000_000;
const OP_ID = /^[A-Za-z0-9._-]{1,200}$/;

function checkNames(v: unknown, what: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (
    !Array.isArray(v) ||
    v.length === 0 ||
    v.some((x) => typeof x !== 'string' || x.length === 0)
  ) {
    throw new BulkError('INVALID_OPTION', `${what} must be a non-empty array of column names`);
  }
  return v as string[];
}

/**
 * App-side API: validates and encodes an operation, enqueues it as one BullMQ flow (a parent job
 * and one child job per chunk) and returns a handle to await or watch.
 */
export class BulkProducer {
  readonly keys: QueueKeys;
  readonly logger: Logger;
  private readonly redis: Redis;
  private readonly owned: boolean;
  private readonly queue: Queue;
  private readonly flows: FlowProducer;
  private readonly options: BulkProducerOptions;
  private events: BulkEvents | undefined;
  private closed = false;

  constructor(options: BulkProducerOptions = {}) {
    this.options = options;
    this.logger = options.logger ?? defaultLogger;
    const c = connect(options.redis);
    this.redis = c.redis;
    this.owned = c.owned;
    const queue = options.queue ?? process.env.BULKMODEL_QUEUE ?? 'bulkmodel';
    const prefix = options.prefix ?? 'bull';
    this.keys = new QueueKeys(prefix, queue);
    this.queue = new Queue(queue, { connection: this.redis, prefix });
    this.flows = new FlowProducer({ connection: this.redis, prefix });
    this.queue.on('error', (err) => this.logger.warn({ err }, 'queue connection error'));
    this.flows.on('error', (err) => this.logger.warn({ err }, 'flow producer connection error'));
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

  /** Enqueue a homogeneous update; one worker runs it in key batches. */
  async update(
    table: string,
    args: { where: Where; set: Row },
    options: QueueWriteOptions = {},
  ): Promise<Operation> {
    if (
      !args ||
      typeof args !== 'object' ||
      args.where === undefined ||
      !args.set ||
      typeof args.set !== 'object'
    ) {
      throw new BulkError('INVALID_OPTION', `${table}: update takes { where, set }`);
    }
    const update = {
      where: this.encodeObject(args.where, 'where'),
      set: this.encodeObject(args.set, 'set'),
    };
    return this.enqueueSingle(
      'update',
      table,
      this.payloadOptions(options, {}),
      options.operationId,
      { update },
    );
  }

  /** Enqueue an export: a worker streams COPY TO into `path` (CSV with header, COPY text, or NDJSON). */
  async copyTo(table: string, options: QueueCopyToOptions): Promise<Operation> {
    if (!options || typeof options.path !== 'string' || options.path.length === 0) {
      throw new BulkError('INVALID_OPTION', `${table}: copyTo needs a path`);
    }
    const format = options.format ?? 'csv';
    if (!['csv', 'text', 'ndjson'].includes(format))
      throw new BulkError('INVALID_OPTION', `format must be csv, text or ndjson`);
    const copyTo: NonNullable<OperationPayload['copyTo']> = { path: options.path, format };
    const columns = checkNames(options.columns, 'columns');
    if (columns) copyTo.columns = columns;
    if (options.where !== undefined) copyTo.where = this.encodeObject(options.where, 'where');
    const opts: PayloadOptions = options.signals === false ? { signals: false } : {};
    return this.enqueueSingle('copyTo', table, opts, options.operationId, { copyTo });
  }

  /** A handle on an operation enqueued earlier (by this or another process). */
  operation(id: string): Operation {
    return new Operation(this.ctx(), id);
  }

  private ctx() {
    return {
      queue: this.queue,
      redis: this.redis,
      keys: this.keys,
      events: () => this.eventReader(),
      logger: this.logger,
    };
  }

  private eventReader(): BulkEvents {
    this.events ??= new BulkEvents({
      redis: this.redis,
      queue: this.keys.queue,
      prefix: this.keys.prefix,
    });
    return this.events;
  }

  private encodeObject(o: unknown, what: string): Record<string, Encoded> {
    if (o === null || typeof o !== 'object' || Array.isArray(o))
      throw new BulkError('INVALID_OPTION', `${what} must be an object`);
    const e = encodeValue(o, what) as { v: Record<string, Encoded> };
    return e.v;
  }

  private payloadOptions(
    o: QueueInsertOptions & QueueUpdateFieldsOptions,
    extra: PayloadOptions,
  ): PayloadOptions {
    if (o === null || typeof o !== 'object')
      throw new BulkError('INVALID_OPTION', 'options must be an object');
    const known = new Set([
      'batchSize',
      'signals',
      'operationId',
      'concurrent',
      'maxConcurrentWorkers',
      'returning',
      'onConflict',
      'key',
      'fields',
      'transaction',
    ]);
    for (const k of Object.keys(o))
      if (!known.has(k))
        throw new BulkError('INVALID_OPTION', `unknown option ${JSON.stringify(k)}`);
    if ((o as { transaction?: string }).transaction === 'operation') {
      throw new BulkError(
        'INVALID_OPTION',
        "transaction: 'operation' needs direct mode (one connection); queued chunks commit one by one",
      );
    }
    if (
      o.operationId !== undefined &&
      (typeof o.operationId !== 'string' || !OP_ID.test(o.operationId))
    ) {
      throw new BulkError(
        'INVALID_OPTION',
        'operationId must be 1-200 characters of letters, digits and ._-',
      );
    }
    const out: PayloadOptions = { ...extra };
    if (o.batchSize !== undefined) {
      if (!Number.isInteger(o.batchSize) || o.batchSize < 1 || o.batchSize > MAX_BATCH) {
        throw new BulkError(
          'INVALID_OPTION',
          `batchSize must be an integer from 1 to ${MAX_BATCH}`,
        );
      }
      out.batchSize = o.batchSize;
    }
    if (o.signals === false) out.signals = false;
    if (o.returning !== undefined && o.returning !== false) {
      out.returning =
        o.returning === true ? true : (checkNames(o.returning, 'returning') as string[]);
    }
    if (o.onConflict !== undefined) {
      if (o.onConflict === 'ignore') out.onConflict = 'ignore';
      else if (o.onConflict && typeof o.onConflict === 'object') {
        out.onConflict = {
          target: checkNames(o.onConflict.target, 'onConflict.target')!,
          update: o.onConflict.update ?? [],
        };
      } else
        throw new BulkError('INVALID_OPTION', "onConflict must be 'ignore' or { target, update }");
    }
    const key = checkNames(o.key, 'key');
    if (key) out.key = key;
    const fields = checkNames(o.fields, 'fields');
    if (fields) out.fields = fields;
    return out;
  }

  private assertOpen(): void {
    if (this.closed) throw new BulkError('CLOSED', 'this BulkProducer is closed');
  }

  /** Record the operation (idempotently) and refuse an id reused for another operation. */
  private async register(
    id: string,
    kind: OperationKind,
    table: string,
    options: PayloadOptions,
  ): Promise<{ sealed: boolean }> {
    const key = this.keys.op(id);
    const identity = JSON.stringify({ kind, table, options });
    const created = await this.redis.hsetnx(key, 'identity', identity);
    if (!created) {
      const prev = await this.redis.hmget(key, 'identity', 'sealed');
      if (prev[0] !== identity) {
        throw new BulkError(
          'OPERATION_CONFLICT',
          `operation ${id} was enqueued before as a different operation`,
          { table },
        );
      }
      return { sealed: prev[1] === '1' };
    }
    const now = Date.now();
    await this.redis
      .multi()
      .hset(key, {
        kind,
        table,
        createdAt: String(now),
        state: 'enqueueing',
        rowsDone: '0',
        chunksDone: '0',
      })
      .zadd(this.keys.ops, String(now), id)
      .exec();
    return { sealed: false };
  }

  private async enqueueChunks(
    kind: ChunkKind,
    table: string,
    rows: Input,
    options: QueueInsertOptions & QueueUpdateFieldsOptions,
  ): Promise<Operation> {
    this.assertOpen();
    parseTableName(table);
    const popts = this.payloadOptions(options, {});
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
    const givenId = options.operationId !== undefined;
    const id = options.operationId ?? randomUUID();
    const batchSize = popts.batchSize ?? DEFAULT_BATCH_SIZE;
    const opKey = this.keys.op(id);
    const { sealed } = await this.register(id, kind, table, popts);
    if (sealed) {
      // Enqueued before under this id. An operation that ended in failure is returned as is (its
      // done() rejects); otherwise the input must be the same, chunk by chunk, or it is a conflict.
      const state = await this.redis.hget(opKey, 'state');
      if (state === 'failed' || state === 'cancelled') return new Operation(this.ctx(), id);
    }
    const parent: OperationPayload = { v: 1, kind, operationId: id, table, options: popts };
    const seal: SealPayload = { v: 1, operationId: id, seal: true };
    const { queue, qualified } = { queue: this.keys.queue, qualified: this.keys.qualified };
    if (!sealed && !(await Job.fromId(this.queue, jobIds.parent(id)))) {
      await this.flows.add({
        name: 'operation',
        queueName: queue,
        data: parent,
        opts: {
          jobId: jobIds.parent(id),
          removeOnComplete: { age: 7 * 24 * 3600, count: 10_000 },
          removeOnFail: { age: 7 * 24 * 3600 },
        },
        children: [
          {
            name: 'seal',
            queueName: queue,
            data: seal,
            opts: {
              jobId: jobIds.seal(id),
              delay: this.options.sealTimeoutMs ?? 24 * 3600_000,
              failParentOnFailure: true,
              removeOnComplete: true,
            },
          },
        ],
      });
    }
    const maxBytes = this.options.maxPayloadBytes ?? 16 * 1024 * 1024;
    const attempts = this.options.attempts ?? 8;
    const conflict = (what: string) =>
      new BulkError(
        'OPERATION_CONFLICT',
        `operation ${id}: ${what} the one enqueued before under this id`,
        { table },
      );
    let index = 0;
    let offset = 0;
    try {
      for await (const chunk of chunked(rows as AsyncIterable<Row>, batchSize)) {
        const enc = encodeRows(chunk, offset);
        const data: ChunkPayload = {
          v: 1,
          kind,
          operationId: id,
          table,
          chunk: { index, offset },
          options: popts,
          columns: enc.columns,
          rows: enc.rows,
        };
        const json = JSON.stringify(data);
        const bytes = Buffer.byteLength(json);
        if (bytes > maxBytes) {
          throw new BulkError(
            'PAYLOAD_TOO_LARGE',
            `${table}: chunk ${index} (rows ${offset}-${offset + chunk.length - 1}) is ${bytes} bytes, over the ${maxBytes}-byte limit: lower batchSize`,
            { table, row: offset },
          );
        }
        // Fingerprints make a repeated operationId safe; an id generated here cannot be reused,
        // so those calls skip them (and check the operation's state every few chunks only).
        let prevFp: string | null = null;
        let fp: string | undefined;
        let state: string | null = null;
        if (givenId) {
          fp = createHash('sha1').update(json).digest('base64');
          const got = await this.redis.hmget(opKey, `fp${index}`, 'state');
          prevFp = got[0] ?? null;
          state = got[1] ?? null;
          if (prevFp !== null && prevFp !== fp) throw conflict(`chunk ${index} differs from`);
          if (sealed && prevFp === null) throw conflict('the input is longer than');
        } else if (index % 8 === 7) {
          state = await this.redis.hget(opKey, 'state');
        }
        // A worker failed the operation (bad input): enqueueing more would only be skipped.
        if (state === 'failed' || state === 'cancelled') break;
        if (prevFp === null) {
          await this.queue.add('chunk', data, {
            jobId: jobIds.chunk(id, index),
            parent: { id: jobIds.parent(id), queue: qualified },
            failParentOnFailure: true,
            attempts,
            backoff: { type: 'exponential', delay: 1000 },
            removeOnComplete: { count: 1000 },
            removeOnFail: { age: 7 * 24 * 3600 },
          });
          if (fp) await this.redis.hset(opKey, `fp${index}`, fp);
        }
        index++;
        offset += chunk.length;
      }
    } catch (err) {
      // This call was enqueueing the operation and cannot finish: fail it, so that its done()
      // rejects instead of waiting for the seal timeout. A conflict leaves the earlier one alone.
      if (!sealed && !(err instanceof BulkError && err.code === 'OPERATION_CONFLICT'))
        await this.abandon(id, table, kind, err).catch((e) =>
          this.logger.warn({ err: e, operationId: id }, 'could not mark the operation failed'),
        );
      throw err;
    }
    if (sealed) {
      const [chunks, total] = await this.redis.hmget(opKey, 'totalChunks', 'totalRows');
      if (Number(chunks) !== index || Number(total) !== offset)
        throw conflict('the input is shorter than');
      return new Operation(this.ctx(), id);
    }
    await this.redis.hset(opKey, {
      sealed: '1',
      totalRows: String(offset),
      totalChunks: String(index),
    });
    // 'queued' unless a worker has moved the operation on meanwhile.
    await this.redis.eval(
      "if redis.call('hget', KEYS[1], 'state') == 'enqueueing' then redis.call('hset', KEYS[1], 'state', 'queued') end",
      1,
      opKey,
    );
    await this.promoteSeal(id);
    return new Operation(this.ctx(), id);
  }

  /** Let the seal run now (once enqueueing ended). Another producer may have promoted it already. */
  private async promoteSeal(id: string): Promise<void> {
    const sealJob = await Job.fromId(this.queue, jobIds.seal(id));
    if (!sealJob || (await sealJob.getState()) !== 'delayed') return;
    try {
      await sealJob.promote();
    } catch (err) {
      if ((await sealJob.getState()) === 'delayed') throw err;
    }
  }

  /** Fail an operation whose enqueueing stopped (bad row, payload too large, source error). */
  private async abandon(id: string, table: string, kind: string, err: unknown): Promise<void> {
    const bulk =
      err instanceof BulkError
        ? err
        : new BulkError(
            'CANCELLED',
            `operation ${id}: enqueueing stopped: ${String((err as Error)?.message ?? err)}`,
            { table, cause: err },
          );
    const key = this.keys.op(id);
    await this.redis.hsetnx(key, 'error', JSON.stringify(bulk.toJSON()));
    await moveState(this.redis, key, { state: 'failed', finishedAt: String(Date.now()) });
    await publishEvent(this.redis, this.keys, 'failed', {
      operationId: id,
      table,
      kind,
      state: 'failed',
      error: { code: bulk.code, message: bulk.message },
    });
    // The seal now fails (never sealed), failing the parent job and releasing it.
    await this.promoteSeal(id);
  }

  private async enqueueSingle(
    kind: OperationKind,
    table: string,
    popts: PayloadOptions,
    operationId: string | undefined,
    extra: Partial<OperationPayload>,
  ): Promise<Operation> {
    this.assertOpen();
    parseTableName(table);
    if (operationId !== undefined && !OP_ID.test(operationId)) {
      throw new BulkError(
        'INVALID_OPTION',
        'operationId must be 1-200 characters of letters, digits and ._-',
      );
    }
    const id = operationId ?? randomUUID();
    const { sealed } = await this.register(id, kind, table, popts);
    if (!sealed) {
      const data: OperationPayload = {
        v: 1,
        kind,
        operationId: id,
        table,
        options: popts,
        ...extra,
      };
      await this.queue.add('operation', data, {
        jobId: jobIds.parent(id),
        attempts: this.options.attempts ?? 8,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: { age: 7 * 24 * 3600, count: 10_000 },
        removeOnFail: { age: 7 * 24 * 3600 },
      });
      await this.redis.hset(this.keys.op(id), { sealed: '1', state: 'queued' });
    }
    return new Operation(this.ctx(), id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.events?.close();
    await this.flows.close();
    await this.queue.close();
    if (this.owned) await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
