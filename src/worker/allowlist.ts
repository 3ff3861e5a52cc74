import type { BulkClient } from '../core/client.js';
import { BulkError } from '../core/errors.js';
import type { TableMeta } from '../core/meta.js';

/** How often, at most, entries are resolved again after a miss (a table created or recreated). */
const REFRESH_MS = 1000;

/** `schema.name`, each part double-quoted when it needs it: one spelling per table. */
export function canonicalName(m: Pick<TableMeta, 'schema' | 'name'>): string {
  const part = (s: string) => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : `"${s.replace(/"/g, '""')}"`);
  return `${part(m.schema)}.${part(m.name)}`;
}

/**
 * The tables a worker may write, compared as the catalog resolves them: a job's table name
 * and every entry are turned into the table's oid, so `t`, `public.t` and `"t"` are one table
 * and `"a.b".c` is never `a."b.c"`. A table of the same name in another schema is another
 * table. ['*'] allows every table.
 */
export class Allowlist {
  private readonly entries: string[];
  private readonly all: boolean;
  /** oid of each entry the catalog knows. */
  private allowed = new Set<number>();
  private refreshedAt = 0;
  /** Entries the catalog did not know at the last look. */
  private missing = 0;

  constructor(
    tables: string[],
    private readonly db: BulkClient,
  ) {
    Allowlist.validate(tables);
    this.all = tables.includes('*');
    this.entries = tables.filter((t) => t !== '*');
  }

  /** A worker needs a list of tables (or ['*']); anything else is INVALID_OPTION. */
  static validate(tables: unknown): asserts tables is string[] {
    if (
      !Array.isArray(tables) ||
      tables.length === 0 ||
      tables.some((t) => typeof t !== 'string' || t.length === 0)
    ) {
      throw new BulkError(
        'INVALID_OPTION',
        'BulkWorker needs `tables`: the tables it may write (or ["*"] for all)',
      );
    }
  }

  /** Resolve every entry through the catalog; returns those not found (yet). */
  async resolveAll(): Promise<string[]> {
    const next = new Set<number>();
    const missing: string[] = [];
    for (const t of this.entries) {
      try {
        next.add((await this.db.meta(t, true)).oid);
      } catch {
        missing.push(t);
      }
    }
    this.allowed = next;
    this.refreshedAt = Date.now();
    this.missing = missing.length;
    return missing;
  }

  /**
   * The table's metadata when it is on the list; TABLE_NOT_ALLOWED otherwise (an unknown or
   * malformed name too, so a job learns nothing of the catalog). With ['*'] an unknown table
   * is UNKNOWN_TABLE.
   */
  async check(table: string): Promise<TableMeta> {
    let m: TableMeta | undefined;
    try {
      m = await this.db.meta(table);
    } catch (err) {
      if (this.all) throw err;
    }
    if (this.all && m) return m;
    if (m && this.allowed.has(m.oid)) return m;
    // An entry created since the last look (resolved again while some are missing), or dropped
    // and created again (resolved again at most once a second, so that a flood of refused jobs
    // cannot flood the catalog).
    if (this.missing > 0 || Date.now() - this.refreshedAt >= REFRESH_MS) {
      await this.resolveAll();
      if (m) m = await this.db.meta(table, true).catch(() => undefined);
      if (m && this.allowed.has(m.oid)) return m;
    }
    throw new BulkError(
      'TABLE_NOT_ALLOWED',
      `table ${JSON.stringify(table)} is not in this worker's allowlist`,
      { table },
    );
  }
}
