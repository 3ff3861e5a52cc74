import { parse as parseCsv } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { csvChunks } from '../../src/producer/csvChunks.js';

/**
 * The CSV splitter against a reference: random records (quoted fields holding commas, quotes,
 * CRLF and LF; CRLF and LF record ends; a last record without its newline), fed in pieces of
 * random sizes (a record spread over many pieces, or many records in one). The chunks must
 * hold every record once, in order, whole, with CRLF record ends turned into LF, each chunk at
 * most batchSize records, and file lines that add up.
 */

/** A small deterministic generator, so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function field(r: () => number): string {
  const kinds = ['plain', 'quoted', 'multiline', 'empty', 'unicode'];
  const k = kinds[Math.floor(r() * kinds.length)];
  if (k === 'plain') return `v${Math.floor(r() * 1e6)}`;
  if (k === 'quoted') return '"a, ""b"" c"';
  if (k === 'multiline') return r() < 0.5 ? '"x\r\ny"' : '"x\ny\n"';
  if (k === 'unicode') return 'ünï 🙂';
  return '';
}

describe('csvChunks', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8])(
    'splits random CSV fed in random pieces (seed %i)',
    async (seed) => {
      const r = rng(seed);
      const records: string[] = [];
      for (let i = 0; i < 400; i++)
        records.push(`${[field(r), field(r), field(r)].join(',')}${r() < 0.3 ? '\r\n' : '\n'}`);
      // The last record without its line end, half the time.
      if (seed % 2 === 0) records[records.length - 1] = records.at(-1)!.replace(/\r?\n$/, '');
      const file = Buffer.from(records.join(''));
      async function* pieces() {
        for (let at = 0; at < file.length; ) {
          const n = 1 + Math.floor(r() * (r() < 0.2 ? 4000 : 40));
          yield file.subarray(at, at + n);
          at += n;
        }
      }
      const batchSize = 1 + Math.floor(r() * 50);
      const chunks = [];
      for await (const c of csvChunks(pieces(), { batchSize, firstLine: 2, path: 'f.csv' }))
        chunks.push({ ...c, data: Buffer.from(c.data) });
      const expected = records.map(
        (rec) => `${rec.replace(/\r\n$/, '\n').replace(/([^\n])$/, '$1\n')}`,
      );
      expect(chunks.map((c) => c.data.toString()).join('')).toBe(expected.join(''));
      expect(chunks.reduce((n, c) => n + c.records, 0)).toBe(records.length);
      for (const c of chunks) expect(c.records).toBeLessThanOrEqual(batchSize);
      // Lines: each chunk starts on the line after the previous one ends.
      let line = 2;
      for (const c of chunks) {
        expect(c.firstLine).toBe(line);
        line = c.lastLine + 1;
      }
      expect(line - 2).toBe(file.toString().split('\n').length - (file.at(-1) === 0x0a ? 1 : 0));
      // And the records parse back as the file's.
      const ends = { record_delimiter: ['\r\n', '\n'], relax_column_count: true };
      expect(parseCsv(Buffer.concat(chunks.map((c) => c.data)), ends)).toEqual(
        parseCsv(file, ends),
      );
    },
  );
});
