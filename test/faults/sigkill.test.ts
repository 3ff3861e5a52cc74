import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkProducer, type Row } from '../../src/index.js';
import { type TestDb, testDb } from '../helpers.js';
import {
  bullQueue,
  deleteKeys,
  obliterate,
  QUEUE_ARGS,
  queueName,
  runPrefix,
  TEST_QUEUE,
  until,
} from '../queueHelpers.js';
import {
  baseSeed,
  type Child,
  killChildren,
  report,
  rng,
  sigkill,
  startWorkerAt,
  stopChild,
  type Tally,
  tallyInsert,
  tallyUpdate,
  writesTrigger,
} from './harness.js';

/**
 * Workers SIGKILLed at seeded random moments: two worker processes share every operation; at a
 * moment drawn from the seed (after k chunks committed, then a random delay) the worker holding
 * an active job is SIGKILLed and a fresh one started. Trials cycle over every kind of operation.
 * Each checks every row exactly once (a trigger counts UPDATEs per row) and op.done()'s result.
 */
const TRIALS = Number(process.env.FAULT_SIGKILL_TRIALS ?? 20);
const ROWS = 20_000;
const BATCH = 250;
const UPDATE_BATCH = 80;
const COPYTO_ROWS = 100_000;
const KINDS = [
  'bulkCreate',
  'copyFrom',
  'updateFields',
  'update',
  'copyTo',
  'copyFromCsv',
] as const;
type Kind = (typeof KINDS)[number];

const SEED = baseSeed('sigkill');
const prefix = runPrefix('sigkill');
const queue = queueName('sigkill');
let tdb: TestDb;
let producer: BulkProducer;
let q: Queue;
let exportDir: string;
const workers: Child[] = [];
let seq = 0;
const totals = { trials: 0, kills: 0, expected: 0, lost: 0, duplicated: 0 };

beforeAll(async () => {
  tdb = await testDb('sigkill');
  exportDir = mkdtempSync(join(tmpdir(), 'bulkmodel-sigkill-'));
  producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
  q = bullQueue(queue, prefix);
  for (let i = 0; i < 2; i++) workers.push(await spawnWorker());
});
afterAll(async () => {
  console.log(
    `[sigkill] ${totals.trials} trials, ${totals.kills} workers killed, rows expected ${totals.expected} lost ${totals.lost} duplicated ${totals.duplicated}`,
  );
  await killChildren();
  await q?.close();
  await producer?.close();
  await obliterate(queue, prefix).catch(() => {});
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
  rmSync(exportDir, { recursive: true, force: true });
});

function spawnWorker(): Promise<Child> {
  return startWorkerAt({
    tables: ['*'],
    queue,
    prefix,
    redis: '',
    redisArgs: QUEUE_ARGS,
    name: `k${++seq}`,
    concurrency: 3,
    lockDurationMs: 2000,
    exportDir,
  });
}

async function table(i: number, prefill: number): Promise<string> {
  const t = tdb.t(`t${i}`);
  await tdb.pool.query(
    `CREATE TABLE ${t} (id bigserial PRIMARY KEY, n int NOT NULL, name text, v int NOT NULL DEFAULT 0,
       flag boolean NOT NULL DEFAULT false, writes int NOT NULL DEFAULT 0);
     ${writesTrigger(t, tdb.schema, `t${i}`)}`,
  );
  if (prefill)
    await tdb.pool.query(
      `INSERT INTO ${t} (id, n, name) SELECT g + 1, g, 'r' || g FROM generate_series(0, ${prefill - 1}) g`,
    );
  return t;
}

const input = (): Row[] =>
  Array.from({ length: ROWS }, (_, n) => ({ n, name: `row ${n}\t"${n}"\\` }));

/** The same rows as a CSV file's bytes (payload v2, passed through unparsed), in pieces. */
async function* csvInput(): AsyncGenerator<Buffer> {
  yield Buffer.from('n,name\r\n');
  let buf = '';
  for (let n = 0; n < ROWS; n++) {
    // A quoted field holding a newline and quotes: a record split across physical lines.
    buf += `${n},"row ${n}\t""${n}""\\\nnext"\r\n`;
    if (buf.length > 4000) {
      yield Buffer.from(buf);
      buf = '';
    }
  }
  yield Buffer.from(buf);
}

/**
 * Kill the worker holding an active job of this queue and start a fresh one in its place; or,
 * if the operation ends before one is seen, kill nobody.
 */
async function killHolder(op: { status(): Promise<{ state: string }> }): Promise<string> {
  const holder = await until(
    'a worker holding an active job, or the operation ended',
    async () => {
      const active = await q.getActive();
      const names = active.map((j) => j.processedBy).filter((x): x is string => !!x);
      const w = workers.find((x) => names.includes(x.name));
      if (w) return w;
      return (await op.status()).state === 'completed' ? ('ended' as const) : undefined;
    },
    30_000,
    5,
  );
  if (holder === 'ended') return '(none: finished first)';
  await sigkill(holder);
  workers.splice(workers.indexOf(holder), 1, await spawnWorker());
  totals.kills++;
  return holder.name;
}

async function trial(i: number, kind: Kind): Promise<Tally> {
  const r = rng(SEED + i);
  const chunks = Math.ceil(ROWS / BATCH);
  const returning = i % 2 === 0;
  const rowsOf = kind === 'copyTo' ? COPYTO_ROWS : ROWS;
  const t = await table(
    i,
    kind === 'updateFields' || kind === 'update' ? ROWS : kind === 'copyTo' ? COPYTO_ROWS : 0,
  );
  // The moment: after k of the chunks committed (chunked kinds), then a delay of d ms.
  // (within the first 60% of the operation, so that the kill lands before it ends)
  const k = r.int(0, Math.floor(((kind === 'update' ? ROWS / UPDATE_BATCH : chunks) * 3) / 5));
  const d = r.int(0, kind === 'copyTo' ? 40 : 80);
  let op: Awaited<ReturnType<BulkProducer['bulkCreate']>>;
  if (kind === 'bulkCreate' || kind === 'copyFrom')
    op = await producer[kind](t, input(), {
      batchSize: BATCH,
      ...(returning ? { returning: ['id', 'n'] } : {}),
    });
  else if (kind === 'updateFields')
    op = await producer.updateFields(
      t,
      input().map((x) => ({ id: (x.n as number) + 1, v: (x.n as number) * 2 + 1 })),
      { fields: ['v'], batchSize: BATCH },
    );
  else if (kind === 'update')
    // Self-excluding filter: a batch replayed under a stale plan would skip rows.
    op = await producer.update(
      t,
      { where: { flag: false }, set: { flag: true } },
      { batchSize: UPDATE_BATCH },
    );
  else if (kind === 'copyFromCsv')
    op = await producer.copyFromCsv(t, csvInput(), { batchSize: BATCH, path: `t${i}.csv` });
  else op = await producer.copyTo(t, { path: `t${i}.csv`, format: 'csv', columns: ['n', 'name'] });

  if (kind === 'update') {
    // k of its batches committed (their ledger rows are keyed by the operation id).
    await until(
      'k update batches committed',
      async () => {
        const r = await tdb.pool.query(
          'SELECT count(*)::int AS n FROM bulkmodel.chunk_ledger WHERE operation_id = $1',
          [op.id],
        );
        return r.rows[0].n >= k;
      },
      60_000,
      5,
    );
  } else if (kind === 'copyTo') {
    await until(
      'the operation job to be active',
      async () => (await q.getActiveCount()) > 0,
      30_000,
      2,
    );
  } else {
    await until('k chunks committed', async () => (await op.status()).chunksDone >= k, 60_000, 5);
  }
  await new Promise((res) => setTimeout(res, d));
  const killed = await killHolder(op);
  const res = await op.done({ timeoutMs: 120_000 });

  let tally: Tally;
  if (kind === 'bulkCreate' || kind === 'copyFrom') {
    expect(res.count).toBe(ROWS);
    tally = await tallyInsert(tdb.pool, t, ROWS);
    if (returning) {
      expect(res.rows).toHaveLength(ROWS);
      const ids = await tdb.pool.query(`SELECT id::text, n FROM ${t}`);
      const idOf = new Map(ids.rows.map((x) => [x.n as number, x.id as string]));
      res.rows!.forEach((row, j) => {
        expect(row.n).toBe(j);
        expect(String(row.id)).toBe(idOf.get(j));
      });
    } else expect(res.rows).toBeUndefined();
    const ledger = await tdb.pool.query(
      'SELECT count(*)::int AS n FROM bulkmodel.chunk_ledger WHERE operation_id = $1',
      [op.id],
    );
    expect(ledger.rows[0].n).toBe(chunks);
  } else if (kind === 'copyFromCsv') {
    expect(res.count).toBe(ROWS);
    tally = await tallyInsert(tdb.pool, t, ROWS);
    const bad = await tdb.pool.query(
      `SELECT count(*)::int AS n FROM ${t} WHERE name IS DISTINCT FROM 'row ' || n || E'\\t"' || n || E'"\\\\\\nnext'`,
    );
    expect(bad.rows[0].n).toBe(0);
  } else if (kind === 'updateFields') {
    expect(res).toEqual({ count: ROWS, missing: [] });
    tally = await tallyUpdate(tdb.pool, t, ROWS, 'v = n * 2 + 1');
  } else if (kind === 'update') {
    expect(res.count).toBe(ROWS);
    tally = await tallyUpdate(tdb.pool, t, ROWS, 'flag');
  } else {
    expect(res.count).toBe(rowsOf);
    const lines = readFileSync(res.path!, 'utf8').trimEnd().split('\n');
    expect(lines[0]).toBe('n,name');
    const ns = lines.slice(1).map((l) => Number(l.slice(0, l.indexOf(','))));
    const distinct = new Set(ns.filter((n) => n >= 0 && n < rowsOf)).size;
    tally = { expected: rowsOf, lost: rowsOf - distinct, duplicated: ns.length - distinct };
  }
  report(`sigkill trial ${i} ${kind}`, tally, `k=${k} d=${d}ms killed=${killed}`);
  totals.trials++;
  totals.expected += tally.expected;
  totals.lost += tally.lost;
  totals.duplicated += tally.duplicated;
  return tally;
}

describe('workers SIGKILLed at seeded random moments', () => {
  for (let i = 0; i < TRIALS; i++) {
    const kind = KINDS[i % KINDS.length]!;
    it(`trial ${i}: ${kind}`, async () => {
      const tally = await trial(i, kind);
      expect({ lost: tally.lost, duplicated: tally.duplicated }).toEqual({
        lost: 0,
        duplicated: 0,
      });
    });
  }

  it('the surviving workers stop cleanly', async () => {
    for (const w of workers.splice(0)) expect(await stopChild(w)).toBe(0);
  });
});
