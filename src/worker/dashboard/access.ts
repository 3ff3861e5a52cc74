import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { BulkError } from '../../core/errors.js';

export interface Credentials {
  user: string;
  password: string;
}

/** Credentials from BULKMODEL_DASHBOARD_USER / BULKMODEL_DASHBOARD_PASSWORD, if both are set. */
export function credentialsFromEnv(env = process.env): Credentials | undefined {
  const user = env.BULKMODEL_DASHBOARD_USER;
  const password = env.BULKMODEL_DASHBOARD_PASSWORD;
  if (!user && !password) return undefined;
  if (!user || !password)
    throw new BulkError(
      'INVALID_OPTION',
      'set both BULKMODEL_DASHBOARD_USER and BULKMODEL_DASHBOARD_PASSWORD, or neither',
    );
  return { user, password };
}

/** Is this a loopback address or name (127.0.0.0/8, ::1, localhost)? */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Without credentials the dashboard may only listen on loopback. */
export function assertSafeBinding(host: string, credentials: Credentials | undefined): void {
  if (credentials || isLoopback(host)) return;
  throw new BulkError(
    'INVALID_OPTION',
    `refusing to serve the dashboard on ${host} without credentials: set BULKMODEL_DASHBOARD_USER and BULKMODEL_DASHBOARD_PASSWORD, or bind to 127.0.0.1`,
  );
}

/** Compare two secrets in time independent of where they differ (and of their lengths). */
export function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

function parseBasic(header: string | undefined): Credentials | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) return undefined;
  return { user: text.slice(0, i), password: text.slice(i + 1) };
}

/** HTTP basic auth against one user; both fields compared in constant time. */
export function basicAuth(expected: Credentials) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const got = parseBasic(req.headers.authorization);
    const userOk = sameSecret(got?.user ?? '', expected.user);
    const passOk = sameSecret(got?.password ?? '', expected.password);
    if (got && userOk && passOk) {
      next();
      return;
    }
    res.set('WWW-Authenticate', 'Basic realm="bulkmodel", charset="UTF-8"');
    res.status(401).type('text/plain').send('authentication required\n');
  };
}

/**
 * Without credentials, answer only requests addressed to a loopback name: a page elsewhere that
 * rebinds its DNS name to 127.0.0.1 cannot read the dashboard.
 */
export function loopbackHostOnly(req: Request, res: Response, next: NextFunction): void {
  const host = (req.headers.host ?? '').replace(/:\d+$/, '');
  if (isLoopback(host)) {
    next();
    return;
  }
  res.status(421).type('text/plain').send('this dashboard answers only on a loopback address\n');
}
