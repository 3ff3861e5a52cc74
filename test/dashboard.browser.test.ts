import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BulkProducer, BulkWorker, type Row, silentLogger } from '../src/index.js';
import { type Dashboard, startDashboard } from '../src/worker/dashboard/server.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  obliterate,
  queueName,
  runPrefix,
  TEST_QUEUE,
  testBackend,
  until,
} from './queueHelpers.js';

/**
 * The Operations page in headless Chromium (Debian's, never a downloaded one) while an operation
 * runs: a gate in a preBulkCreate listener holds the second chunk until the page has shown the
 * first one's progress, then lets the rest through; the page then shows the completion. Saves a
 * screenshot (docs/dashboard.png, the README's, when BULKMODEL_UPDATE_SCREENSHOT=1).
 */
const CHROMIUM = '/usr/bin/chromium';
// The README's picture is refreshed on request (BULKMODEL_UPDATE_SCREENSHOT=1), so that a
// test run leaves the work tree clean; otherwise the screenshot goes to the system's temp dir.
const SCREENSHOT = process.env.BULKMODEL_UPDATE_SCREENSHOT
  ? fileURLToPath(new URL('../docs/dashboard.png', import.meta.url))
  : join(tmpdir(), `bulkmodel-dashboard-${process.pid}.png`);
const prefix = runPrefix('browser');
const creds = { user: 'ops', password: 'browser-test' };
const queue = queueName('browser');

let tdb: TestDb;
let browser: Browser;
let dashboard: Dashboard;
let producer: BulkProducer;
let worker: BulkWorker;
let openGate: () => void = () => {};

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  tdb = await testDb('browser');
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('orders')} (id bigserial PRIMARY KEY, sku text NOT NULL, qty int NOT NULL)`,
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
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
});
afterAll(async () => {
  openGate();
  await browser?.close();
  await worker?.close();
  await producer?.close();
  await dashboard?.close();
  await obliterate(queue, prefix);
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
});

function rows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => ({ sku: `SKU-${i % 97}`, qty: i % 13 }));
}

async function openPage(): Promise<Page> {
  const context = await browser.newContext({
    httpCredentials: { username: creds.user, password: creds.password },
    viewport: { width: 1360, height: 560 },
  });
  const page = await context.newPage();
  await page.goto(dashboard.url);
  return page;
}

interface Cells {
  queue: string;
  table: string;
  rows: string;
  rate: string;
  state: string;
  workers: string;
  error: string;
}

/** The cells of an operation's row as the page shows them. */
async function cells(page: Page, id: string): Promise<Cells | undefined> {
  const t = await page.locator(`#ops tr[data-id="${id}"] td`).allTextContents();
  if (t.length === 0) return undefined;
  const [, queueCell, table, , rows, , rate, , state, workers, error] = t;
  return {
    queue: queueCell ?? '',
    table: table ?? '',
    rows: rows ?? '',
    rate: rate ?? '',
    state: state ?? '',
    workers: workers ?? '',
    error: error ?? '',
  };
}

it('shows an operation advancing, then completed; escapes what it shows', async () => {
  // The gate: chunk 0 goes through, chunk 1 waits until the test has seen progress.
  const gate = new Promise<void>((r) => {
    openGate = r;
  });
  worker = new BulkWorker({
    ...TEST_QUEUE,
    database: DATABASE_URL,
    queue,
    prefix,
    tables: [tdb.t('orders')],
    concurrency: 1,
    closeTimeoutMs: 5000,
    name: 'worker-a',
    logger: silentLogger,
  });
  worker.signals.on('preBulkCreate', async (e) => {
    if (e.chunkIndex >= 1) await gate;
  });
  await worker.waitUntilReady();

  const page = await openPage();
  const op = await producer.bulkCreate(tdb.t('orders'), rows(40_000), { batchSize: 5000 });

  let seen: unknown;
  const running = await until(
    'the page to show the first chunk done and the operation running on worker-a',
    async () => {
      const c = await cells(page, op.id);
      seen = c;
      return c?.rows.startsWith('5,000 / 40,000') &&
        c.state === 'running' &&
        c.workers === 'worker-a'
        ? c
        : undefined;
    },
    20_000,
  ).catch((err) => {
    throw new Error(`${err.message}; the page showed ${JSON.stringify(seen)}`);
  });
  expect(running.table).toBe(tdb.t('orders'));
  openGate();
  const done = await until('the page to show the operation completed', async () => {
    const c = await cells(page, op.id);
    return c?.state === 'completed' ? c : undefined;
  });
  expect(done.rows).toMatch(/^40,000 \/ 40,000/);
  expect(done.workers).toBe('');
  expect(done.queue).toBe(queue);
  expect(Number(done.rate.replace(/,/g, ''))).toBeGreaterThan(0);

  // A failed operation shows its code and message (real bad input through the worker: rows in
  // payload version 1, which the worker decodes; version 2 is refused at enqueue already).
  const v1 = new BulkProducer({
    ...TEST_QUEUE,
    queue,
    prefix,
    logger: silentLogger,
    payloadVersion: 1,
  });
  const bad = await v1.bulkCreate(tdb.t('orders'), [{ sku: 'X', qty: 'many' }]);
  await expect(bad.done({ timeoutMs: 30_000 })).rejects.toMatchObject({ code: 'INVALID_VALUE' });
  await v1.close();
  const failed = await until('the page to show the failure', async () => {
    const c = await cells(page, bad.id);
    return c?.state === 'failed' ? c : undefined;
  });
  expect(failed.error).toMatch(/^INVALID_VALUE .*qty/);
  await until(
    'the signals list to show events',
    async () => (await page.locator('#signals li').count()) > 0,
  );
  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // Markup in a table name or an error message is shown as text, never run.
  const hostile = `op-xss-${Date.now()}`;
  const markup = '<img src=x onerror="window.__xss=1">';
  // Written as any process that can write the queue store could (Redis or Postgres alike).
  const b = testBackend(prefix);
  try {
    const state = b.state(queue);
    await state.register(hostile, 'hostile', {
      kind: 'bulkCreate',
      table: markup,
      returning: false,
    });
    await state.fail(
      hostile,
      JSON.stringify({ code: 'INVALID_VALUE', message: '<script>window.__xss=2</script>' }),
    );
  } finally {
    await b.close();
  }
  const shown = await until('the hostile row', () => cells(page, hostile));
  expect(shown.table).toBe(markup);
  expect(shown.error).toBe('INVALID_VALUE <script>window.__xss=2</script>');
  expect(await page.evaluate('window.__xss')).toBeUndefined();
  expect(await page.locator('#ops img').count()).toBe(0);
});
