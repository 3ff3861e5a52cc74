/**
 * One error class for everything bulkmodel rejects or fails at, with a stable `code`.
 * Every code is documented in docs/errors.md (a test checks that each one is).
 */

export const ERROR_CODES = {
  UNKNOWN_TABLE: 'The table does not exist (or is not visible to this role).',
  UNKNOWN_COLUMN: 'A row, option or filter names a column the table does not have.',
  INVALID_IDENTIFIER: 'A table or column name is not a valid identifier.',
  INVALID_VALUE:
    'A value has the wrong JavaScript type for its column, is out of range, or cannot be stored (a NUL byte, a lone UTF-16 surrogate).',
  INVALID_ROW: 'A row is not a plain object.',
  INVALID_OPTION: 'An option is missing, unknown or out of range.',
  READ_ONLY_COLUMN: 'A row writes a generated column, which Postgres computes itself.',
  NO_KEY: 'The operation needs a key (primary key or `key` option) and the table has none.',
  MISSING_KEY: 'An updateFields row lacks a value for a key column.',
  DUPLICATE_KEY: 'Two rows of one call carry the same key.',
  NOT_NULL_VIOLATION: 'Postgres refused NULL in a NOT NULL column (23502).',
  UNIQUE_VIOLATION: 'Postgres refused a duplicate of a unique key (23505).',
  FOREIGN_KEY_VIOLATION: 'Postgres refused a row whose reference does not exist (23503).',
  CHECK_VIOLATION: 'Postgres refused a row that fails a CHECK or domain constraint (23514).',
  CONSTRAINT_VIOLATION: 'Postgres refused a row for another integrity constraint (class 23).',
  DATA_ERROR: 'Postgres refused a value while parsing or converting it (class 22).',
  DATABASE_ERROR: 'Any other error Postgres reported; `pgCode` tells which.',
  CONNECTION_FAILED: 'Postgres could not be reached, or the connection broke, and retries ran out.',
  RETRIES_EXHAUSTED:
    'A transient failure (deadlock, serialization failure, lost connection) outlived the retry budget.',
  SIGNAL_REJECTED: 'A pre-signal listener threw or rejected, which stops the operation.',
  TABLE_NOT_ALLOWED: "The table is not in the worker's allowlist.",
  INVALID_PAYLOAD: 'A queue job payload is malformed or of an unknown version.',
  PAYLOAD_TOO_LARGE: 'A chunk is larger than the payload size limit (bytes, or rows per chunk).',
  LIMIT_EXCEEDED:
    "A queue job exceeds one of the worker's own limits (chunk index, nesting depth) and is refused.",
  CHUNK_CONFLICT:
    'A chunk claims an (operation id, chunk index) slot that committed with other content.',
  CATALOG_MISMATCH:
    "A chunk was encoded for columns whose types the worker's catalog no longer has.",
  EXPORT_DISABLED: 'A queued copyTo reached a worker that has no export directory.',
  FILE_EXISTS: 'A queued copyTo would replace a file that exists in the export directory.',
  OPERATION_CONFLICT: 'An operation id was reused for a different operation.',
  CANCELLED: 'The operation was cancelled (`op.cancel()`).',
  TIMEOUT: '`op.done({ timeoutMs })` gave up waiting; the operation itself may still finish.',
  ENQUEUE_STOPPED:
    'The producer stopped enqueueing an operation part way (its input threw, or the process died).',
  UNKNOWN_OPERATION:
    'No operation of that id is recorded on the queue (never enqueued, or pruned).',
  RESULT_EXPIRED:
    'An operation completed, but its returned rows were removed from the queue before they were read.',
  INTERNAL_ERROR:
    "A JavaScript error that is not the database's (a bug, a stack overflow): the operation stops.",
  FILE_ERROR:
    'A file could not be opened, read or written (a path that does not exist, no permission).',
  CLOSED: 'The client, producer or worker was closed.',
  WORKER_LOST:
    'BullMQ failed a job itself: its worker stopped answering (crashed, killed, or blocked) more often than maxStalledCount.',
  QUEUE_SCHEMA:
    "The Postgres backend's queue schema is missing or at another version: run `bulkmodel migrate --backend postgres`.",
} as const;

export type BulkErrorCode = keyof typeof ERROR_CODES;

/**
 * Whether bulkmodel retries a failure that ends as this code: 'yes', a queue job is attempted
 * again (BullMQ's attempts, with backoff) after the in-process retries ran out; 'transient',
 * retried in process while its pgCode is one of TRANSIENT_RULES (src/core/retry.ts), raised as
 * RETRIES_EXHAUSTED (a deadlock, a serialization failure) or CONNECTION_FAILED if it never
 * clears, else not retried; 'no', it fails at once. docs/errors.md
 * says the same for each code (a test compares them).
 */
export const RETRIED: Readonly<Record<BulkErrorCode, 'yes' | 'transient' | 'no'>> = {
  ...(Object.fromEntries(Object.keys(ERROR_CODES).map((c) => [c, 'no'])) as Record<
    BulkErrorCode,
    'no'
  >),
  DATABASE_ERROR: 'transient',
  CONNECTION_FAILED: 'yes',
  RETRIES_EXHAUSTED: 'yes',
};

export interface BulkErrorDetails {
  table?: string | undefined;
  column?: string | undefined;
  /** Index of the offending row in the operation's input (0-based). */
  row?: number | undefined;
  /** Line of the file the rows came from (1-based, as an editor counts), for file loads. */
  line?: number | undefined;
  /** Postgres SQLSTATE when the error came from Postgres. */
  pgCode?: string | undefined;
  constraint?: string | undefined;
  /** Postgres's detail line: it may quote row values, so it is not serialized by default. */
  detail?: string | undefined;
  /** The offending value, shortened: kept in-process, not serialized by default. */
  value?: string | undefined;
  /** Postgres's own message, values included: kept in-process, not serialized by default. */
  pgMessage?: string | undefined;
  /** For an operation that failed part way: chunks and rows that had committed before. */
  committedChunks?: number | undefined;
  committedRows?: number | undefined;
  cause?: unknown;
}

const DETAIL_KEYS: readonly (keyof Omit<BulkErrorDetails, 'cause'>)[] = [
  'table',
  'column',
  'row',
  'line',
  'pgCode',
  'constraint',
  'detail',
  'value',
  'pgMessage',
  'committedChunks',
  'committedRows',
];

/** Fields that can hold row values: left out of `toJSON()` unless asked for. */
const VALUE_KEYS: ReadonlySet<string> = new Set(['detail', 'value', 'pgMessage']);

/** Longest message kept when an error is serialized (it travels into Redis and logs). */
const MAX_MESSAGE = 2000;

/** The detail fields (BulkErrorDetails but `cause`, which Error has): declared once, merged in. */
export interface BulkError extends Omit<BulkErrorDetails, 'cause'> {}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the constructor sets every merged field (DETAIL_KEYS)
export class BulkError extends Error {
  override readonly name = 'BulkError';
  readonly code: BulkErrorCode;

  constructor(code: BulkErrorCode, message: string, details: BulkErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    for (const k of DETAIL_KEYS) {
      if (details[k] !== undefined) (this as Record<string, unknown>)[k] = details[k];
    }
  }

  /**
   * A plain object that survives JSON (queue results) and can be turned back into a BulkError.
   * Row values (`detail`, `value`) stay out unless `values` is true: what this gives travels
   * into Redis, logs and dashboards.
   */
  toJSON(options: { values?: boolean } = {}): Record<string, unknown> {
    const values = options?.values === true;
    const out: Record<string, unknown> = {
      name: this.name,
      code: this.code,
      message:
        this.message.length > MAX_MESSAGE ? `${this.message.slice(0, MAX_MESSAGE)}…` : this.message,
    };
    for (const k of DETAIL_KEYS) {
      if (this[k] !== undefined && (values || !VALUE_KEYS.has(k))) out[k] = this[k];
    }
    return out;
  }

  /**
   * A BulkError from its JSON. A code this version does not know (a newer writer's, or a hostile
   * one's) is INTERNAL_ERROR, naming it: it is never taken for the database's.
   */
  static fromJSON(value: unknown): BulkError {
    const v = (value && typeof value === 'object' ? value : {}) as Record<string, unknown>;
    const message = typeof v.message === 'string' ? v.message : 'unknown error';
    // Only the detail fields, each of its own type: stored JSON is anyone's who can write it.
    const details: Record<string, unknown> = {};
    for (const k of DETAIL_KEYS) {
      const x = v[k];
      const numeric = k === 'row' || k === 'line' || k.startsWith('committed');
      if (numeric ? typeof x === 'number' && Number.isFinite(x) : typeof x === 'string')
        details[k] = x;
    }
    if (typeof v.code === 'string' && Object.hasOwn(ERROR_CODES, v.code))
      return new BulkError(v.code as BulkErrorCode, message, details as BulkErrorDetails);
    return new BulkError(
      'INTERNAL_ERROR',
      `an error of unknown code ${JSON.stringify(String(v.code)).slice(0, 60)}: ${message}`,
      details as BulkErrorDetails,
    );
  }
}

/**
 * The error an operation ended with, from what the queue keeps: its stored error (a BulkError's
 * JSON), else its job's failure reason. A worker fails jobs as `CODE: message`; a reason
 * without a code is BullMQ's own, which fails a job only when its worker kept vanishing
 * (WORKER_LOST); anything unreadable is INTERNAL_ERROR, saying what was found.
 */
export function storedError(
  stored: string | null | undefined,
  reason: string | null | undefined,
  operationId: string,
): BulkError {
  if (stored) {
    try {
      return BulkError.fromJSON(JSON.parse(stored));
    } catch {
      return new BulkError(
        'INTERNAL_ERROR',
        `operation ${operationId} failed, and its error record is not readable`,
      );
    }
  }
  const coded = /^([A-Z][A-Z_]+): ([\s\S]*)$/.exec(reason ?? '');
  if (coded && Object.hasOwn(ERROR_CODES, coded[1]!))
    return new BulkError(coded[1] as BulkErrorCode, coded[2]!);
  if (reason && /stalled/i.test(reason))
    return new BulkError(
      'WORKER_LOST',
      `operation ${operationId} failed: ${reason} (its worker stopped answering while running it; see maxStalledCount)`,
    );
  return new BulkError(
    'INTERNAL_ERROR',
    `operation ${operationId} failed: ${reason || 'no reason was recorded'}`,
  );
}

export function isBulkError(e: unknown): e is BulkError {
  return e instanceof BulkError;
}

/** The shape of a node-postgres DatabaseError that we read. */
export interface PgErrorLike {
  code?: string;
  message: string;
  detail?: string;
  constraint?: string;
  column?: string;
  table?: string;
  where?: string;
}

/**
 * Errors that are not the database's, as BulkErrors: a file that cannot be opened or read
 * (FILE_ERROR), or an error JavaScript raised, a stack overflow or a bug (INTERNAL_ERROR; Node's
 * own carry codes like ERR_OUT_OF_RANGE). A pg DatabaseError is never one of these.
 */
export function fileOrInternalError(err: unknown, table?: string): BulkError | undefined {
  if (isFileError(err)) {
    const f = err as { message: string };
    return new BulkError('FILE_ERROR', f.message, { table: table || undefined, cause: err });
  }
  if (
    err instanceof RangeError ||
    err instanceof TypeError ||
    err instanceof ReferenceError ||
    err instanceof SyntaxError
  ) {
    const message = table ? `${table}: ${err.message}` : err.message;
    return new BulkError('INTERNAL_ERROR', message, { table: table || undefined, cause: err });
  }
  return undefined;
}

/** A Node system error of a file (ENOENT, EACCES, ... with a path). */
function isFileError(err: unknown): boolean {
  const e = err as { code?: unknown; syscall?: unknown; path?: unknown } | null;
  return (
    typeof e?.code === 'string' &&
    /^E[A-Z]+$/.test(e.code) &&
    typeof e.syscall === 'string' &&
    typeof e.path === 'string'
  );
}

function pgCodeToBulk(code: string): BulkErrorCode {
  switch (code) {
    case '23502':
      return 'NOT_NULL_VIOLATION';
    case '23505':
      return 'UNIQUE_VIOLATION';
    case '23503':
      return 'FOREIGN_KEY_VIOLATION';
    case '23514':
      return 'CHECK_VIOLATION';
    case '21000':
      return 'DUPLICATE_KEY';
    case '42P01':
      return 'UNKNOWN_TABLE';
    case '42703':
      return 'UNKNOWN_COLUMN';
  }
  if (code.startsWith('23')) return 'CONSTRAINT_VIOLATION';
  if (code.startsWith('22')) return 'DATA_ERROR';
  return 'DATABASE_ERROR';
}

/** Words after which Postgres quotes a name (an identifier), not a value. */
const NAMED =
  /(?:column|relation|table|constraint|index|type|schema|function|sequence|domain|encoding|database|role|operator|extension|collation|trigger|view|savepoint|cursor|statement|parameter|portal|prepared statement|attribute|key)\s*$/i;

const HIDDEN = '(value hidden)';

/**
 * Postgres's message without the row values it quotes. Postgres does not escape a `"` inside
 * a value it quotes, so the known shapes are matched whole first: a value at the end after
 * `: "` (`invalid input syntax for type integer: "five"`, `invalid input value for enum mood:
 * "x"`, `malformed array literal: "..."`), `value "..." is out of range for type integer`,
 * `"..." is out of range for type double precision`, and bytes shown as `0x..`. In what is left
 * (a trigger's own RAISE text, say), a double-quoted part is kept only when a word before it
 * says it is a name (column "x", constraint "y"); everything from a quote that is not a name's
 * to the last quote of the message is hidden.
 */
export function hideValues(message: string): string {
  let m = message.replace(/0x[0-9a-fA-F]{2}(?: 0x[0-9a-fA-F]{2})*/g, '(bytes hidden)');
  const atEnd = /^([^"]*(?:"[^"]*"[^"]*)*?): ".*"\s*$/s.exec(m);
  if (atEnd && !/"/.test(atEnd[1]!.replace(/"[^"]*"/g, ''))) return `${atEnd[1]}: ${HIDDEN}`;
  m = m.replace(
    /^value ".*" is out of range for type ([^"]+)$/s,
    `value ${HIDDEN} is out of range for type $1`,
  );
  m = m.replace(
    /^".*" is out of range for type ([^"]+)$/s,
    `${HIDDEN} is out of range for type $1`,
  );
  let out = '';
  let at = 0;
  for (;;) {
    const open = m.indexOf('"', at);
    if (open === -1) return out + m.slice(at);
    const close = m.indexOf('"', open + 1);
    if (close === -1) return `${out}${m.slice(at, open)}${HIDDEN}`;
    if (NAMED.test(m.slice(Math.max(0, open - 40), open))) {
      out += m.slice(at, close + 1);
      at = close + 1;
      continue;
    }
    // Not a name: the value may hold quotes itself, so hide up to the last quote there is.
    return `${out}${m.slice(at, open)}${HIDDEN}${m.slice(m.lastIndexOf('"') + 1)}`;
  }
}

/**
 * Wrap a Postgres error as a BulkError naming the table, the column and, where Postgres says
 * (COPY reports a line), the row. `rowOffset` turns a line within a chunk into an input index.
 */
export function fromPgError(
  err: unknown,
  ctx: {
    table: string;
    rowOffset?: number;
    rowIndexOfLine?: (line: number) => number | undefined;
    /** COPY data from a file: its line N is this file line. */
    fileLineOfLine?: (line: number) => number;
    /** The column's name as the caller knows it (a staging table's `c0` is the table's column). */
    columnName?: (name: string) => string;
  },
): BulkError {
  if (err instanceof BulkError) return err;
  const notTheDatabase = fileOrInternalError(err, ctx.table);
  if (notTheDatabase) return notTheDatabase;
  const e = err as PgErrorLike;
  const code = typeof e?.code === 'string' ? e.code : '';
  // Without a SQLSTATE (and not JavaScript's or a file's): the driver's own error.
  const bulkCode = code ? pgCodeToBulk(code) : 'DATABASE_ERROR';
  let column = e?.column;
  let row: number | undefined;
  // COPY errors carry a context like: COPY items, line 3, column name: "..."
  const where = typeof e?.where === 'string' ? e.where : '';
  const m = /COPY [^,]+, line (\d+)(?:, column ([^:]+))?/.exec(where);
  let fileLine: number | undefined;
  if (m) {
    const line = Number(m[1]);
    if (ctx.fileLineOfLine) fileLine = ctx.fileLineOfLine(line);
    else row = ctx.rowIndexOfLine ? ctx.rowIndexOfLine(line) : (ctx.rowOffset ?? 0) + line - 1;
    if (!column && m[2]) column = m[2];
  }
  if (column && ctx.columnName) column = ctx.columnName(column);
  const raw = typeof e?.message === 'string' ? e.message : String(err);
  const parts = [ctx.table ? `${ctx.table}: ${hideValues(raw)}` : hideValues(raw)];
  if (column) parts.push(`column ${column}`);
  if (row !== undefined) parts.push(`row ${row}`);
  if (fileLine !== undefined) parts.push(`line ${fileLine}`);
  // Postgres's detail ("Key (code)=(x) already exists", "Failing row contains (...)") quotes
  // row values: it stays on the error as `detail`, out of the message.
  return new BulkError(bulkCode, parts.join('; '), {
    table: ctx.table || undefined,
    column,
    row,
    line: fileLine,
    pgCode: code || undefined,
    constraint: e?.constraint,
    detail: e?.detail,
    pgMessage: raw,
    cause: err,
  });
}
