/** The logging surface bulkmodel uses; pino and console both fit. */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/**
 * `scheme://user:password@`: the password runs to the last `@` of the URL, since passwords may
 * hold a raw `@` (invalid in a URL, yet common in DATABASE_URL). It stops at whitespace and
 * quotes, so a URL inside a JSON log line never swallows the next field.
 */
const CREDENTIALS = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s"']*:)([^\s"']*)@/gi;

/** Remove passwords from connection strings inside any text (over-redacting rather than under). */
export function redact(text: string): string {
  return text.replace(CREDENTIALS, '$1***@');
}

function line(level: string, obj: object | string, msg?: string): string {
  const body = typeof obj === 'string' ? { msg: obj } : { ...obj, ...(msg ? { msg } : {}) };
  return redact(
    JSON.stringify({ level, time: new Date().toISOString(), ...body }, (_k, v) =>
      typeof v === 'bigint'
        ? v.toString()
        : v instanceof Error
          ? { message: v.message, code: (v as { code?: string }).code }
          : v,
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
