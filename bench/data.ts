/** Benchmark data: a realistic table, about a third of its text hostile to naive escaping. */
export const TABLE_DDL = (t: string) => `
  DROP TABLE IF EXISTS ${t};
  CREATE TABLE ${t} (
    id bigserial PRIMARY KEY, name text NOT NULL, value integer NOT NULL, price numeric(12,2),
    tags text[], payload jsonb, created_at timestamptz, flag boolean NOT NULL DEFAULT false)`;

export const COLUMNS = ['name', 'value', 'price', 'tags', 'payload', 'created_at', 'flag'] as const;

export interface BenchRow {
  name: string;
  value: number;
  price: string;
  tags: (string | null)[];
  payload: Record<string, unknown>;
  created_at: string;
  flag: boolean;
  [k: string]: unknown;
}

const HOSTILE = [
  'tab\there',
  'new\nline',
  'back\\slash',
  '\\N',
  "quote'd",
  'dq"x',
  'emoji 😀',
  '{a,b}',
];

export function makeRow(i: number): BenchRow {
  const h = i % 3 === 0 ? HOSTILE[i % HOSTILE.length] : 'plain';
  return {
    name: `${h} ${i}`,
    value: i,
    price: ((i % 1_000_000) / 100).toFixed(2),
    tags: i % 5 === 0 ? ['a', null, 'c,d'] : ['x', `t${i % 10}`],
    payload: { i, even: i % 2 === 0, note: h, nested: { k: [1, 2, i % 7] } },
    created_at: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString().replace('Z', '123+00:00'),
    flag: i % 3 === 0,
  };
}

export function makeRows(n: number): BenchRow[] {
  return Array.from({ length: n }, (_, i) => makeRow(i));
}

/** Rows for a heterogeneous update: every row its own name and value, keys in random order. */
export function makeUpdates(
  ids: string[],
  seed = 7,
): { id: string; name: string; value: number }[] {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  const out = ids.map((id, i) => ({
    id,
    name: `updated ${i} \t${HOSTILE[i % HOSTILE.length]}`,
    value: -i,
  }));
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
