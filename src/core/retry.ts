import { BulkError } from './errors.js';

/**
 * Which failures are transient. A rule matches a Postgres SQLSTATE (exact or class prefix) or a
 * Node socket error code; anything that matches no rule is permanent and fails at once.
 */
export interface RetryRule {
  /** SQLSTATE like '40P01', or a class like '08' (two characters). */
  sqlstate?: string;
  /** Node error code like 'ECONNRESET'. */
  errno?: string;
  /** Substring of the message, for driver errors that carry no code. */
  message?: string;
  why: string;
}

export const TRANSIENT_RULES: readonly RetryRule[] = [
  { sqlstate: '08', why: 'connection exception' },
  { sqlstate: '40001', why: 'serialization failure' },
  { sqlstate: '40P01', why: 'deadlock detected' },
  { sqlstate: '57P01', why: 'admin shutdown' },
  { sqlstate: '57P02', why: 'crash shutdown' },
  { sqlstate: '57P03', why: 'cannot connect now (starting up or shutting down)' },
  { sqlstate: '53300', why: 'too many connections' },
  { errno: 'ECONNRESET', why: 'connection reset' },
  { errno: 'ECONNREFUSED', why: 'connection refused' },
  { errno: 'EPIPE', why: 'broken pipe' },
  { errno: 'ETIMEDOUT', why: 'connect timed out' },
  { errno: 'EHOSTUNREACH', why: 'host unreachable' },
  { errno: 'ENOTFOUND', why: 'host not found' },
  { errno: 'EAI_AGAIN', why: 'DNS lookup failed' },
  { message: 'Connection terminated', why: 'connection terminated' },
  { message: 'connection timeout', why: 'connect timed out' },
  { message: 'timeout exceeded when trying to connect', why: 'pool connect timed out' },
  { message: 'Client has encountered a connection error', why: 'connection error' },
  { message: 'Client was closed and is not queryable', why: 'connection closed' },
];

export interface RetryPolicy {
  rules: readonly RetryRule[];
  /** First delay before a retry. */
  initialDelayMs: number;
  /** Delays double up to this. */
  maxDelayMs: number;
  /** Stop retrying once this much time has passed since the first failure. */
  maxElapsedMs: number;
}

/** Resolve a partial policy over the defaults, checking each number (a plain INVALID_OPTION otherwise). */
export function resolveRetry(partial: Partial<RetryPolicy> = {}): RetryPolicy {
  if (partial === null || typeof partial !== 'object')
    throw new BulkError('INVALID_OPTION', 'retry must be an object');
  const out: RetryPolicy = { ...DEFAULT_RETRY };
  for (const [k, v] of Object.entries(partial)) {
    if (v === undefined) continue;
    if (k === 'rules') {
      if (!Array.isArray(v) || v.some((r) => !r || (!r.sqlstate && !r.errno && !r.message)))
        throw new BulkError(
          'INVALID_OPTION',
          'retry.rules must be an array of { sqlstate | errno | message, why }',
        );
      out.rules = v as RetryRule[];
    } else if (k === 'initialDelayMs' || k === 'maxDelayMs' || k === 'maxElapsedMs') {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
        throw new BulkError('INVALID_OPTION', `retry.${k} must be a number >= 0 (milliseconds)`);
      out[k] = v;
    } else {
      throw new BulkError('INVALID_OPTION', `unknown retry option ${JSON.stringify(k)}`);
    }
  }
  if (out.maxDelayMs < out.initialDelayMs)
    throw new BulkError('INVALID_OPTION', 'retry.maxDelayMs must be >= retry.initialDelayMs');
  return out;
}

export const DEFAULT_RETRY: RetryPolicy = {
  rules: TRANSIENT_RULES,
  initialDelayMs: 100,
  maxDelayMs: 5_000,
  maxElapsedMs: 60_000,
};

/** The rule that makes an error transient, or undefined when it is permanent. */
export function transientRule(
  err: unknown,
  rules: readonly RetryRule[] = TRANSIENT_RULES,
): RetryRule | undefined {
  if (err instanceof BulkError) {
    // Only a wrapped database or driver failure can be transient. Validation errors, signal
    // rejections and errors that already gave up (CONNECTION_FAILED, RETRIES_EXHAUSTED) are
    // permanent, whatever their cause says.
    if (err.code !== 'DATABASE_ERROR') return undefined;
    if (!err.pgCode) return err.cause ? transientRule(err.cause, rules) : undefined;
    return transientRule({ code: err.pgCode, message: err.message }, rules);
  }
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : '';
  for (const r of rules) {
    if (
      r.sqlstate &&
      code.length === 5 &&
      (r.sqlstate.length === 2 ? code.startsWith(r.sqlstate) : code === r.sqlstate)
    )
      return r;
    if (r.errno && code === r.errno) return r;
    if (r.message && message.includes(r.message)) return r;
  }
  return undefined;
}

/** Exponential backoff with full jitter: a random delay in [0, min(max, initial * 2^attempt)]. */
export function backoffDelayMs(
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  const cap = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.min(attempt, 30));
  return Math.max(1, Math.floor(random() * cap));
}

export interface RetryHooks {
  onRetry?: (info: { attempt: number; delayMs: number; err: unknown; why: string }) => void;
  /** Once aborted, the next failure is thrown as is and a pending backoff ends at once. */
  signal?: AbortSignal | undefined;
  /** Source of jitter (tests pass a seeded one). */
  random?: () => number;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Run fn, retrying transient failures with backoff until the policy's time budget runs out. */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  hooks: RetryHooks = {},
): Promise<T> {
  let first = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const rule = transientRule(err, policy.rules);
      if (!rule || hooks.signal?.aborted) throw err;
      const now = Date.now();
      if (first === 0) first = now;
      const delayMs = backoffDelayMs(attempt, policy, hooks.random);
      if (now - first + delayMs > policy.maxElapsedMs) {
        const msg = (err as Error)?.message ?? String(err);
        const code =
          rule.sqlstate === '40001' || rule.sqlstate === '40P01'
            ? 'RETRIES_EXHAUSTED'
            : 'CONNECTION_FAILED';
        throw new BulkError(
          code,
          `gave up after ${attempt + 1} attempts over ${now - first} ms (${rule.why}): ${msg}`,
          {
            cause: err,
            pgCode:
              (err as { pgCode?: string; code?: string }).pgCode ??
              (typeof (err as { code?: unknown }).code === 'string' &&
              /^[0-9A-Z]{5}$/.test((err as { code: string }).code)
                ? (err as { code: string }).code
                : undefined),
            table: (err as BulkError).table,
          },
        );
      }
      hooks.onRetry?.({ attempt, delayMs, err, why: rule.why });
      await sleep(delayMs, hooks.signal);
      if (hooks.signal?.aborted) throw err;
    }
  }
}
