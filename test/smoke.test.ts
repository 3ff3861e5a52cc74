import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestDb, testDb } from './helpers.js';

let tdb: TestDb;
beforeAll(async () => {
  tdb = await testDb('smoke');
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('items')} (id bigserial primary key, name text not null, value int)`,
  );
});
afterAll(() => tdb.close());

describe('smoke', () => {
  it('bulkCreate then updateFields then copyTo', async () => {
    const db = tdb.client();
    const items = db.model(tdb.t('items'));
    const created = await items.bulkCreate([{ name: 'a', value: 1 }, { name: 'b' }], {
      returning: true,
    });
    expect(created.count).toBe(2);
    expect(created.rows?.map((r) => r.name)).toEqual(['a', 'b']);
    const ids = created.rows!.map((r) => r.id);
    const up = await items.updateFields([
      { id: ids[0], value: 10 },
      { id: '999999', value: 3 },
    ]);
    expect(up).toEqual({ count: 1, missing: [{ id: '999999' }] });
    const rows = [];
    for await (const r of items.copyTo({ columns: ['id', 'name', 'value'] })) rows.push(r);
    expect(rows.sort((a, b) => Number(a.id) - Number(b.id))).toEqual([
      { id: ids[0], name: 'a', value: 10 },
      { id: ids[1], name: 'b', value: null },
    ]);
    const u = await items.update({ where: { id: ids }, set: { value: 7 } }, { batchSize: 1 });
    expect(u.count).toBe(2);
    const c = await items.copyFrom([{ name: 'x\ty\\z', value: 5 }], { returning: ['name'] });
    expect(c.rows?.[0]?.name).toBe('x\ty\\z');
  });
});
