import { BulkError, hideValues } from './errors.js';

/** The logging surface bulkmodel uses; pino and console both fit. */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/**
 * `scheme://user:password@`: the password runs to the last `@` of the URL, since passwords may
 * hold a raw `@` (invalid in a URL, yet common in DATABASE_URL) or a `'`. It stops at
 * whitespace and at a `"` (an escaped `\"` is part of it), so a URL inside a JSON log line never
 * swallows the next field. A password holding whitespace is not a URL any client reads.
 */
const CREDENTIALS = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s"]*:)((?:[^\s"\\]|\\.)*)@/gi;

/** A password given as a URL parameter (`?password=...`, libpq's `sslpassword` too). */
const PASSWORD_PARAM = /([?&](?:ssl)?password=)[^&\s"]*/gi;

/** Remove passwords from connection strings inside any text (over-redacting rather than under). */
export function redact(text: string): string {
  return text.replace(CREDENTIALS, '$1***@').replace(PASSWORD_PARAM, '$1***');
}

/**
 * An error as a log line may show it: a BulkError as its JSON (row values left out), any other
 * error as its message with the values Postgres quotes hidden, and its code.
 */
export function loggableError(e: Error, showValues = false): Record<string, unknown> {
  if (e instanceof BulkError) return e.toJSON({ values: showValues });
  const code = (e as { code?: unknown }).code;
  return {
    type: e.name,
    message: showValues ? e.message : hideValues(e.message),
    ...(code !== undefined ? { code } : {}),
  };
}

function line(level: string, obj: object | string, msg?: string): string {
  const body = typeof obj === 'string' ? { msg: obj } : { ...obj, ...(msg ? { msg } : {}) };
  return redact(
    JSON.stringify({ level, time: new Date().toISOString(), ...body }, (_k, v) =>
      typeof v === 'bigint' ? v.toString() : v instanceof Error ? loggableError(v) : v,
    ),
  );
}

/** JSON lines on stderr; debug only when BULKMODEL_DEBUG is set. */
export const defaultLogger: Logger = {
  debug(obj, msg) {
    if (process.env.BULKMODEL_DEBUG) process.stderr.write(`${line('debug', obj, msg)}\n`);
  },
  info(obj, msg) {
    process.stderr.write(`${line('info', obj, msg)}\n`);
  },
  warn(obj, msg) {
    process.stderr.write(`${line('warn', obj, msg)}\n`);
  },
  error(obj, msg) {
    process.stderr.write(`${line('error', obj, msg)}\n`);
  },
};

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
