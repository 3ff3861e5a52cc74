import type { NextFunction, Request, Response } from 'express';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Refuse state-changing requests that a browser sent from another site (the browser would attach
 * the basic-auth credentials it holds): Sec-Fetch-Site must be same-origin (or none: typed by the
 * user), and an Origin, when sent, must be this host. Clients that send neither (curl, scripts)
 * are not browsers and pass.
 */
export function sameOriginOnly(req: Request, res: Response, next: NextFunction): void {
  if (SAFE.has(req.method)) {
    next();
    return;
  }
  const site = req.headers['sec-fetch-site'];
  const origin = req.headers.origin;
  let ok = site === undefined || site === 'same-origin' || site === 'none';
  if (ok && origin !== undefined) {
    try {
      ok = new URL(origin).host === req.headers.host;
    } catch {
      ok = false;
    }
  }
  if (ok) {
    next();
    return;
  }
  res.status(403).json({ error: 'cross-site request refused' });
}

/** Actions the dashboard allows with --allow-actions: retry and clean, of a queue or one job. */
const ACTIONS = [
  /^\/api\/queues\/[^/]+\/(retry|clean)\/[^/]+$/,
  /^\/api\/queues\/[^/]+\/[^/]+\/(retry|clean)$/,
];

/** Under the board's mount: reads always; retry/clean only when actions are allowed; nothing else. */
export function boardActions(allowActions: boolean) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (SAFE.has(req.method)) {
      next();
      return;
    }
    const path = req.path;
    if (allowActions && req.method === 'PUT' && ACTIONS.some((re) => re.test(path))) {
      next();
      return;
    }
    res.status(405).json({
      error: allowActions
        ? 'only retry and clean are enabled on this dashboard'
        : 'this dashboard is read-only (start it with --allow-actions to retry and clean)',
    });
  };
}
