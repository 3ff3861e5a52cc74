import { pino } from 'pino';
import pretty from 'pino-pretty';
import { type Logger, loggableError, redact } from '../core/logger.js';

export interface CliLoggerOptions {
  /** Pretty lines for a person; default: when stderr is a terminal. JSON lines otherwise. */
  pretty?: boolean;
  /** Default: LOG_LEVEL, else debug with BULKMODEL_DEBUG, else info. */
  level?: string;
  /** Log row values held by errors (Postgres's detail, the value refused). Default false. */
  showValues?: boolean;
}

/**
 * The CLI's pino logger, on stderr: JSON lines by default, pino-pretty on a terminal. Every line
 * passes through `redact` (connection-string passwords) and known secret fields are censored.
 */
export function createCliLogger(options: CliLoggerOptions = {}): Logger & pino.Logger {
  const level =
    options.level ?? process.env.LOG_LEVEL ?? (process.env.BULKMODEL_DEBUG ? 'debug' : 'info');
  const opts: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    redact: {
      paths: [
        'password',
        '*.password',
        'authorization',
        '*.authorization',
        'headers.authorization',
      ],
      censor: '***',
    },
    // Errors through bulkmodel's serializer: row values (a BulkError's detail and value,
    // Postgres's quoted values, a driver error kept as `cause`) stay out unless asked for.
    serializers: {
      err: (e: unknown) => (e instanceof Error ? loggableError(e, options.showValues) : e),
    },
    hooks: { streamWrite: (s) => redact(s) },
  };
  const usePretty = options.pretty ?? process.stderr.isTTY === true;
  const dest = usePretty
    ? pretty({
        destination: 2,
        sync: true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
      })
    : pino.destination({ dest: 2, sync: true });
  return pino(opts, dest);
}
