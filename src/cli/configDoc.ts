import {
  COMMANDS,
  type Command,
  defaultText,
  envOf,
  OWNERS,
  type Owner,
  SETTINGS,
  type Setting,
  settingsOf,
} from '../core/settings.js';

const all = Object.entries(SETTINGS) as [string, Setting][];

/** A table cell: pipes escaped, code where it is code. */
function cell(text: string | undefined): string {
  return text === undefined || text === '' ? '' : text.replace(/\|/g, '\\|');
}

function code(text: string | undefined): string {
  return text === undefined ? '' : `\`${text}\``;
}

/** A command's doc for a setting, else the setting's own. */
function docOf(s: Setting, command?: Command): string {
  return (command && s.commands?.[command]?.doc) || s.doc;
}

/** The environment variables, for the CLI's top-level help. */
export function environmentNames(): string[] {
  return all.flatMap(([, s]) => (s.env ? [s.env] : []));
}

/**
 * docs/configuration.md, generated from src/core/settings.ts (`npm run docs:config`); a test
 * fails when the file and the declaration disagree.
 */
export function configurationMarkdown(): string {
  const out: string[] = [
    '# Configuration',
    '',
    '<!-- Generated from src/core/settings.ts by `npm run docs:config`: edit that file, not this one. -->',
    '',
    'Every setting of bulkmodel is declared once, in `src/core/settings.ts`: its library option on',
    'each class that takes it, its CLI flag, its environment variable, its type, its default and one',
    'line of doc. The constructors refuse an option they do not declare (`INVALID_OPTION`, naming the',
    'nearest known one); the CLI builds its flags and `--help` from the same table; this page is',
    'generated from it. A flag wins over its environment variable, which wins over the default; an',
    'empty environment variable counts as unset.',
    '',
    '## Environment variables',
    '',
    '| Variable | Flag | Library option | Default | Meaning |',
    '|---|---|---|---|---|',
  ];
  for (const [, s] of all) {
    if (!s.env) continue;
    const opts = [...new Set(Object.values(s.options ?? {}))];
    out.push(
      `| ${code(s.env)} | ${s.flag ? code(`--${s.flag}`) : ''} | ${opts.map(code).join(', ')} | ${cell(defaultText(s))} | ${cell(s.doc)} |`,
    );
  }
  out.push('', '## Command flags', '');
  for (const command of COMMANDS) {
    out.push(
      `### bulkmodel ${command}`,
      '',
      '| Flag | Environment | Default | Meaning |',
      '|---|---|---|---|',
    );
    for (const [, s] of settingsOf(command)) {
      const flag = `--${s.flag}${s.arg ? ` ${s.arg}` : ''}`;
      out.push(
        `| ${code(flag)} | ${code(envOf(s, command))} | ${cell(defaultText(s, command))} | ${cell(docOf(s, command))} |`,
      );
    }
    out.push('');
  }
  out.push('## Library options', '');
  for (const owner of OWNERS) {
    out.push(
      `### ${owner === 'startDashboard' ? 'startDashboard()' : `new ${owner}()`}`,
      '',
      '| Option | Type | Environment | Default | Meaning |',
      '|---|---|---|---|---|',
    );
    for (const [, s] of all) {
      const name = s.options?.[owner as Owner];
      if (!name) continue;
      const type = s.choices ? s.choices.map((c) => code(c)).join(' or ') : s.type;
      out.push(
        `| ${code(name)} | ${type} | ${code(s.env)} | ${cell(defaultText(s))} | ${cell(s.doc)} |`,
      );
    }
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
