import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BulkError, BulkProducer, type Row } from '../src/index.js';
import { type Dashboard, startDashboard } from '../src/worker/dashboard/server.js';
import { type TestDb, testDb } from './helpers.js';
import { deleteKeys, queueName, runCli, runPrefix, TEST_QUEUE } from './queueHelpers.js';

/**
 * The dashboard over HTTP, against real Redis: basic auth, the refusal to listen elsewhere than
 * loopback without credentials, read-only bull-board, cross-site writes refused, job data shown
 * as a summary, the operations API and /metrics.
 */
const prefix = runPrefix('dash');
const creds = { user: 'ops', password: 'pa:ss wörd' };
const auth = `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`;
let tdb: TestDb;
const open: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  tdb = await testDb('dash');
  await tdb.pool.query(`CREATE TABLE ${tdb.t('items')} (id bigserial PRIMARY KEY, name text)`);
});
afterEach(async () => {
  while (open.length) await open.pop()!.close();
});
afterAll(async () => {
  await tdb.close();
  await deleteKeys(`${prefix}:*`);
});

async function dashboard(queue: string, extra: Partial<Parameters<typeof startDashboard>[0]> = {}) {
  const d: Dashboard = await startDashboard({
    ...TEST_QUEUE,
    queue,
    prefix,
    port: 0,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    ...extra,
  });
  open.push(d);
  return d;
}

function rows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => ({ name: `row ${i}` }));
}

describe('credentials', () => {
  it('answers 401 without credentials (and with wrong ones) when they are configured', async () => {
    const d = await dashboard(queueName('auth'), { credentials: creds });
    for (const path of ['', 'api/operations', 'metrics', 'queues', 'queues/api/queues']) {
      const r = await fetch(`${d.url}${path}`);
      expect(r.status, path).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Basic /);
      await r.text();
    }
    const wrong = `Basic ${Buffer.from('ops:nope').toString('base64')}`;
    const r = await fetch(`${d.url}api/operations`, { headers: { authorization: wrong } });
    expect(r.status).toBe(401);
    await r.text();
  });

  it('serves the pages, the operations API and /metrics with them', async () => {
    const queue = queueName('pages');
    const d = await dashboard(queue, { credentials: creds });
    const producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
    open.push(producer);
    const op = await producer.bulkCreate(tdb.t('items'), rows(30), { batchSize: 10 });
    const headers = { authorization: auth };

    const home = await fetch(d.url, { headers });
    expect(home.status).toBe(200);
    expect(home.headers.get('content-type')).toMatch(/text\/html/);
    expect(home.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await home.text()).toContain('<script src="operations.js"></script>');

    const api = await fetch(`${d.url}api/operations`, { headers });
    expect(api.status).toBe(200);
    const body = (await api.json()) as { queue: string; operations: Record<string, unknown>[] };
    expect(body.queue).toBe(queue);
    expect(body.operations).toHaveLength(1);
    expect(body.operations[0]).toMatchObject({
      id: op.id,
      table: tdb.t('items'),
      kind: 'bulkCreate',
      state: 'queued',
      rowsDone: 0,
      totalRows: 30,
      totalChunks: 3,
      workers: [],
    });

    const metrics = await fetch(`${d.url}metrics`, { headers });
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    // three chunks and the seal wait; the parent waits for its children
    expect(text).toContain(`bulkmodel_queue_jobs{queue="${queue}",state="waiting"} 4`);
    expect(text).toContain(`bulkmodel_queue_jobs{queue="${queue}",state="waiting-children"} 1`);
    expect(text).toContain(`bulkmodel_operations{queue="${queue}",state="queued"} 1`);
    expect(text).toMatch(/bulkmodel_workers_connected\{queue="[^"]+"\} 0/);

    const board = await fetch(`${d.url}queues`, { headers });
    expect(board.status).toBe(200);
    await board.text();
  });

  it('every route, bull-board and errors included, forbids framing and sniffing and does not announce Express', async () => {
    const d = await dashboard(queueName('headers'), { credentials: creds });
    const headers = { authorization: auth };
    for (const path of [
      '',
      'operations.js',
      'api/operations',
      'metrics',
      'queues',
      'queues/api/queues',
      'queues/static/no-such-file.js',
      'no-such-page',
    ]) {
      for (const h of [headers, {}]) {
        const r = await fetch(`${d.url}${path}`, { headers: h });
        await r.arrayBuffer();
        const csp = r.headers.get('content-security-policy') ?? '';
        expect([path, csp]).toEqual([path, expect.stringContaining("frame-ancestors 'none'")]);
        expect(csp).toContain("script-src 'self'");
        expect(r.headers.get('x-frame-options'), path).toBe('DENY');
        expect(r.headers.get('x-content-type-options'), path).toBe('nosniff');
        expect(r.headers.get('x-powered-by'), path).toBeNull();
      }
    }
  });

  it('refuses to start on a non-loopback host without credentials', async () => {
    const err = await startDashboard({ ...TEST_QUEUE, host: '0.0.0.0', port: 0 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BulkError);
    expect((err as BulkError).code).toBe('INVALID_OPTION');
    // with credentials the same host is fine
    const d = await dashboard(queueName('any'), { host: '0.0.0.0', credentials: creds });
    expect(d.port).toBeGreaterThan(0);
  });

  it('the CLI exits 2 with a clear message on a non-loopback --host without credentials', async () => {
    const c = runCli(['dashboard', '--host', '0.0.0.0', '--port', '0', '--queue', 'never'], {
      BULKMODEL_DASHBOARD_USER: '',
      BULKMODEL_DASHBOARD_PASSWORD: '',
    });
    const { code } = await c.exited;
    expect(code).toBe(2);
    expect(c.output()).toMatch(/refusing to serve the dashboard on 0\.0\.0\.0 without credentials/);
    expect(c.output()).toMatch(/BULKMODEL_DASHBOARD_USER/);
  });

  it('without credentials answers only requests addressed to loopback (DNS rebinding)', async () => {
    const d = await dashboard(queueName('rebind'));
    const ok = await fetch(`${d.url}api/operations`);
    expect(ok.status).toBe(200);
    await ok.text();
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: d.port,
          path: '/api/operations',
          headers: { host: 'evil.example' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(421);
  });
});

describe('bull-board', () => {
  it('shows a chunk job as a summary (rows, columns, bytes), never its rows', async () => {
    const queue = queueName('summary');
    const d = await dashboard(queue);
    const producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
    open.push(producer);
    const op = await producer.bulkCreate(tdb.t('items'), rows(2500), { batchSize: 1000 });
    const r = await fetch(`${d.url}queues/api/queues/${queue}/${op.id}-c1`);
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text).not.toContain('row 1500');
    const job = (JSON.parse(text) as { job: { data: Record<string, unknown> } }).job;
    expect(job.data).toMatchObject({
      kind: 'bulkCreate',
      operationId: op.id,
      table: tdb.t('items'),
      chunk: { index: 1, offset: 1000 },
      rows: 1000,
      columns: ['name'],
    });
    expect(job.data.bytes).toBeGreaterThan(10_000);
    // the operation is a flow: its parent job lists the chunks as children
    const flow = await fetch(`${d.url}queues/api/queues/${queue}/${op.id}/flow`);
    expect(flow.status).toBe(200);
    const tree = (await flow.json()) as { flowTree?: { children?: unknown[] } } & Record<
      string,
      unknown
    >;
    expect(JSON.stringify(tree)).toContain(`${op.id}-c2`);
  });

  it('is read-only by default: actions are refused (405)', async () => {
    const queue = queueName('ro');
    const d = await dashboard(queue);
    for (const path of [`clean/completed`, `retry/failed`, 'pause', 'obliterate']) {
      const r = await fetch(`${d.url}queues/api/queues/${queue}/${path}`, { method: 'PUT' });
      expect(r.status, path).toBe(405);
      await r.text();
    }
  });

  it('with --allow-actions allows retry and clean, from the same origin only', async () => {
    const queue = queueName('actions');
    const d = await dashboard(queue, { allowActions: true, credentials: creds });
    const url = `${d.url}queues/api/queues/${queue}/clean/completed`;
    const crossOrigin = await fetch(url, {
      method: 'PUT',
      headers: { authorization: auth, origin: 'https://evil.example' },
    });
    expect(crossOrigin.status).toBe(403);
    await crossOrigin.text();
    const crossSite = await fetch(url, {
      method: 'PUT',
      headers: { authorization: auth, 'sec-fetch-site': 'cross-site' },
    });
    expect(crossSite.status).toBe(403);
    await crossSite.text();
    const sameOrigin = await fetch(url, {
      method: 'PUT',
      headers: {
        authorization: auth,
        origin: d.url.replace(/\/$/, ''),
        'sec-fetch-site': 'same-origin',
      },
    });
    expect(sameOrigin.status).toBe(200);
    await sameOrigin.text();
    // other actions stay off even so
    const obliterate = await fetch(`${d.url}queues/api/queues/${queue}/obliterate`, {
      method: 'PUT',
      headers: { authorization: auth },
    });
    expect(obliterate.status).toBe(405);
    await obliterate.text();
  });
});
