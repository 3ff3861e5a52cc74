import { BulkError } from './errors.js';

/**
 * How a CSV file spells its fields, as COPY ... CSV takes it: the field delimiter (`,`; a tab
 * for TSV) and the text of NULL (an unquoted empty field by default; a quoted "" is always the
 * empty string). Quotes are `"` doubled inside quoted fields, as in RFC 4180 and COPY.
 */
export interface CsvDialect {
  delimiter?: string;
  null?: string;
}

/** The longest NULL text taken (COPY takes any; a long one is a mistake). */
const MAX_NULL = 64;

/**
 * A dialect from untrusted input (a job's payload, a CLI flag): the delimiter one ASCII
 * character that is not a letter, a digit, a quote, a backslash or a line end; NULL text
 * without a line end, a NUL or the delimiter. Defaults are left out. INVALID_OPTION otherwise.
 */
export function checkCsvDialect(d: unknown, where = 'csv'): CsvDialect {
  if (d === undefined) return {};
  if (d === null || typeof d !== 'object' || Array.isArray(d))
    throw new BulkError('INVALID_OPTION', `${where} must be an object`);
  const { delimiter, null: nullText, ...rest } = d as Record<string, unknown>;
  const extra = Object.keys(rest)[0];
  if (extra !== undefined)
    throw new BulkError('INVALID_OPTION', `${where}: unknown key ${JSON.stringify(extra)}`);
  const out: CsvDialect = {};
  if (delimiter !== undefined) {
    if (
      typeof delimiter !== 'string' ||
      delimiter.length !== 1 ||
      delimiter.charCodeAt(0) > 127 ||
      /[A-Za-z0-9"\\\r\n\0]/.test(delimiter)
    )
      throw new BulkError(
        'INVALID_OPTION',
        `${where}: the delimiter must be one ASCII character (a tab, ',', ';', '|', ...), not a letter, digit, quote, backslash or line end`,
      );
    if (delimiter !== ',') out.delimiter = delimiter;
  }
  if (nullText !== undefined) {
    if (typeof nullText !== 'string' || nullText.length > MAX_NULL || /[\r\n\0"]/.test(nullText))
      throw new BulkError(
        'INVALID_OPTION',
        `${where}: the NULL text must be at most ${MAX_NULL} characters with no quote or line end`,
      );
    if (nullText.includes(out.delimiter ?? ','))
      throw new BulkError('INVALID_OPTION', `${where}: the NULL text holds the delimiter`);
    if (nullText !== '') out.null = nullText;
  }
  return out;
}

/** A string as an SQL literal (standard_conforming_strings: only `'` is special). */
function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** COPY's options for CSV in this dialect (checked by checkCsvDialect first). */
export function copyCsvOptions(d: CsvDialect | undefined, header = false): string {
  const parts = ['FORMAT csv'];
  if (header) parts.push('HEADER true');
  if (d?.delimiter !== undefined) parts.push(`DELIMITER ${literal(d.delimiter)}`);
  if (d?.null !== undefined) parts.push(`NULL ${literal(d.null)}`);
  return ` (${parts.join(', ')})`;
}

/** Whether an unquoted field is NULL in this dialect. */
export function isCsvNull(d: CsvDialect | undefined, value: string, quoted: boolean): boolean {
  return !quoted && value === (d?.null ?? '');
}
