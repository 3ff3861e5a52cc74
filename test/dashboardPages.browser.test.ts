import { existsSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BulkProducer, type Row, silentLogger } from '../src/index.js';
import { type Dashboard, startDashboard } from '../src/worker/dashboard/server.js';
import { type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  killAll,
  obliterate,
  queueName,
  rejection,
  runPrefix,
  startWorker,
  stopWorker,
  TEST_QUEUE,
  until,
  type WorkerProcess,
} from './queueHelpers.js';

/**
 * The dashboard's charts, worker table and operation page (issue 20) in headless Chromium,
 * with real worker processes: charts drawn from a real operation's progress, a failed chunk's
 * error on its operation's page, two workers listed and then one gone after a SIGKILL, and
 * the filters. Screenshots go to docs/ with BULKMODEL_UPDATE_SCREENSHOT=1 (npm run screenshots).
 */
const CHROMIUM = '/usr/bin/chromium';
const shot = (name: string) =>
  process.env.BULKMODEL_UPDATE_SCREENSHOT
    ? fileURLToPath(new URL(`../docs/${name}`, import.meta.url))
    : join(tmpdir(), `bulkmodel-${process.pid}-${name}`);
const prefix = runPrefix('pages');
const creds = { user: 'ops', password: 'pages-test' };
const queue = queueName('pages');

let tdb: TestDb;
let browser: Browser;
let dashboard: Dashboard;
let producer: BulkProducer;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  tdb = await testDb('pages');
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('orders')} (id bigserial PRIMARY KEY, sku text NOT NULL, qty int NOT NULL CHECK (qty >= 0))`,
  );
  dashboard = await startDashboard({
    ...TEST_QUEUE,
    queue,
    prefix,
    port: 0,
    credentials: creds,
    logger: silentLogger,
  });
  producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix, logger: silentLogger });
  for (const name of ['worker-a', 'worker-b'])
    workers.push(
      await startWorker({ tables: [tdb.t('orders')], queue, prefix, name, concurrency: 2 }),
    );
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
});

afterAll(async () => {
  await browser?.close();
  for (const w of workers) await stopWorker(w).catch(() => {});
  await killAll();
  await producer?.close();
  await dashboard?.close();
  await obliterate(queue, prefix);
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
});

function rows(n: number, bad?: number): Row[] {
  return Array.from({ length: n }, (_, i) => ({ sku: `SKU-${i}`, qty: i === bad ? -1 : i % 13 }));
}

async function openPage(path = ''): Promise<Page> {
  const context = await browser.newContext({
    httpCredentials: { username: creds.user, password: creds.password },
    viewport: { width: 1360, height: 900 },
  });
  const page = await context.newPage();
  await page.goto(new URL(path, dashboard.url).toString());
  return page;
}

/** Worker rows as the table shows them: name and status. */
async function workerRows(page: Page): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const tr of await page.locator('#workers tr[data-worker]').all())
    out[(await tr.getAttribute('data-worker')) ?? ''] =
      (await tr.getAttribute('data-status')) ?? '';
  return out;
}

it('charts draw a real operation’s rows; two workers, then one gone after a SIGKILL', async () => {
  const op = await producer.bulkCreate(tdb.t('orders'), rows(20_000), { batchSize: 500 });
  expect((await op.done({ timeoutMs: 60_000 })).count).toBe(20_000);
  const page = await openPage();
  await until('both workers listed as running', async () => {
    const w = await workerRows(page);
    return w['worker-a'] === 'ok' && w['worker-b'] === 'ok';
  });
  // Host, pid and concurrency as the worker processes announced them.
  const cellsA = await page.locator('#workers tr[data-worker="worker-a"] td').allTextContents();
  expect(cellsA[1]).toBe(hostname());
  expect(Number(cellsA[2])).toBe(workers[0]!.child.pid);
  expect(cellsA[4]).toBe('2');
  // The rows/s chart is drawn from the operation's progress events: a line with a maximum.
  const chart = page.locator('#chart-rows');
  await until('the rows/s chart to show the operation', async () => {
    const max = Number(await chart.getAttribute('data-max'));
    return max > 1 ? max : undefined;
  });
  expect(await page.locator('#chart-rows path.series').count()).toBe(1);
  expect(await page.locator('#chart-jobs path.series').count()).toBeGreaterThan(0);
  // Every 500-row chunk shows up in the sum: 20,000 rows at most 10 s apart.
  const max = Number(await chart.getAttribute('data-max'));
  expect(max).toBeLessThanOrEqual(20_000);
  await page.screenshot({ path: shot('dashboard-charts.png'), fullPage: true });

  // SIGKILL one: its connections close, it is listed as gone, the other goes on.
  workers[1]!.child.kill('SIGKILL');
  await workers[1]!.exited;
  await until(
    'worker-b gone, worker-a still running',
    async () => {
      const w = await workerRows(page);
      return w['worker-a'] === 'ok' && w['worker-b'] === 'gone';
    },
    30_000,
  );
  await page.context().close();
});

it('the operation page shows a failed chunk’s error with its code, table and column; filters find it', async () => {
  const op = await producer.bulkCreate(tdb.t('orders'), rows(1_500, 1_234), { batchSize: 500 });
  const err = await rejection(op.done({ timeoutMs: 60_000 }));
  expect(err.code).toBe('CHECK_VIOLATION');
  const list = await openPage();
  // Filter the list to failed operations: this one shows, the completed one does not.
  await list.selectOption('#filters select[name=state]', 'failed');
  await until('the list filtered to failed operations', async () => {
    const states = await list
      .locator('#ops tr[data-state]')
      .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-state')));
    return states.length > 0 && states.every((s) => s === 'failed') ? states : undefined;
  });
  const link = list.locator(`#ops tr[data-id="${op.id}"] a`);
  await link.click();
  await list.waitForURL(/operation\?queue=/);
  await until('the operation page', async () => (await list.locator('#op-error').count()) > 0);
  const shown = await list.locator('#op-error').textContent();
  expect(shown).toMatch(/^CHECK_VIOLATION /);
  expect(shown).toContain(`table ${tdb.t('orders')}`);
  expect(shown).toContain('orders_qty_check');
  const failedChunk = list.locator('#chunks tr[data-state="failed"]');
  await until('the failed chunk listed', async () => (await failedChunk.count()) > 0);
  expect(await failedChunk.first().locator('td').first().textContent()).toBe('2');
  expect(await failedChunk.first().textContent()).toMatch(/CHECK_VIOLATION/);
  // Its jobs in bull-board, by a relative link (works under a path prefix).
  expect(await list.locator('#jobs').getAttribute('href')).toMatch(/^queues\/queue\//);
  await list.screenshot({ path: shot('dashboard-operation.png'), fullPage: true });
  await list.context().close();
});
