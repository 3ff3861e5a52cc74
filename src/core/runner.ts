import pLimit from 'p-limit';
import type { DbClient, DbPool } from './db.js';
import { type BulkError, fromPgError } from './errors.js';
import type { Ledger } from './ledger.js';
import type { Logger } from './logger.js';
import { type RetryPolicy, withRetry } from './retry.js';
import type { Row } from './signals.js';
import { withClient, withTransaction } from './tx.js';

/** What an operation runs on: the pool, the ledger, the retry policy and the client-wide cap. */
export interface Engine {
  pool: DbPool;
  ledger: Ledger | null;
  retry: RetryPolicy;
  logger: Logger;
  /** Client-wide cap on connections used by chunk writes (MAX_CONCURRENT_BATCH_WRITES). */
  writeSlots: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Server-side idle-in-transaction limit for chunk transactions (0: none). */
  chunkIdleTimeoutMs?: number;
}

export interface Chunk {
  index: number;
  /** Index of the chunk's first row in the operation's input. */
  offset: number;
  rows: Row[];
}

export interface ChunkResultBase {
  count: number;
}

/**
 * The steps of one operation's chunk, as the runner calls them:
 * - prepare: outside any transaction (pre signal, validation, encoding, key reservation);
 *   it may fail with a BulkError before anything is written;
 * - write: inside the chunk's transaction, after the ledger claim; returns the result and
 *   what the ledger keeps of it;
 * - recover: the chunk had committed before (ledger row found): rebuild the result from it;
 * - after: once committed (post signal).
 */
export interface ChunkSteps<P, R extends ChunkResultBase> {
  /** `client` is given when every chunk runs in one transaction: use it, not the pool. */
  prepare(chunk: Chunk, client?: DbClient): Promise<P>;
  write(client: DbClient, prepared: P, hooks: WriteHooks): Promise<{ result: R; ledger: unknown }>;
  /**
   * The write calls `hooks.busy()` once it has handed the server its long statement: a
   * sequential call prepares its next chunk then, while the server works, instead of as soon
   * as this chunk's write starts (which would hold up its first round trips).
   */
  signalsBusy?: boolean;
  recover(client: DbClient, prepared: P, ledgerValue: unknown): Promise<R>;
  after?(prepared: P, result: R): Promise<void>;
}

export interface RunOptions {
  operationId: string;
  /** Chunks written at once (1 unless `concurrent`). */
  concurrency: number;
  /** 'chunk': each chunk commits alone; 'operation': all chunks in one transaction. */
  transaction: 'chunk' | 'operation';
  table: string;
  /** Called after each committed chunk (progress). */
  onChunk?: (done: { chunks: number; rows: number }) => void;
  /** The content's digest, kept in each chunk's ledger row (see Ledger). */
  fingerprint?: string | undefined;
}

export type Source = AsyncIterable<Row[]> | Iterable<Row[]>;

export interface WriteHooks {
  /** The server has been handed the chunk's long statement (a COPY's last data, an UPDATE). */
  busy(): void;
}

const NO_HOOKS: WriteHooks = { busy: () => {} };

/** A chunk not prepared because another had failed first. */
const SKIPPED = Symbol('skipped');

function annotate(err: unknown, table: string, chunks: number, rows: number): BulkError {
  // A source's own failure (update's key scan, a user's iterable) is not wrapped yet: a
  // Postgres error gets its code and its values hidden like any other.
  const e = fromPgError(err, { table });
  e.committedChunks = chunks;
  e.committedRows = rows;
  if (chunks > 0 && !e.message.includes('already committed')) {
    e.message += ` (${chunks} chunk${chunks === 1 ? '' : 's'} with ${rows} rows had already committed)`;
  }
  return e;
}

/** Run one chunk in its own transaction, with the ledger, retrying transient failures. */
async function runChunk<P, R extends ChunkResultBase>(
  engine: Engine,
  at: { operationId: string; table: string; fingerprint?: string | undefined },
  steps: ChunkSteps<P, R>,
  prepared: P,
  index: number,
  signal?: AbortSignal,
  hooks: WriteHooks = NO_HOOKS,
): Promise<R> {
  const { operationId: opId, table, fingerprint } = at;
  return withRetry(
    () =>
      engine
        .writeSlots(() =>
          withTransaction(
            engine.pool,
            async (client) => {
              if (engine.ledger) {
                // First statement of the transaction: a replay of a committed chunk stops here,
                // and a concurrent runner of the same chunk waits on this row.
                const claim = await engine.ledger.claim(client, opId, index, fingerprint);
                if (!claim.claimed) return steps.recover(client, prepared, claim.result);
              }
              const { result, ledger } = await steps.write(client, prepared, hooks);
              if (engine.ledger) await engine.ledger.complete(client, opId, index, ledger);
              return result;
            },
            { idleTimeoutMs: engine.chunkIdleTimeoutMs },
          ),
        )
        .catch((err) => {
          throw fromPgError(err, { table });
        }),
    engine.retry,
    {
      signal,
      onRetry: ({ attempt, delayMs, why }) =>
        engine.logger.warn(
          { operationId: opId, chunk: index, attempt, delayMs, why },
          'chunk failed transiently; retrying',
        ),
    },
  );
}

/**
 * Split-and-write: pull chunks from the source, prepare and write up to `concurrency` at once,
 * stop scheduling at the first failure, and return results in chunk order.
 *
 * After a failure no further chunk is pulled from the source or started; chunks already in
 * flight finish (their retries stop waiting), so the error's committed counts are final and
 * nothing keeps writing after the call has rejected.
 */
export async function runChunks<P, R extends ChunkResultBase>(
  engine: Engine,
  source: Source,
  steps: ChunkSteps<P, R>,
  opts: RunOptions,
): Promise<R[]> {
  const results: R[] = [];
  let committedChunks = 0;
  let committedRows = 0;
  let failure: { err: unknown } | undefined;
  const stop = new AbortController();
  const fail = (err: unknown) => {
    if (failure) return;
    failure = { err };
    stop.abort();
  };
  const inflight = new Set<Promise<void>>();
  // Writes of this call take one of `concurrency` places; one more chunk may be prepared
  // (validated, encoded) meanwhile, so JS work overlaps the database's instead of alternating.
  const writePlaces = pLimit(opts.concurrency);
  const ahead = opts.concurrency + 1;
  let prepared$: Promise<unknown> = Promise.resolve();
  const iterator =
    Symbol.asyncIterator in source
      ? (source as AsyncIterable<Row[]>)[Symbol.asyncIterator]()
      : (source as Iterable<Row[]>)[Symbol.iterator]();
  let index = 0;
  let offset = 0;
  let exhausted = false;
  try {
    while (!failure) {
      // Wait for a free place first, so nothing is pulled from the source after a failure.
      while (inflight.size >= ahead && !failure) await Promise.race(inflight);
      if (failure) break;
      const next = await iterator.next();
      if (next.done) {
        exhausted = true;
        break;
      }
      const rows = next.value;
      if (rows.length === 0) continue;
      const chunk: Chunk = { index: index++, offset, rows };
      offset += rows.length;
      // Sequential calls prepare in chunk order (pre signals, reserved keys ascend with input);
      // concurrent ones prepare their chunks independently.
      // A chunk whose turn comes after a failure is not prepared (no pre signal, no reserved keys).
      const prepare = (): Promise<P> => (failure ? Promise.reject(SKIPPED) : steps.prepare(chunk));
      const preparing = opts.concurrency === 1 ? prepared$.then(prepare) : prepare();
      // The next chunk is prepared once this one is, or (steps that signal it) once this one's
      // write has handed the server its long statement, or has ended either way.
      let handedOff!: () => void;
      const handoff = new Promise<void>((r) => {
        handedOff = r;
      });
      const hooks: WriteHooks = { busy: handedOff };
      prepared$ = steps.signalsBusy ? handoff : preparing.catch(() => {});
      const p: Promise<void> = (async () => {
        const ready = await preparing.then(
          (p) => ({ p }),
          (err) => {
            if (err === SKIPPED) return undefined;
            throw err;
          },
        );
        if (!ready) return;
        const prepared = ready.p;
        if (failure) return; // another chunk failed while this one was being prepared
        const r = await writePlaces(async () => {
          if (failure) return undefined;
          try {
            return await runChunk(engine, opts, steps, prepared, chunk.index, stop.signal, hooks);
          } catch (err) {
            fail(err); // before the place is handed to the next waiting chunk
            throw err;
          } finally {
            handedOff(); // a write that never said busy (recovered from the ledger, say)
          }
        });
        if (r === undefined) return; // another chunk failed while this one waited for a place
        results[chunk.index] = r;
        committedChunks++;
        committedRows += r.count;
        opts.onChunk?.({ chunks: committedChunks, rows: committedRows });
        await steps.after?.(prepared, r);
      })()
        .catch(fail)
        .finally(() => {
          handedOff();
          inflight.delete(p);
        });
      inflight.add(p);
    }
  } catch (err) {
    // The source itself failed (a user's iterable threw, or reading keys for update failed).
    fail(err);
  } finally {
    if (!exhausted) {
      // Let the source clean up (close a cursor, stop a generator); its own error is secondary.
      try {
        await iterator.return?.();
      } catch {}
    }
    await Promise.all(inflight);
  }
  if (failure) throw annotate(failure.err, opts.table, committedChunks, committedRows);
  return results;
}

/**
 * All chunks in one transaction on one client: all or nothing. Post steps run after COMMIT.
 * A transient failure retries the whole operation when the source can be read again.
 */
export async function runInOneTransaction<P, R extends ChunkResultBase>(
  engine: Engine,
  /** Given the transaction's client, so that a source reading the database uses it too. */
  source: (client: DbClient) => Source,
  replayable: boolean,
  steps: ChunkSteps<P, R>,
  opts: RunOptions,
): Promise<R[]> {
  const attempt = async (): Promise<{ results: R[]; prepared: P[] }> => {
    const results: R[] = [];
    const prepared: P[] = [];
    await engine.writeSlots(() =>
      withTransaction(engine.pool, async (client) => {
        let index = 0;
        let offset = 0;
        for await (const rows of source(client) as AsyncIterable<Row[]>) {
          if (rows.length === 0) continue;
          const chunk: Chunk = { index: index++, offset, rows };
          offset += rows.length;
          const p = await steps.prepare(chunk, client);
          prepared.push(p);
          let r: R | undefined;
          if (engine.ledger) {
            const claim = await engine.ledger.claim(
              client,
              opts.operationId,
              chunk.index,
              opts.fingerprint,
            );
            if (!claim.claimed) r = await steps.recover(client, p, claim.result);
          }
          if (!r) {
            const w = await steps.write(client, p, NO_HOOKS);
            if (engine.ledger)
              await engine.ledger.complete(client, opts.operationId, chunk.index, w.ledger);
            r = w.result;
          }
          results.push(r);
        }
      }),
    );
    return { results, prepared };
  };
  const wrapped = () =>
    attempt().catch((err) => {
      throw fromPgError(err, { table: opts.table });
    });
  const { results, prepared } = replayable
    ? await withRetry(wrapped, engine.retry)
    : await wrapped();
  let rows = 0;
  for (let i = 0; i < results.length; i++) {
    rows += results[i]!.count;
    opts.onChunk?.({ chunks: i + 1, rows });
    await steps.after?.(prepared[i]!, results[i]!);
  }
  return results;
}

/** Split an array or (async) iterable of rows into arrays of `size`, lazily. */
export async function* chunked(
  input: AsyncIterable<Row> | Iterable<Row>,
  size: number,
): AsyncGenerator<Row[]> {
  if (Array.isArray(input)) {
    for (let i = 0; i < input.length; i += size) yield input.slice(i, i + size);
    return;
  }
  let buf: Row[] = [];
  for await (const row of input as AsyncIterable<Row>) {
    buf.push(row);
    if (buf.length >= size) {
      yield buf;
      buf = [];
    }
  }
  if (buf.length) yield buf;
}

/** Run one read-only or setup query with retry (outside chunk transactions). */
export function queryWithRetry<T>(
  engine: Engine,
  fn: (client: DbClient) => Promise<T>,
): Promise<T> {
  return withRetry(() => withClient(engine.pool, fn), engine.retry);
}

/**
 * Run one chunk of a larger operation whose other chunks run elsewhere (a queue worker):
 * prepare, write in its own transaction under the ledger (a replay is recovered, not rewritten),
 * then the post step.
 */
export async function runOneChunk<P, R extends ChunkResultBase>(
  engine: Engine,
  chunk: Chunk,
  steps: ChunkSteps<P, R>,
  opts: { operationId: string; table: string; fingerprint?: string | undefined },
): Promise<R> {
  const prepared = await steps.prepare(chunk);
  const r = await runChunk(engine, opts, steps, prepared, chunk.index);
  await steps.after?.(prepared, r);
  return r;
}
