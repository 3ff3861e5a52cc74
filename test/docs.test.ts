import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkWorker, silentLogger, validatePayload } from '../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  killAll,
  obliterate,
  queueName,
  REDIS_URL,
  runPrefix,
} from './queueHelpers.js';
import { runScript } from './scriptHelpers.js';

// The docs are true to the code: every TypeScript block of docs/guides/*.md is, block by block,
// examples/guides/<guide>.ts (which tsc typechecks), and each of those runs against the real
// services after the guide's SQL. The payload example validates and is written by a worker.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const GUIDES = join(ROOT, 'docs/guides');
const SEP = '\n\n// ---\n';

function blocks(md: string, lang: string): string[] {
  const re = new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g');
  return [...md.matchAll(re)].map((m) => m[1]!.replace(/^\n+|\n+$/g, ''));
}

let tdb: TestDb;
const prefix = runPrefix('docs');

beforeAll(async () => {
  tdb = await testDb('docs');
});

afterAll(async () => {
  await killAll();
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
});

describe('guides', async () => {
  const files = (await readdir(GUIDES)).filter((f) => f.endsWith('.md')).sort();

  it('every guide is linked from the README', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    for (const f of files) expect(readme, f).toContain(`docs/guides/${f}`);
    expect(readme).toContain('docs/payload.md');
  });

  for (const f of files) {
    const name = f.slice(0, -3);
    it(`${name}: its TypeScript is examples/guides/${name}.ts, and it runs`, async () => {
      const md = await readFile(join(GUIDES, f), 'utf8');
      const ts = blocks(md, 'ts');
      if (ts.length === 0) return;
      const file = await readFile(join(ROOT, `examples/guides/${name}.ts`), 'utf8');
      const body = file.slice(file.indexOf('\n\n') + 2).replace(/\n+$/, '');
      expect(body.split(SEP), `regenerate examples/guides/${name}.ts from ${f}`).toEqual(ts);

      const schema = `${tdb.schema}_${name.replace(/-/g, '_')}`;
      await tdb.pool.query(`CREATE SCHEMA ${schema}`);
      try {
        for (const sql of blocks(md, 'sql'))
          await tdb.pool.query(`SET search_path = ${schema}; ${sql}; RESET search_path`);
        const url = new URL(DATABASE_URL);
        url.searchParams.set('options', `-c search_path=${schema}`);
        const queue = queueName(`guide-${name}`);
        const run = runScript(`examples/guides/${name}.ts`, {
          DATABASE_URL: url.toString(),
          REDIS_URL,
          BULKMODEL_QUEUE: queue,
        });
        const { code } = await run.exited;
        expect(code, run.output()).toBe(0);
        await obliterate(queue, 'bull');
      } finally {
        await tdb.pool.query(`DROP SCHEMA ${schema} CASCADE`);
      }
    });
  }
});

describe('payload.md', () => {
  it('its JSON example is a valid chunk, and a worker writes it when added as other languages do', async () => {
    const md = await readFile(join(ROOT, 'docs/payload.md'), 'utf8');
    const [v2json, v3json, json] = blocks(md, 'json');
    const payload = JSON.parse(json!);
    expect(validatePayload(payload, 'chunk')).toEqual(payload);
    const v2 = JSON.parse(v2json!);
    expect(validatePayload(v2, 'chunk')).toEqual(v2);
    const v3 = JSON.parse(v3json!);
    expect(validatePayload(v3, 'chunk')).toEqual(v3);
    // The version 3 example's data, as the text under it gives it.
    const v3data = Buffer.from('c-1,"tab\there",19.99\nc-2,"",0.5\n');
    expect(md).toContain('c-1,"tab\\there",19.99\\nc-2,"",0.5\\n');
    expect(v3.data).toEqual({
      bytes: v3data.length,
      sha256: createHash('sha256').update(v3data).digest('base64url'),
    });

    await tdb.pool.query(`CREATE TABLE ${tdb.t('items')} (
      id bigserial PRIMARY KEY, sku text UNIQUE NOT NULL, name text NOT NULL, price numeric(12,2),
      value integer, tags text[], payload jsonb, flag boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now())`);
    const queue = queueName('payload');
    const worker = new BulkWorker({
      redis: REDIS_URL,
      queue,
      prefix,
      database: { connectionString: DATABASE_URL, ledger: { schema: `${tdb.schema}_ledger` } },
      tables: [tdb.t('items')],
      logger: silentLogger,
    });
    const q = new Queue(queue, { connection: { url: REDIS_URL }, prefix });
    const events = new QueueEvents(queue, { connection: { url: REDIS_URL }, prefix });
    try {
      await events.waitUntilReady();
      await worker.waitUntilReady();
      // What the Python example does: Queue.add('chunk', payload, { jobId, attempts, backoff }).
      const data = { ...payload, table: tdb.t('items') };
      const job = await q.add('chunk', data, {
        jobId: `${payload.operationId}-c0`,
        attempts: 8,
        backoff: { type: 'exponential', delay: 1000 },
      });
      const result = await job.waitUntilFinished(events);
      expect(result).toMatchObject({ index: 0, count: 3 });
      // and the version 2 example: CSV records, written by COPY as they are
      const job2 = await q.add(
        'chunk',
        { ...v2, table: tdb.t('items') },
        { jobId: `${v2.operationId}-c0`, attempts: 8 },
      );
      expect(await job2.waitUntilFinished(events)).toMatchObject({ index: 0, count: 2 });
      // and the version 3 example: its data stored first, where the text says, with HSET
      const redis = new Redis(REDIS_URL);
      try {
        await redis.hset(`${prefix}:${queue}:bm:op:${v3.operationId}:data`, '0', v3data);
      } finally {
        redis.disconnect();
      }
      const job3 = await q.add(
        'chunk',
        { ...v3, table: tdb.t('items') },
        { jobId: `${v3.operationId}-c0`, attempts: 8 },
      );
      expect(await job3.waitUntilFinished(events)).toMatchObject({ index: 0, count: 2 });
    } finally {
      await events.close();
      await q.close();
      await worker.close();
      await obliterate(queue, prefix);
    }
    const v2rows = await tdb.pool.query(
      `SELECT sku, name, price::text, tags FROM ${tdb.t('items')} WHERE sku LIKE 'b-%' ORDER BY sku`,
    );
    const v3rows = await tdb.pool.query(
      `SELECT sku, name, price::text FROM ${tdb.t('items')} WHERE sku LIKE 'c-%' ORDER BY sku`,
    );
    expect(v3rows.rows).toEqual([
      { sku: 'c-1', name: 'tab\there', price: '19.99' },
      { sku: 'c-2', name: '', price: '0.50' },
    ]);
    expect(v2rows.rows).toEqual([
      { sku: 'b-1', name: 'tab\there, "quoted"', price: '19.99', tags: ['x', null] },
      { sku: 'b-2', name: '', price: '0.50', tags: [] },
    ]);
    const rows = await tdb.pool.query(
      `SELECT id < 1000 AS generated_id, sku, name, price::text, value, tags, payload, created_at::text, flag FROM ${tdb.t('items')} WHERE sku LIKE 'a-%' ORDER BY sku`,
    );
    expect(rows.rows).toEqual([
      {
        generated_id: true,
        sku: 'a-1',
        name: 'tab\there, "quotes", ünïcode 😀',
        price: '19.99',
        value: 1,
        tags: ['x', null],
        payload: { k: [1, null, '\\N'] },
        created_at: '2026-01-31 12:00:00.123456+00',
        flag: true,
      },
      {
        generated_id: false,
        sku: 'a-2',
        name: 'big key',
        price: '0.50',
        value: null,
        tags: [],
        payload: {},
        created_at: '2026-01-31 12:00:00+00',
        flag: false,
      },
      {
        generated_id: true,
        sku: 'a-3',
        name: '',
        price: '0.00',
        value: null,
        tags: null,
        payload: 'a JSON string',
        created_at: expect.any(String), // absent: the column's default, now()
        flag: false,
      },
    ]);
  });
});
