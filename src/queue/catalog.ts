import { snapshotOf, type TableSnapshot } from '../core/catalog.js';
import type { TableMeta } from '../core/meta.js';
import type { QueueState } from './state.js';

/**
 * Catalog snapshots beside the queue (a map from table name, as allowlisted or as the catalog
 * spells it, to the table's snapshot): workers publish them for the tables they allow,
 * producers read them to encode rows into COPY text. A producer without one for its table
 * sends rows in the v1 encoding instead.
 */
export async function publishSnapshot(
  state: QueueState,
  names: readonly string[],
  meta: TableMeta,
): Promise<void> {
  const json = JSON.stringify(snapshotOf(meta));
  await state.publishSnapshot([...names, meta.displayName, `${meta.schema}.${meta.name}`], json);
}

/** Snapshots a producer read, for a few seconds (a table's columns rarely change). */
export class SnapshotCache {
  private readonly cache = new Map<string, { at: number; snap: Promise<TableSnapshot | null> }>();
  constructor(
    private readonly state: QueueState,
    private readonly ttlMs = 10_000,
  ) {}

  get(table: string): Promise<TableSnapshot | null> {
    const hit = this.cache.get(table);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.snap;
    const snap = this.state.snapshot(table).then(
      (v) => (v === null ? null : parseSnapshot(v)),
      () => null,
    );
    this.cache.set(table, { at: Date.now(), snap });
    if (this.cache.size > 1000) this.cache.delete(this.cache.keys().next().value!);
    return snap;
  }
}

export function parseSnapshot(v: string): TableSnapshot | null {
  try {
    const s = JSON.parse(v) as TableSnapshot;
    return typeof s?.schema === 'string' && Array.isArray(s.columns) ? s : null;
  } catch {
    return null;
  }
}
