import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commandFlags, int, optionsHelp, type Parsed, text } from '../../src/cli/args.js';
import { configurationMarkdown } from '../../src/cli/configDoc.js';
import {
  COMMANDS,
  commandDefault,
  OWNERS,
  optionNamesOf,
  SETTINGS,
  type Setting,
} from '../../src/core/settings.js';

const root = join(import.meta.dirname, '..', '..');
const all = Object.entries(SETTINGS) as [string, Setting][];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function parsed(values: Parsed['values'] = {}): Parsed {
  return { values, positionals: [] };
}

describe('the settings declaration', () => {
  it('docs/configuration.md is generated from it (npm run docs:config)', () => {
    const onDisk = readFileSync(join(root, 'docs', 'configuration.md'), 'utf8');
    expect(onDisk, 'docs/configuration.md is stale: run npm run docs:config').toBe(
      configurationMarkdown(),
    );
  });

  it('every environment variable the code reads is declared, and every declared one is read', () => {
    const declared = new Set(all.flatMap(([, s]) => (s.env ? [s.env] : [])));
    const read = new Set<string>();
    for (const file of sources(join(root, 'src'))) {
      if (file.endsWith('settings.ts')) continue;
      for (const m of readFileSync(file, 'utf8').matchAll(/\benv(?:\.|\[')([A-Z][A-Z0-9_]{2,})/g))
        read.add(m[1]!);
    }
    // Read through the declaration (text() in src/cli/args.ts), not by name.
    const throughDeclaration = [
      'BULKMODEL_TABLES',
      'BULKMODEL_QUEUE_SCHEMA',
      'BULKMODEL_QUEUE',
      'BULKMODEL_BACKEND',
    ];
    for (const name of read) expect(declared, `${name} is read but not declared`).toContain(name);
    for (const name of declared)
      if (!throughDeclaration.includes(name))
        expect(read, `${name} is declared but never read`).toContain(name);
  });

  it('each setting is used somewhere, and its default fits its own type and range', () => {
    for (const [id, s] of all) {
      expect(s.options || s.flag || s.env, id).toBeTruthy();
      expect(Boolean(s.flag), `${id}: a flag needs commands and commands a flag`).toBe(
        Object.keys(s.commands ?? {}).length > 0,
      );
      expect(s.doc.includes('\n'), `${id}: one line of doc`).toBe(false);
      for (const command of [undefined, ...COMMANDS]) {
        const d = commandDefault(s, command);
        if (d === undefined) continue;
        if (s.type === 'integer') {
          expect(Number.isSafeInteger(d), id).toBe(true);
          expect(d as number, id).toBeGreaterThanOrEqual(s.min ?? 1);
          expect(d as number, id).toBeLessThanOrEqual(s.max ?? Number.MAX_SAFE_INTEGER);
        }
        if (s.type === 'boolean') expect(typeof d, id).toBe('boolean');
        if (s.choices) expect(s.choices, id).toContain(String(d));
      }
    }
  });

  it('every class takes exactly its declared options (checked at compile time too)', () => {
    for (const owner of OWNERS) expect(optionNamesOf(owner).length, owner).toBeGreaterThan(3);
    expect(optionNamesOf('BulkWorker')).toContain('limits');
    expect(optionNamesOf('BulkClient')).toContain('connectionString');
    expect(optionNamesOf('startDashboard')).toContain('credentials');
  });

  it('the CLI takes each declared flag, lists it in --help, and reads flag, then env, then default', () => {
    for (const command of COMMANDS) {
      const flags = commandFlags(command);
      const help = optionsHelp(command);
      for (const name of Object.keys(flags))
        expect(help, `${command} --${name}`).toMatch(new RegExp(`^  --${name}\\b`, 'm'));
    }
    const saved = process.env.BULKMODEL_QUEUE;
    try {
      process.env.BULKMODEL_QUEUE = 'from-env';
      expect(text(parsed({ queue: 'from-flag' }), 'queue', 'worker')).toBe('from-flag');
      expect(text(parsed(), 'queue', 'worker')).toBe('from-env');
      // The demo keeps its own queue whatever the environment says.
      expect(text(parsed(), 'queue', 'demo')).toBe('bulkmodel-demo');
      process.env.BULKMODEL_QUEUE = '';
      expect(text(parsed(), 'queue', 'worker')).toBe('bulkmodel');
    } finally {
      if (saved === undefined) delete process.env.BULKMODEL_QUEUE;
      else process.env.BULKMODEL_QUEUE = saved;
    }
    expect(int(parsed(), 'workers', 'demo')).toBe(2);
    expect(int(parsed(), 'workers', 'load')).toBe(0);
    expect(int(parsed({ 'heap-growth': '1_000' }), 'heapGrowth')).toBe(1000);
    expect(() => int(parsed({ 'heap-growth': '1001' }), 'heapGrowth')).toThrow(
      '--heap-growth must be an integer from 0 to 1000, got "1001"',
    );
    // Decimal digits only: what Number() would also take is refused.
    for (const bad of ['', ' ', '1e3', '0x10', '1.5', '-1'])
      expect(() => int(parsed({ 'metrics-port': bad }), 'metricsPort'), bad).toThrow(
        /--metrics-port must be an integer/,
      );
    expect(() => int(parsed({ concurrency: '0' }), 'concurrency')).toThrow(
      '--concurrency must be an integer of at least 1, got "0"',
    );
  });
});
