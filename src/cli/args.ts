import { parseArgs } from 'node:util';
import { BulkError } from '../core/errors.js';
import { redact } from '../core/logger.js';
import {
  type Command,
  commandDefault,
  defaultText,
  envOf,
  SETTINGS,
  type Setting,
  type SettingId,
  settingsOf,
} from '../core/settings.js';
import { environmentNames } from './configDoc.js';

/** The width help text wraps at. */
const WIDTH = 96;

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

export const USAGE = `bulkmodel — bulk writes into PostgreSQL through a BullMQ queue

Usage: bulkmodel <command> [options]

Commands:
  worker     run a worker that writes queued chunks into Postgres
  dashboard  serve the operations page, bull-board and /metrics (basic auth or loopback only)
  demo       create a demo table, load rows through the queue, update, export
  load       load a CSV or NDJSON file into a table through the queue, with progress
  export     write a table to a CSV or NDJSON file (directly from Postgres), with progress
  status     show recent operations (or one: status <operation id>)
  migrate    create or upgrade the queue schema of the Postgres backend (--backend postgres)
  help       show this help (also: bulkmodel <command> --help)

Environment (docs/configuration.md lists every setting):
  ${wrap(environmentNames().join(', '), 2, 2)}
Exit codes: 0 ok, 1 operation failed, 2 bad usage, 3 Postgres or Redis unreachable.

Examples:
  bulkmodel demo --rows 20000
  bulkmodel demo --rows 20000 --backend postgres    # no Redis: queues in Postgres
  bulkmodel worker --tables items
  bulkmodel load items items.csv --workers 2
  bulkmodel export items items.ndjson --where '{"flag":true}'
  bulkmodel status
`;

export interface CommandSpec {
  usage: string;
  /** The command whose flags (src/core/settings.ts) it takes. */
  command: Command;
}

export type Parsed = {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
};

/** Parse a command's flags; --help prints its usage and returns null. Unknown flags throw. */
export function parse(spec: CommandSpec, argv: string[]): Parsed | null {
  const options = { ...commandFlags(spec.command), help: { type: 'boolean' as const, short: 'h' } };
  const r = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  if (r.values.help) {
    process.stdout.write(spec.usage);
    return null;
  }
  return r as Parsed;
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** parseArgs's options for a command's flags. */
export function commandFlags(command: Command): Record<string, { type: 'string' | 'boolean' }> {
  const out: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const [, s] of settingsOf(command))
    out[s.flag!] = { type: s.type === 'boolean' ? 'boolean' : 'string' };
  return out;
}

function flagOf(id: SettingId): string {
  const flag = (SETTINGS[id] as Setting).flag;
  if (!flag) throw new Error(`setting ${id} has no flag`);
  return flag;
}

/** A setting's flag, else its environment variable (an empty one counts as unset). */
function given(p: Parsed, id: SettingId, command?: Command): string | undefined {
  const s = SETTINGS[id] as Setting;
  const v = s.flag ? str(p, s.flag) : undefined;
  if (v !== undefined) return v;
  const env = envOf(s, command);
  return env && process.env[env] ? process.env[env] : undefined;
}

/** A setting's text: its flag, else its environment variable, else the command's default. */
export function text(p: Parsed, id: SettingId, command?: Command): string | undefined {
  const v = given(p, id, command);
  if (v !== undefined) return v;
  const d = commandDefault(SETTINGS[id] as Setting, command);
  return d === undefined ? undefined : String(d);
}

/** A switch: given or not. */
export function flag(p: Parsed, id: SettingId): boolean {
  return p.values[flagOf(id)] === true;
}

/** An integer setting within its declared range, or its default; anything else is a usage error. */
export function int(p: Parsed, id: SettingId, command?: Command): number {
  const s = SETTINGS[id] as Setting;
  const v = text(p, id, command);
  if (v === undefined) throw new Error(`setting ${id} has no default`);
  // Decimal digits only (1_000 allowed): not '', 1e3 or 0x10, which Number() would take.
  const n = /^\+?\d[\d_]*$/.test(v.trim()) ? Number(v.trim().replace(/_/g, '')) : Number.NaN;
  const min = s.min ?? 1;
  const max = s.max ?? Number.MAX_SAFE_INTEGER;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = s.max === undefined ? `of at least ${min}` : `from ${min} to ${max}`;
    throw new BulkError(
      'INVALID_OPTION',
      `--${flagOf(id)} must be an integer ${range}, got ${JSON.stringify(v)}`,
    );
  }
  return n;
}

/** An integer setting when given (flag or environment), else undefined: its default is not. */
export function optionalInt(p: Parsed, id: SettingId): number | undefined {
  return given(p, id) === undefined ? undefined : int(p, id);
}

/** Words wrapped to `width`, lines after the first indented by `indent`. */
function wrap(words: string, first: number, indent: number): string {
  const lines: string[] = [];
  let line = '';
  let room = WIDTH - first;
  for (const w of words.split(' ')) {
    if (line && line.length + 1 + w.length > room) {
      lines.push(line);
      line = w;
      room = WIDTH - indent;
    } else line = line ? `${line} ${w}` : w;
  }
  lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

/** One setting's doc line with its environment variable and default, as help and docs show it. */
export function describeSetting(s: Setting, command?: Command): string {
  const doc = (command && s.commands?.[command]?.doc) || s.doc;
  const extra = [
    ...(envOf(s, command) ? [`env ${envOf(s, command)}`] : []),
    ...(defaultText(s, command) !== undefined ? [`default ${defaultText(s, command)}`] : []),
  ];
  return extra.length ? `${doc} (${extra.join(', ')})` : doc;
}

/** The Options section of a command's --help, built from the settings it takes. */
export function optionsHelp(command: Command): string {
  const rows = settingsOf(command).map(([, s]) => [`--${s.flag}${s.arg ? ` ${s.arg}` : ''}`, s]);
  const col = Math.min(26, 4 + Math.max(...rows.map(([f]) => (f as string).length)));
  return rows
    .map(([f, s]) => {
      const head = `  ${f as string}`;
      const body = wrap(describeSetting(s as Setting, command), col, col);
      return head.length + 1 > col ? `${head}\n${' '.repeat(col)}${body}` : head.padEnd(col) + body;
    })
    .join('\n');
}

export { DEFAULT_DATABASE_URL } from '../core/client.js';

/** The message a user sees when a service does not answer: where, and how to start it. */
export function unreachable(service: 'Postgres' | 'Redis', url: string, err: unknown): BulkError {
  const how =
    service === 'Postgres'
      ? 'start it (e.g. pg_ctlcluster <version> main start, or docker compose up -d postgres) or set DATABASE_URL / --database'
      : 'start it (e.g. redis-server --daemonize yes, or docker compose up -d redis) or set REDIS_URL / --redis (a cluster: REDIS_CLUSTER / --redis-cluster)';
  return new BulkError(
    'CONNECTION_FAILED',
    `cannot reach ${service} at ${redact(url)}: ${redact(String((err as Error)?.message ?? err))}. ${how}`,
    {
      cause: err,
    },
  );
}
