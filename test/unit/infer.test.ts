import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InputSpec } from '../../src/cli/fileFormats.js';
import { createTableSql, inferColumns } from '../../src/cli/infer.js';

const dir = mkdtempSync(join(tmpdir(), 'bulkmodel-infer-'));
function csv(name: string, text: string): InputSpec {
  const path = join(dir, name);
  writeFileSync(path, text);
  return { path, format: 'csv', gzip: false, csv: {}, header: true, columns: undefined };
}

describe('--create type inference', () => {
  it('takes a type only when Postgres reads every sampled value of the column with it', async () => {
    const spec = csv(
      'edge.csv',
      [
        'hour25,exp,nul,offset16,plus,feb30,big,ok_ts,ok_num,flag,sur',
        '2024-01-01 25:00,1e5000,"{""x"":""\\u0000""}",2024-01-01 10:00+16,+5,2024-02-30,9223372036854775808,2024-01-01T10:00:00.123456Z,-1.5e3,TRUE,"[""\\ud800""]"',
        '2024-01-01 10:00,1,{},2024-01-01 10:00+02,7,2024-02-28,1,2024-01-01 10:00,2,f,[]',
      ].join('\n'),
    );
    const inf = await inferColumns(spec, 100);
    expect(Object.fromEntries(inf.columns.map((c) => [c.name, c.type]))).toEqual({
      hour25: 'text',
      exp: 'text',
      nul: 'text',
      offset16: 'text',
      plus: 'integer',
      feb30: 'text',
      big: 'numeric',
      ok_ts: 'timestamptz',
      ok_num: 'numeric',
      flag: 'boolean',
      sur: 'text',
    });
    expect(inf.rows).toBe(2);
  });

  it('refuses a header Postgres would mangle: a name twice, an empty one, one past 63 bytes', async () => {
    const long = 'x'.repeat(64);
    for (const header of ['a,a', 'a,', long]) {
      const inf = await inferColumns(csv(`h${header.length}.csv`, `${header}\n1,2\n`), 10);
      expect(() => createTableSql('t', inf)).toThrow(/twice|needs a name|63 bytes/);
    }
    const ok = await inferColumns(csv('odd.csv', '"we""ird",ünï\n1,x\n'), 10);
    expect(createTableSql('s.t', ok)).toBe(
      'CREATE TABLE "s"."t" (\n  "we""ird" integer,\n  "ünï" text\n)',
    );
  });
});
