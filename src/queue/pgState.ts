import { hostname } from 'node:os';
import pg from 'pg';
import { to as copyToStdout } from 'pg-copy-streams';
import { quoteIdent } from '../core/ident.js';
import { defaultOf } from '../core/settings.js';
import { EVENTS_CHANNEL } from './pgSchema.js';
import {
  type Counters,
  type EventReader,
  type EventReaderOptions,
  type OpRecord,
  type QueueState,
  type StoredEvent,
  storedNumber,
  storedTotals,
  toOpRecord,
} from './state.js';

/**
 * QueueState in Postgres (the tables of src/queue/pgSchema.ts, in the queue schema beside
 * BullMQ's). Every step that reads and writes is one function call, so one atomic statement;
 * events wake readers with NOTIFY on EVENTS_CHANNEL and are read from a table.
 */

interface OpRow {
  id: string;
  kind: string | null;
  tbl: string | null;
  state: string | null;
  identity: string | null;
  sealed: boolean;
  returns_rows: boolean;
  encoding: string | null;
  rows_done: string;
  chunks_done: number;
  retries: number;
  total_rows: string | null;
  total_chunks: number | null;
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
}

const OP_COLUMNS =
  'id, kind, tbl, state, identity, sealed, returns_rows, encoding, rows_done, chunks_done, retries, total_rows, total_chunks, created_at, started_at, finished_at, error';

const num = storedNumber;

/** A row that holds none of a record's fields (only an export, say) is no record, as in Redis. */
function toRecord(row: OpRow | undefined): OpRecord | null {
  if (!row) return null;
  const empty =
    row.kind === null &&
    row.tbl === null &&
    row.state === null &&
    row.identity === null &&
    row.encoding === null &&
    row.error === null &&
    row.total_rows === null &&
    row.total_chunks === null &&
    row.created_at === null &&
    row.started_at === null &&
    row.finished_at === null &&
    !row.sealed &&
    !row.returns_rows &&
    Number(row.rows_done) === 0 &&
    row.chunks_done === 0 &&
    row.retries === 0;
  if (empty) return null;
  return toOpRecord(row.id, {
    kind: row.kind,
    table: row.tbl,
    state: row.state,
    identity: row.identity,
    sealed: row.sealed,
    returning: row.returns_rows,
    encoding: row.encoding,
    rowsDone: row.rows_done,
    chunksDone: row.chunks_done,
    retries: row.retries,
    totalRows: row.total_rows,
    totalChunks: row.total_chunks,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    error: row.error,
  });
}

interface EventRow {
  id: string;
  time: string;
  name: string;
  op_id: string;
  data: string;
}

function toEvent(row: EventRow): StoredEvent {
  return {
    id: String(row.id),
    time: Number(row.time),
    name: row.name,
    operationId: row.op_id,
    data: row.data,
  };
}

/** A string as an SQL literal, whatever standard_conforming_strings says (COPY takes no parameters). */
function quoteLiteral(s: string): string {
  return `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * The one row of a binary COPY of (size, data): the data, null when no row came, or the size
 * when the data is NULL (over the limit). The format: an 11-byte signature, flags, a header
 * extension; then per row a field count, and per field its length (-1: NULL) and bytes.
 */
function binaryCopyRow(buf: Buffer): Buffer | null | { bytes: number } {
  let at = 11 + 4;
  at += 4 + buf.readInt32BE(at);
  const fields = buf.readInt16BE(at);
  if (fields === -1) return null;
  at += 2;
  const sizeLen = buf.readInt32BE(at);
  const size = buf.readInt32BE(at + 4);
  at += 4 + sizeLen;
  const dataLen = buf.readInt32BE(at);
  if (dataLen === -1) return { bytes: size };
  return buf.subarray(at + 4, at + 4 + dataLen);
}

export class PostgresQueueState implements QueueState {
  private readonly s: string;

  constructor(
    private readonly pool: pg.Pool,
    /** Connection settings for event readers' own connections. */
    private readonly readerConfig: pg.ClientConfig,
    readonly schema: string,
    readonly queue: string,
  ) {
    this.s = quoteIdent(schema);
  }

  private q(text: string, values: unknown[]) {
    return this.pool.query({ text, values });
  }

  async register(
    id: string,
    identity: string,
    fields: { kind: string; table: string; returning: boolean; encoding?: string },
  ) {
    const r = await this.q(`SELECT * FROM ${this.s}.bm_register($1, $2, $3, $4, $5, $6, $7, $8)`, [
      this.queue,
      id,
      identity,
      Date.now(),
      fields.kind,
      fields.table,
      fields.returning,
      fields.encoding ?? '',
    ]);
    const row = r.rows[0] as {
      created: boolean;
      identity: string | null;
      sealed: boolean;
      state: string | null;
      encoding: string | null;
    };
    return {
      created: row.created,
      identity: row.identity,
      sealed: row.sealed,
      state: row.state,
      encoding: row.encoding,
    };
  }

  async chunkFingerprint(id: string, index: number) {
    const r = await this.q(
      `SELECT (SELECT fp FROM ${this.s}.bm_chunk WHERE queue = $1 AND op_id = $2 AND idx = $3) AS fp,
              (SELECT state FROM ${this.s}.bm_op WHERE queue = $1 AND id = $2) AS state`,
      [this.queue, id, index],
    );
    return { fp: (r.rows[0].fp as string | null) ?? null, state: r.rows[0].state ?? null };
  }

  async setChunkFingerprint(id: string, index: number, fp: string): Promise<void> {
    await this.q(
      `INSERT INTO ${this.s}.bm_chunk (queue, op_id, idx, fp) VALUES ($1, $2, $3, $4)
       ON CONFLICT (queue, op_id, idx) DO UPDATE SET fp = EXCLUDED.fp`,
      [this.queue, id, index, fp],
    );
  }

  async stateOf(id: string): Promise<string | null> {
    const r = await this.q(`SELECT state FROM ${this.s}.bm_op WHERE queue = $1 AND id = $2`, [
      this.queue,
      id,
    ]);
    return (r.rows[0]?.state as string | null | undefined) ?? null;
  }

  async seal(id: string, totals: { totalRows: number; totalChunks: number } | undefined) {
    await this.q(
      `INSERT INTO ${this.s}.bm_op AS o (queue, id, indexed_at, sealed, total_rows, total_chunks)
       VALUES ($1, $2, $3, true, $4, $5)
       ON CONFLICT (queue, id) DO UPDATE SET sealed = true,
         total_rows = coalesce(EXCLUDED.total_rows, o.total_rows),
         total_chunks = coalesce(EXCLUDED.total_chunks, o.total_chunks),
         state = CASE WHEN o.state = 'enqueueing' THEN 'queued' ELSE o.state END`,
      [this.queue, id, Date.now(), totals?.totalRows ?? null, totals?.totalChunks ?? null],
    );
  }

  async record(id: string): Promise<OpRecord | null> {
    const r = await this.q(
      `SELECT ${OP_COLUMNS} FROM ${this.s}.bm_op WHERE queue = $1 AND id = $2`,
      [this.queue, id],
    );
    return toRecord(r.rows[0] as OpRow | undefined);
  }

  async records(limit: number): Promise<OpRecord[]> {
    const r = await this.q(
      `SELECT ${OP_COLUMNS} FROM ${this.s}.bm_op WHERE queue = $1
       ORDER BY indexed_at DESC, id DESC LIMIT $2`,
      [this.queue, Math.max(1, limit)],
    );
    const out: OpRecord[] = [];
    for (const row of r.rows as OpRow[]) {
      const rec = toRecord(row);
      if (rec) out.push(rec);
    }
    return out;
  }

  async finish(
    id: string,
    to: 'completed' | 'failed' | 'cancelled',
    extra: { error?: string; rowsDone?: number } = {},
  ): Promise<boolean> {
    const r = await this.q(
      `INSERT INTO ${this.s}.bm_op AS o (queue, id, indexed_at, state, finished_at, error, rows_done)
       VALUES ($1, $2, $3, $4, $3, $5::text, coalesce($6::bigint, 0))
       ON CONFLICT (queue, id) DO UPDATE SET state = EXCLUDED.state,
         finished_at = EXCLUDED.finished_at,
         error = coalesce($5::text, o.error),
         rows_done = coalesce($6::bigint, o.rows_done)
       WHERE o.state IS NULL OR o.state NOT IN ('completed', 'failed', 'cancelled')`,
      [this.queue, id, Date.now(), to, extra.error ?? null, extra.rowsDone ?? null],
    );
    return r.rowCount === 1;
  }

  async fail(id: string, error: string): Promise<boolean> {
    const r = await this.q(`SELECT ${this.s}.bm_fail($1, $2, $3, $4) AS set`, [
      this.queue,
      id,
      error,
      Date.now(),
    ]);
    return r.rows[0].set === true;
  }

  async jobStarted(id: string, jobId: string, worker: string) {
    const r = await this.q(`SELECT * FROM ${this.s}.bm_job_started($1, $2, $3, $4, $5)`, [
      this.queue,
      id,
      Date.now(),
      jobId,
      worker,
    ]);
    const row = r.rows[0] as {
      first: boolean;
      total_rows: string | null;
      total_chunks: number | null;
    };
    if (!row.first) return { first: false };
    return { first: true, ...storedTotals(row.total_rows, row.total_chunks) };
  }

  async jobEnded(id: string, jobId: string): Promise<void> {
    await this.q(
      `DELETE FROM ${this.s}.bm_active WHERE queue = $1 AND op_id = $2 AND job_id = $3`,
      [this.queue, id, jobId],
    );
  }

  async chunkDone(id: string, index: number, rows: number, jobId: string): Promise<Counters> {
    const r = await this.q(`SELECT * FROM ${this.s}.bm_chunk_done($1, $2, $3, $4, $5, $6)`, [
      this.queue,
      id,
      index,
      rows,
      Date.now(),
      jobId,
    ]);
    const row = r.rows[0] as {
      rows_done: string;
      chunks_done: number;
      total_rows: string | null;
      total_chunks: number | null;
    };
    return {
      rowsDone: num(row.rows_done) ?? 0,
      chunksDone: row.chunks_done,
      ...storedTotals(row.total_rows, row.total_chunks),
    };
  }

  async doneChunks(id: string): Promise<number[]> {
    const r = await this.q(
      `SELECT idx FROM ${this.s}.bm_chunk WHERE queue = $1 AND op_id = $2 AND done ORDER BY idx`,
      [this.queue, id],
    );
    return r.rows.map((x) => (x as { idx: number }).idx);
  }

  async countRetry(id: string): Promise<void> {
    await this.q(
      `INSERT INTO ${this.s}.bm_op AS o (queue, id, indexed_at, retries) VALUES ($1, $2, $3, 1)
       ON CONFLICT (queue, id) DO UPDATE SET retries = o.retries + 1`,
      [this.queue, id, Date.now()],
    );
  }

  async claimEndLog(id: string): Promise<boolean> {
    const r = await this.q(
      `INSERT INTO ${this.s}.bm_op AS o (queue, id, indexed_at, end_logged) VALUES ($1, $2, $3, true)
       ON CONFLICT (queue, id) DO UPDATE SET end_logged = true WHERE NOT o.end_logged`,
      [this.queue, id, Date.now()],
    );
    return r.rowCount === 1;
  }

  async setExport(id: string, identity: string, count: number): Promise<void> {
    await this.q(
      `INSERT INTO ${this.s}.bm_op AS o (queue, id, indexed_at, exports)
       VALUES ($1, $2, $3, jsonb_build_object($4::text, $5::bigint))
       ON CONFLICT (queue, id) DO UPDATE SET exports = o.exports || EXCLUDED.exports`,
      [this.queue, id, Date.now(), identity, count],
    );
  }

  async getExport(id: string, identity: string): Promise<number | undefined> {
    const r = await this.q(
      `SELECT exports ->> $3 AS n FROM ${this.s}.bm_op WHERE queue = $1 AND id = $2`,
      [this.queue, id, identity],
    );
    const v = r.rows[0]?.n as string | null | undefined;
    return v === null || v === undefined ? undefined : Number(v);
  }

  async activeWorkers(ids: readonly string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (ids.length === 0) return out;
    const r = await this.q(
      `SELECT op_id, array_agg(DISTINCT worker) AS workers FROM ${this.s}.bm_active
       WHERE queue = $1 AND op_id = ANY($2::text[]) GROUP BY op_id`,
      [this.queue, [...ids]],
    );
    for (const row of r.rows as { op_id: string; workers: string[] }[])
      out.set(row.op_id, [...row.workers].sort());
    return out;
  }

  async prune(cutoffMs: number): Promise<number> {
    const r = await this.q(
      `WITH d AS (DELETE FROM ${this.s}.bm_op WHERE queue = $1 AND indexed_at <= $2 RETURNING id),
            c AS (DELETE FROM ${this.s}.bm_chunk WHERE queue = $1 AND op_id IN (SELECT id FROM d)),
            a AS (DELETE FROM ${this.s}.bm_active WHERE queue = $1 AND op_id IN (SELECT id FROM d)),
            x AS (DELETE FROM ${this.s}.bm_chunk_data WHERE queue = $1 AND op_id IN (SELECT id FROM d))
       SELECT count(*)::int AS n FROM d`,
      [this.queue, cutoffMs],
    );
    return r.rows[0].n as number;
  }

  async putChunkData(id: string, index: number, data: Buffer): Promise<void> {
    // (A Buffer goes as a binary parameter: no hex text either way.)
    await this.q(
      `INSERT INTO ${this.s}.bm_chunk_data (queue, op_id, idx, data) VALUES ($1, $2, $3, $4)
       ON CONFLICT (queue, op_id, idx) DO NOTHING`,
      [this.queue, id, index, data],
    );
  }

  async chunkData(
    id: string,
    index: number,
    maxBytes: number,
  ): Promise<Buffer | null | { bytes: number }> {
    // COPY ... (FORMAT binary): the bytes as they are stored. (A query's results come as text,
    // hex or base64 to decode, 2-4 times slower; node-postgres reads binary results as UTF-8.)
    const client = await this.pool.connect();
    let out: Buffer;
    try {
      const stream = client.query(
        copyToStdout(
          `COPY (SELECT octet_length(data), CASE WHEN octet_length(data) <= ${Math.floor(maxBytes)} THEN data END
                   FROM ${this.s}.bm_chunk_data
                  WHERE queue = ${quoteLiteral(this.queue)} AND op_id = ${quoteLiteral(id)} AND idx = ${Math.floor(index)})
             TO STDOUT (FORMAT binary)`,
        ),
      );
      const parts: Buffer[] = [];
      for await (const part of stream) parts.push(part as Buffer);
      out = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    } catch (err) {
      // A COPY that broke off may leave the connection mid-protocol: it is not reused.
      client.release(err as Error);
      throw err;
    }
    client.release();
    return binaryCopyRow(out);
  }

  async dropChunkData(id: string, index?: number): Promise<void> {
    if (index === undefined)
      await this.q(`DELETE FROM ${this.s}.bm_chunk_data WHERE queue = $1 AND op_id = $2`, [
        this.queue,
        id,
      ]);
    else
      await this.q(
        `DELETE FROM ${this.s}.bm_chunk_data WHERE queue = $1 AND op_id = $2 AND idx = $3`,
        [this.queue, id, index],
      );
  }

  async publishSnapshot(names: readonly string[], snapshotJson: string): Promise<void> {
    const list = [...new Set(names)];
    if (list.length === 0) return;
    await this.q(
      `INSERT INTO ${this.s}.bm_catalog (queue, tbl, snapshot)
       SELECT $1, t, $3 FROM unnest($2::text[]) AS t
       ON CONFLICT (queue, tbl) DO UPDATE SET snapshot = EXCLUDED.snapshot`,
      [this.queue, list, snapshotJson],
    );
  }

  async snapshot(table: string): Promise<string | null> {
    const r = await this.q(
      `SELECT snapshot FROM ${this.s}.bm_catalog WHERE queue = $1 AND tbl = $2`,
      [this.queue, table],
    );
    return (r.rows[0]?.snapshot as string | undefined) ?? null;
  }

  async announceWorker(name: string, infoJson: string): Promise<void> {
    await this.publishSnapshot([`worker:${name}`], infoJson);
  }

  async workerInfo(names: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (names.length === 0) return out;
    const r = await this.q(
      `SELECT tbl, snapshot FROM ${this.s}.bm_catalog WHERE queue = $1 AND tbl = ANY($2::text[])`,
      [this.queue, names.map((n) => `worker:${n}`)],
    );
    for (const row of r.rows as { tbl: string; snapshot: string }[])
      out.set(row.tbl.slice('worker:'.length), row.snapshot);
    return out;
  }

  async publish(name: string, operationId: string, data: string, maxLen: number): Promise<void> {
    // The time is the server's (as a Redis stream id's is), so that events of many workers
    // order by one clock.
    await this.q(`SELECT ${this.s}.bm_publish($1, $2, $3, $4, $5, $6)`, [
      this.queue,
      name,
      operationId,
      data,
      Math.max(1, maxLen),
      `${this.schema}.${this.queue}`,
    ]);
  }

  async recentEvents(count: number): Promise<StoredEvent[]> {
    const r = await this.q(
      `SELECT id, time, name, op_id, data FROM ${this.s}.bm_event WHERE queue = $1
       ORDER BY id DESC LIMIT $2`,
      [this.queue, Math.max(1, count)],
    );
    return (r.rows as EventRow[]).map(toEvent);
  }

  eventReader(options: EventReaderOptions): EventReader {
    return new PgEventReader(
      this.readerConfig,
      this.s,
      `${this.schema}.${this.queue}`,
      this.queue,
      options,
    );
  }
}

const BATCH = 100;

/** A consumer's name when none is given: host and pid (pids repeat across containers). */
export function defaultConsumer(): string {
  return `${hostname()}:${process.pid}`;
}

/**
 * Reads one queue's events with a connection of its own that LISTENs for the NOTIFY each
 * publish sends: a read queries the table, and waits for a notification (up to blockMs) only
 * when nothing is new. A consumer group keeps its position and each consumer's unacknowledged
 * events in tables, so that they are delivered again after a restart (at least once).
 */
class PgEventReader implements EventReader {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private closed = false;
  /** A notification for this queue came since the last query. */
  private dirty = false;
  private wake: (() => void) | undefined;
  /** Without a group: the id of the last event read (kept across re-opens). */
  private last: number | undefined;
  /** In a group: our pending entries first, then new ones. */
  private pendingFirst = true;
  private readonly blockMs: number;
  private readonly consumer: string;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly s: string,
    private readonly channelKey: string,
    private readonly queue: string,
    private readonly o: EventReaderOptions,
  ) {
    this.blockMs = o.blockMs ?? defaultOf('blockMs');
    this.consumer = o.consumer ?? defaultConsumer();
  }

  private async connection(): Promise<pg.Client> {
    if (this.client) return this.client;
    this.connecting ??= (async () => {
      const c = new pg.Client({ ...this.config, application_name: 'bulkmodel events' });
      const drop = () => {
        if (this.client === c) this.client = undefined;
        this.wake?.();
      };
      c.on('error', drop); // the read in progress rejects; the caller re-opens
      c.on('end', drop);
      c.on('notification', (m) => {
        if (m.channel === EVENTS_CHANNEL && m.payload === this.channelKey) {
          this.dirty = true;
          this.wake?.();
        }
      });
      try {
        await c.connect();
        await c.query(`LISTEN ${EVENTS_CHANNEL}`);
      } catch (err) {
        c.end().catch(() => {});
        throw err;
      }
      if (this.closed) {
        await c.end().catch(() => {});
        throw new Error('closed');
      }
      this.client = c;
      return c;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async createGroup(c: pg.Client): Promise<void> {
    await c.query({
      text: `INSERT INTO ${this.s}.bm_event_group (queue, grp, last_id)
             VALUES ($1, $2, coalesce((SELECT last FROM ${this.s}.bm_event_seq WHERE queue = $1), 0))
             ON CONFLICT DO NOTHING`,
      values: [this.queue, this.o.group],
    });
  }

  async open(): Promise<void> {
    const c = await this.connection();
    if (this.o.group) {
      await this.createGroup(c);
      this.pendingFirst = true;
      return;
    }
    if (this.last !== undefined) return;
    const from = this.o.from ?? defaultOf('from');
    if (from === '$') {
      const r = await c.query({
        text: `SELECT last FROM ${this.s}.bm_event_seq WHERE queue = $1`,
        values: [this.queue],
      });
      this.last = Number(r.rows[0]?.last ?? 0);
    } else {
      const n = Number(from.split('-')[0]);
      this.last = Number.isFinite(n) ? n : 0;
    }
  }

  private async fetch(c: pg.Client): Promise<StoredEvent[]> {
    if (!this.o.group) {
      const r = await c.query({
        text: `SELECT id, time, name, op_id, data FROM ${this.s}.bm_event
               WHERE queue = $1 AND id > $2 ORDER BY id LIMIT ${BATCH}`,
        values: [this.queue, this.last ?? 0],
      });
      const out = (r.rows as EventRow[]).map(toEvent);
      if (out.length > 0) this.last = Number(out[out.length - 1]!.id);
      return out;
    }
    if (this.pendingFirst) {
      const r = await c.query({
        text: `SELECT p.id, e.time, e.name, e.op_id, e.data
               FROM ${this.s}.bm_event_pending p
               LEFT JOIN ${this.s}.bm_event e ON e.queue = p.queue AND e.id = p.id
               WHERE p.queue = $1 AND p.grp = $2 AND p.consumer = $3 ORDER BY p.id LIMIT ${BATCH}`,
        values: [this.queue, this.o.group, this.consumer],
      });
      if (r.rows.length === 0) this.pendingFirst = false;
      const out: StoredEvent[] = [];
      for (const row of r.rows as (EventRow & { name: string | null })[]) {
        // A pending event trimmed from the table: nothing to deliver.
        if (row.name === null) await this.ack(String(row.id));
        else out.push(toEvent(row));
      }
      if (out.length > 0) return out;
      // Nothing (left) pending: on to new events at once, not after a wait.
    }
    // Claim the next events for this consumer: position and pending entries in one transaction.
    await c.query('BEGIN');
    try {
      const g = await c.query({
        text: `SELECT last_id FROM ${this.s}.bm_event_group WHERE queue = $1 AND grp = $2 FOR UPDATE`,
        values: [this.queue, this.o.group],
      });
      if (g.rows.length === 0) {
        // The group was deleted (the queue's state removed): start again from what comes next.
        await c.query('ROLLBACK');
        await this.createGroup(c);
        return [];
      }
      const r = await c.query({
        text: `SELECT id, time, name, op_id, data FROM ${this.s}.bm_event
               WHERE queue = $1 AND id > $2 ORDER BY id LIMIT ${BATCH}`,
        values: [this.queue, g.rows[0].last_id],
      });
      const out = (r.rows as EventRow[]).map(toEvent);
      if (out.length > 0) {
        await c.query({
          text: `INSERT INTO ${this.s}.bm_event_pending (queue, grp, id, consumer)
                 SELECT $1, $2, unnest($3::bigint[]), $4 ON CONFLICT DO NOTHING`,
          values: [this.queue, this.o.group, out.map((e) => e.id), this.consumer],
        });
        await c.query({
          text: `UPDATE ${this.s}.bm_event_group SET last_id = $3 WHERE queue = $1 AND grp = $2`,
          values: [this.queue, this.o.group, out[out.length - 1]!.id],
        });
      }
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  async read(): Promise<StoredEvent[]> {
    if (this.closed) return [];
    const c = await this.connection();
    this.dirty = false;
    const first = await this.fetch(c);
    if (first.length > 0 || this.closed) return first;
    if (!this.dirty) {
      await new Promise<void>((resolve) => {
        // blockMs 0 waits until woken, as Redis's BLOCK 0 does.
        const t = this.blockMs > 0 ? setTimeout(done, this.blockMs) : undefined;
        const self = this;
        function done() {
          clearTimeout(t);
          self.wake = undefined;
          resolve();
        }
        this.wake = done;
      });
    }
    if (this.closed) return [];
    if (!this.client) throw new Error('the events connection to Postgres was lost');
    this.dirty = false;
    return this.fetch(c);
  }

  async ack(id: string): Promise<void> {
    if (!this.o.group) return;
    const c = await this.connection();
    await c.query({
      text: `DELETE FROM ${this.s}.bm_event_pending WHERE queue = $1 AND grp = $2 AND id = $3`,
      values: [this.queue, this.o.group, id],
    });
  }

  close(): void {
    this.closed = true;
    this.wake?.();
    const c = this.client;
    this.client = undefined;
    c?.end().catch(() => {});
  }
}
