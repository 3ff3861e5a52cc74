import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, type TestDb, testDb } from '../helpers.js';

// Streaming: an async-iterable copyFrom of 2,000,000 rows in a child process keeps its peak RSS
// under a fixed bound, and the peak does not grow with the row count (200k vs 2M).

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('./fixtures/stream-copy.ts', import.meta.url));
const BOUND_MB = 300;
// Peak RSS of the same run varies by ~30 MB (heap sizing, GC timing); keeping the 2M rows
// would cost hundreds of MB, so 64 MB of slack still catches growth with the row count.
const SLACK_MB = 64;

let tdb: TestDb;
beforeAll(async () => {
  tdb = await testDb('streaming');
});
afterAll(() => tdb?.close());

interface Report {
  rows: number;
  count: number;
  startRssMb: number;
  peakRssMb: number;
  ms: number;
}

async function copyInChild(table: string, rows: number): Promise<Report> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', SCRIPT, DATABASE_URL, table, String(rows), '5000'],
    { timeout: 240_000, maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as Report;
}

describe('copyFrom streams an async iterable in bounded memory', () => {
  it('peak RSS is bounded and does not grow with the row count (200k vs 2M rows)', async () => {
    const small = tdb.t('small');
    const large = tdb.t('large');
    for (const t of [small, large]) {
      await tdb.pool.query(
        `CREATE UNLOGGED TABLE ${t} (id bigserial primary key, name text, value int, payload jsonb)`,
      );
    }
    const a = await copyInChild(small, 200_000);
    const b = await copyInChild(large, 2_000_000);
    console.log(
      `peak RSS: ${a.peakRssMb} MB for ${a.rows} rows (${a.ms} ms), ${b.peakRssMb} MB for ${b.rows} rows (${b.ms} ms); start ${a.startRssMb} / ${b.startRssMb} MB`,
    );
    expect(a.count).toBe(200_000);
    expect(b.count).toBe(2_000_000);
    const c = await tdb.pool.query(
      `SELECT (SELECT count(*) FROM ${small})::int AS s, (SELECT count(*) FROM ${large})::int AS l`,
    );
    expect(c.rows[0]).toEqual({ s: 200_000, l: 2_000_000 });
    expect(b.peakRssMb).toBeLessThan(BOUND_MB);
    expect(a.peakRssMb).toBeLessThan(BOUND_MB);
    expect(b.peakRssMb - a.peakRssMb).toBeLessThan(SLACK_MB);
  });
});
