import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** A named probe: resolves when the dependency answers. */
export type HealthCheck = () => Promise<unknown>;

export interface WorkerHttpOptions {
  port: number;
  host: string;
  registry: Registry;
  /** e.g. { redis, postgres }: /health is 200 when every one resolves within timeoutMs. */
  checks: Record<string, HealthCheck>;
  checkTimeoutMs?: number;
}

function within(p: Promise<unknown>, ms: number): Promise<unknown> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

/** Run every check; `ok` only when all answered. Messages are the checks' own, for operators. */
export async function runChecks(
  checks: Record<string, HealthCheck>,
  timeoutMs: number,
): Promise<{ ok: boolean; checks: Record<string, string> }> {
  const out: Record<string, string> = {};
  let ok = true;
  await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        await within(check(), timeoutMs);
        out[name] = 'ok';
      } catch (err) {
        ok = false;
        out[name] = String((err as Error)?.message ?? err);
      }
    }),
  );
  return { ok, checks: out };
}

/** The worker's `/metrics` (Prometheus text) and `/health` (200 or 503, JSON) on a port of its own. */
export async function startWorkerHttp(o: WorkerHttpOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'GET only\n');
    if (path === '/metrics') {
      o.registry.metrics().then(
        (text) => send(200, o.registry.contentType, text),
        (err) => send(500, 'text/plain', `${String(err?.message ?? err)}\n`),
      );
      return;
    }
    if (path === '/health') {
      runChecks(o.checks, o.checkTimeoutMs ?? 3000).then((r) =>
        send(r.ok ? 200 : 503, 'application/json', `${JSON.stringify(r)}\n`),
      );
      return;
    }
    send(404, 'text/plain', 'not found: try /metrics or /health\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}
