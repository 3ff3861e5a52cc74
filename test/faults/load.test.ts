import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestDb, testDb } from '../helpers.js';
import { deleteKeys, obliterate, queueName, REDIS_URL, runPrefix } from '../queueHelpers.js';
import type { LoadOp } from './fixtures/load-producer.js';
import {
  type Child,
  killChildren,
  report,
  spawnNode,
  startWorkerAt,
  stopChild,
  type Tally,
  tallyInsert,
  tallyUpdate,
  writesTrigger,
} from './harness.js';

/**
 * Load: 3 producer processes and 2 worker processes, 10 concurrent operations of every kind
 * over FAULT_LOAD_ROWS rows in all (default 1,000,000;
 * lower it for a quick run). Every row exactly once, every result right.
 */
const TOTAL = Number(process.env.FAULT_LOAD_ROWS ?? 1_000_000);
const S = Math.floor(TOTAL / 10);
const prefix = runPrefix('load');
const queue = queueName('load');
let tdb: TestDb;
let exportDir: string;

beforeAll(async () => {
  tdb = await testDb('load');
  exportDir = mkdtempSync(join(tmpdir(), 'bulkmodel-load-'));
  const cols =
    'id bigserial PRIMARY KEY, n int NOT NULL, name text, v int NOT NULL DEFAULT 0, writes int NOT NULL DEFAULT 0';
  for (const t of ['ins', 'upd', 'hom', 'exp'])
    await tdb.pool.query(
      `CREATE TABLE ${tdb.t(t)} (${cols}); ${writesTrigger(tdb.t(t), tdb.schema, t)}`,
    );
  const fill = (t: string, count: number) =>
    tdb.pool.query(
      `INSERT INTO ${tdb.t(t)} (id, n, name) SELECT g + 1, g, 'r' || g FROM generate_series(0, ${count - 1}) g`,
    );
  await fill('upd', 2 * S);
  await fill('hom', S);
  await fill('exp', S);
});
afterAll(async () => {
  await killChildren();
  await obliterate(queue, prefix).catch(() => {});
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
  rmSync(exportDir, { recursive: true, force: true });
});

const OPS: LoadOp[] = [];
beforeAll(() => {
  const ins = tdb.t('ins');
  let k = 0;
  const insert = (kind: 'bulkCreate' | 'copyFrom', returning = false): LoadOp => ({
    kind,
    table: ins,
    from: k++ * S,
    count: S,
    batchSize: kind === 'copyFrom' ? 5000 : 2000,
    returning,
  });
  OPS.push(
    insert('bulkCreate', true),
    insert('copyFrom'),
    { kind: 'updateFields', table: tdb.t('upd'), from: 0, count: S, batchSize: 2000 },
    insert('bulkCreate'),
    insert('copyFrom', true),
    { kind: 'update', table: tdb.t('hom'), from: 0, count: S, batchSize: 2000 },
    insert('bulkCreate'),
    insert('copyFrom'),
    { kind: 'updateFields', table: tdb.t('upd'), from: S, count: S, batchSize: 2000 },
    { kind: 'copyTo', table: tdb.t('exp'), from: 0, count: S, batchSize: 0, path: 'exp.csv' },
  );
});

describe('load: 3 producer processes, 2 worker processes, 10 operations at once', () => {
  it(`${TOTAL} rows in all: every row once, every result right`, async () => {
    const tables = ['ins', 'upd', 'hom', 'exp'].map((t) => tdb.t(t));
    const workers: Child[] = [];
    for (let i = 0; i < 2; i++)
      workers.push(
        await startWorkerAt({
          tables,
          queue,
          prefix,
          redis: REDIS_URL,
          name: `load-${i}`,
          concurrency: 4,
          exportDir,
        }),
      );
    const started = Date.now();
    const producers = [0, 1, 2].map((p) =>
      spawnNode('test/faults/fixtures/load-producer.ts', [
        REDIS_URL,
        queue,
        prefix,
        JSON.stringify(OPS.filter((_, i) => i % 3 === p)),
      ]),
    );
    const exits = await Promise.all(producers.map((p) => p.exited));
    const ms = Date.now() - started;
    for (const [i, e] of exits.entries()) expect(e.code, producers[i]!.output()).toBe(0);
    const results = producers.flatMap((p) =>
      p
        .output()
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as LoadOp & Record<string, unknown>),
    );
    expect(results).toHaveLength(10);
    const tallies: Tally[] = [];
    for (const r of results) {
      expect(r.result).toEqual({ count: r.count });
      let t: Tally;
      if (r.kind === 'bulkCreate' || r.kind === 'copyFrom') {
        t = await tallyInsert(
          tdb.pool,
          r.table,
          r.count,
          r.from,
          `n >= ${r.from} AND n < ${r.from + r.count}`,
        );
        if (r.returning) {
          expect({ returned: r.returned, ordered: r.ordered }).toEqual({
            returned: r.count,
            ordered: true,
          });
          const sum = await tdb.pool.query(
            `SELECT sum(id)::text AS s FROM ${r.table} WHERE n >= $1 AND n < $2`,
            [r.from, r.from + r.count],
          );
          expect(r.idSum).toBe(sum.rows[0].s);
        }
      } else if (r.kind === 'updateFields') {
        expect(r.missing).toBe(0);
        t = await tallyUpdate(
          tdb.pool,
          r.table,
          r.count,
          `v = n * 3 AND n >= ${r.from} AND n < ${r.from + r.count}`,
        );
        // rows of the other updateFields operation on this table are not this one's duplicates
        t.duplicated = (
          await tdb.pool.query(
            `SELECT count(*) FILTER (WHERE writes > 1)::int AS d FROM ${r.table} WHERE n >= $1 AND n < $2`,
            [r.from, r.from + r.count],
          )
        ).rows[0].d;
      } else if (r.kind === 'update') {
        t = await tallyUpdate(tdb.pool, r.table, r.count, 'v = -1');
      } else {
        const lines = readFileSync(r.path as string, 'utf8')
          .trimEnd()
          .split('\n')
          .slice(1);
        const distinct = new Set(lines).size;
        t = { expected: r.count, lost: r.count - distinct, duplicated: lines.length - distinct };
      }
      report(
        `load ${r.kind}${r.returning ? ' returning' : ''} [${r.from}, +${r.count})`,
        t,
        `${r.ms} ms`,
      );
      tallies.push(t);
    }
    const sum = tallies.reduce(
      (a, t) => ({
        expected: a.expected + t.expected,
        lost: a.lost + t.lost,
        duplicated: a.duplicated + t.duplicated,
      }),
      { expected: 0, lost: 0, duplicated: 0 },
    );
    report('load total', sum, `${ms} ms, ${Math.round((sum.expected / ms) * 1000)} rows/s`);
    expect(sum).toEqual({ expected: 10 * S, lost: 0, duplicated: 0 });
    for (const w of workers) expect(await stopChild(w)).toBe(0);
  });
});
