import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BulkClient, BulkError, type SignalMap, type SignalName } from '../src/index.js';
import { type TestDb, testDb } from './helpers.js';
import { createHostileTables } from './hostile.js';

let tdb: TestDb;
beforeAll(async () => {
  tdb = await testDb('signals');
  await createHostileTables(tdb.pool, tdb.schema);
});
afterAll(() => tdb.close());
beforeEach(async () => {
  await tdb.pool.query(`TRUNCATE ${tdb.t('uniq')} RESTART IDENTITY`);
});

async function rejects(p: Promise<unknown>): Promise<BulkError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BulkError);
    return err as BulkError;
  }
  throw new Error('expected a rejection');
}

async function uniq(): Promise<{ code: string; name: string | null; n: number | null }[]> {
  return (await tdb.pool.query(`SELECT code, name, n FROM ${tdb.t('uniq')} ORDER BY id`)).rows;
}

/** Record every signal a client sends. */
function record(db: BulkClient): { name: SignalName; event: Record<string, unknown> }[] {
  const seen: { name: SignalName; event: Record<string, unknown> }[] = [];
  const names: SignalName[] = [
    'preBulkCreate',
    'postBulkCreate',
    'preUpdate',
    'postUpdate',
    'preUpdateFields',
    'postUpdateFields',
    'preCopyFrom',
    'postCopyFrom',
    'preCopyTo',
    'postCopyTo',
  ];
  for (const name of names)
    db.signals.on(name, (e: SignalMap[typeof name]) => {
      seen.push({ name, event: structuredClone(e) as unknown as Record<string, unknown> });
    });
  return seen;
}

describe('signals', () => {
  it('pre listeners can change rows (mutate or replace) before they are written', async () => {
    const db = tdb.client();
    db.signals.on('preBulkCreate', (e) => {
      for (const r of e.rows) r.name = `pre:${String(r.code)}`;
    });
    db.signals.on('preCopyFrom', (e) => {
      e.rows = e.rows.filter((r) => r.code !== 'skip').map((r) => ({ ...r, n: 42 }));
    });
    await db.model(tdb.t('uniq')).bulkCreate([{ code: 'a' }, { code: 'b' }], { batchSize: 1 });
    const res = await db
      .model(tdb.t('uniq'))
      .copyFrom([{ code: 'c' }, { code: 'skip' }, { code: 'd' }], { returning: ['code', 'n'] });
    expect(res.rows).toEqual([
      { id: 3, code: 'c', n: 42 },
      { id: 4, code: 'd', n: 42 },
    ]);
    db.signals.on('preUpdateFields', (e) => {
      for (const r of e.rows) r.n = 7;
    });
    db.signals.on('preUpdate', (e) => {
      e.set.name = 'from pre';
    });
    await db.model(tdb.t('uniq')).updateFields([{ id: 1, n: 1 }]);
    await db.model(tdb.t('uniq')).update({ where: { id: 4 }, set: { n: 4 } });
    expect(await uniq()).toEqual([
      { code: 'a', name: 'pre:a', n: 7 },
      { code: 'b', name: 'pre:b', n: null },
      { code: 'c', name: null, n: 42 },
      { code: 'd', name: 'from pre', n: 4 },
    ]);
  });

  it('a pre listener that throws stops the call with SIGNAL_REJECTED; its chunk writes nothing', async () => {
    const db = tdb.client();
    let calls = 0;
    db.signals.on('preBulkCreate', () => {
      if (++calls === 2) throw new Error('no');
    });
    const e = await rejects(
      db
        .model(tdb.t('uniq'))
        .bulkCreate([{ code: 'a' }, { code: 'b' }, { code: 'c' }, { code: 'd' }], {
          batchSize: 2,
        }),
    );
    expect(e.code).toBe('SIGNAL_REJECTED');
    expect(e.table).toBe(tdb.t('uniq'));
    expect(e.committedChunks).toBe(1);
    expect((await uniq()).map((r) => r.code)).toEqual(['a', 'b']);
    db.signals.on('preUpdate', async () => {
      throw new Error('not today');
    });
    const e2 = await rejects(db.model(tdb.t('uniq')).update({ all: true, set: { n: 1 } }));
    expect(e2.code).toBe('SIGNAL_REJECTED');
    expect((await uniq()).map((r) => r.n)).toEqual([null, null]);
    db.signals.on('preCopyFrom', () => {
      throw new Error('no copy');
    });
    expect((await rejects(db.model(tdb.t('uniq')).copyFrom([{ code: 'z' }]))).code).toBe(
      'SIGNAL_REJECTED',
    );
    db.signals.on('preCopyTo', () => {
      throw new Error('no export');
    });
    const iter = db.model(tdb.t('uniq')).copyTo();
    const e3 = await rejects(
      (async () => {
        for await (const _ of iter);
      })(),
    );
    expect(e3.code).toBe('SIGNAL_REJECTED');
    expect(await uniq()).toHaveLength(2);
  });

  it('signals: false sends none', async () => {
    const db = tdb.client();
    const seen = record(db);
    const m = db.model(tdb.t('uniq'));
    await m.bulkCreate([{ code: 'a' }], { signals: false, returning: true });
    await m.copyFrom([{ code: 'b' }], { signals: false });
    await m.updateFields([{ id: 1, n: 1 }], { signals: false });
    await m.update({ all: true, set: { n: 2 } }, { signals: false });
    for await (const _ of m.copyTo({ signals: false }));
    expect(seen).toEqual([]);
    expect(await uniq()).toHaveLength(2);
  });

  it('a post listener that throws does not break the write', async () => {
    const db = tdb.client();
    db.signals.on('postBulkCreate', () => {
      throw new Error('post boom');
    });
    db.signals.on('postUpdate', async () => {
      throw new Error('post boom');
    });
    const r = await db.model(tdb.t('uniq')).bulkCreate([{ code: 'a' }, { code: 'b' }], {
      batchSize: 1,
      returning: ['code'],
    });
    expect(r.count).toBe(2);
    expect((await db.model(tdb.t('uniq')).update({ all: true, set: { n: 3 } })).count).toBe(2);
    expect(await uniq()).toEqual([
      { code: 'a', name: null, n: 3 },
      { code: 'b', name: null, n: 3 },
    ]);
  });

  it('payloads carry table, rows, count, returned, fields, key and missing', async () => {
    const db = tdb.client();
    const seen = record(db);
    const m = db.model(tdb.t('uniq'));
    const table = tdb.t('uniq');
    await m.bulkCreate([{ code: 'a' }, { code: 'b' }, { code: 'c' }], {
      batchSize: 2,
      returning: ['code'],
    });
    await m.updateFields(
      [
        { id: 1, name: 'x', n: 5 },
        { id: 99, name: 'y' },
      ],
      { fields: ['name'] },
    );
    await m.update({ where: { id: [1, 2] }, set: { n: 9 } });
    await m.copyFrom([{ code: 'd' }], { onConflict: 'ignore' });
    for await (const _ of m.copyTo({ columns: ['code'], where: { n: 9 } }));
    const names = seen.map((s) => s.name);
    // One chunk is prepared (pre signal) while the one before it writes, so bulkCreate's four
    // signals may interleave across chunks; each chunk's pre still comes before its post, and
    // posts come in chunk order.
    const create = seen.slice(0, 4).map((s) => `${s.name}:${s.event.chunkIndex}`);
    expect([...create].sort()).toEqual([
      'postBulkCreate:0',
      'postBulkCreate:1',
      'preBulkCreate:0',
      'preBulkCreate:1',
    ]);
    const at = (x: string) => create.indexOf(x);
    expect(at('preBulkCreate:0')).toBeLessThan(at('postBulkCreate:0'));
    expect(at('preBulkCreate:1')).toBeLessThan(at('postBulkCreate:1'));
    expect(at('postBulkCreate:0')).toBeLessThan(at('postBulkCreate:1'));
    expect(names.slice(4)).toEqual([
      'preUpdateFields',
      'postUpdateFields',
      'preUpdate',
      'postUpdate',
      'preCopyFrom',
      'postCopyFrom',
      'preCopyTo',
      'postCopyTo',
    ]);
    for (const s of seen) {
      expect(s.event.table).toBe(table);
      expect(typeof s.event.operationId).toBe('string');
    }
    const find = (name: string, chunk: number) =>
      seen.find((s) => s.name === name && s.event.chunkIndex === chunk)!.event;
    const [pre0, post0, post1] = [
      find('preBulkCreate', 0),
      find('postBulkCreate', 0),
      find('postBulkCreate', 1),
    ];
    expect(pre0).toMatchObject({
      chunkIndex: 0,
      batchSize: 2,
      rows: [{ code: 'a' }, { code: 'b' }],
    });
    expect(post0).toMatchObject({
      chunkIndex: 0,
      count: 2,
      returned: [
        { id: 1, code: 'a' },
        { id: 2, code: 'b' },
      ],
    });
    expect(post1).toMatchObject({ chunkIndex: 1, count: 1, returned: [{ id: 3, code: 'c' }] });
    expect(seen[5]!.event).toMatchObject({
      fields: ['name'],
      key: ['id'],
      count: 1,
      missing: [{ id: 99 }],
    });
    expect(seen[7]!.event).toMatchObject({ set: { n: 9 }, count: 2 });
    expect(seen[9]!.event).toMatchObject({ count: 1, rows: [{ code: 'd' }] });
    expect(seen[11]!.event).toMatchObject({ columns: ['code'], where: { n: 9 }, count: 2 });
  });
});
