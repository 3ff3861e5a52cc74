import { isNameList } from '../core/checks.js';
import type { BulkClient } from '../core/client.js';
import { BulkError } from '../core/errors.js';
import { resolveOids, type TableMeta } from '../core/meta.js';

/**
 * How old the resolved entries may be when a job is checked: a table renamed away, or dropped
 * and created again, is seen within this. One catalog round trip per period at most.
 */
const FRESH_MS = 1000;

/** Schemas no job may write, even under '*': the system catalogs. */
const SYSTEM_SCHEMAS: ReadonlySet<string> = new Set([
  'pg_catalog',
  'information_schema',
  'pg_toast',
]);

/** `schema.name`, each part double-quoted when it needs it: one spelling per table. */
export function canonicalName(m: Pick<TableMeta, 'schema' | 'name'>): string {
  const part = (s: string) => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : `"${s.replace(/"/g, '""')}"`);
  return `${part(m.schema)}.${part(m.name)}`;
}

/**
 * The tables a worker may write, compared as the catalog resolves them: a job's table name
 * and every entry are turned into the table's oid, so `t`, `public.t` and `"t"` are one table
 * and `"a.b".c` is never `a."b.c"`. A table of the same name in another schema is another
 * table. ['*'] allows every table but those of the ledger's schema and the system catalogs.
 */
export class Allowlist {
  private readonly entries: string[];
  private readonly all: boolean;
  /** oid of each entry the catalog knows. */
  private allowed = new Set<number>();
  private resolvedAt = 0;
  /** Entries the catalog did not know at the last look. */
  private missing = 0;

  constructor(
    tables: string[],
    private readonly db: BulkClient,
    /** The chunk ledger's schema: never written by a job (its rows decide what is done). */
    private readonly ledgerSchema: string | undefined,
  ) {
    Allowlist.validate(tables);
    this.all = tables.includes('*');
    this.entries = tables.filter((t) => t !== '*');
  }

  /** A worker needs a list of tables (or ['*']); anything else is INVALID_OPTION. */
  static validate(tables: unknown): asserts tables is string[] {
    if (!isNameList(tables)) {
      throw new BulkError(
        'INVALID_OPTION',
        'BulkWorker needs `tables`: the tables it may write (or ["*"] for all)',
      );
    }
  }

  /**
   * Resolve every entry (and `also`) through the catalog, in one round trip; returns the
   * entries not found (yet) and the oids of `also`.
   */
  async resolveAll(
    also: string[] = [],
  ): Promise<{ missing: string[]; also: (number | undefined)[] }> {
    const oids = await resolveOids(this.db.engine.pool, [...this.entries, ...also]);
    const next = new Set<number>();
    const missing: string[] = [];
    this.entries.forEach((t, i) => {
      const oid = oids[i];
      if (oid === undefined) missing.push(t);
      else next.add(oid);
    });
    this.allowed = next;
    this.resolvedAt = Date.now();
    this.missing = missing.length;
    return { missing, also: oids.slice(this.entries.length) };
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
    const age = Date.now() - this.resolvedAt;
    const miss = !this.all && !(m && this.allowed.has(m.oid));
    // While some entries do not exist yet, a miss looks again: one cheap round trip, as each
    // refused job's own lookup of its table costs anyway.
    if (age >= FRESH_MS || (miss && this.missing > 0)) {
      // Entries and the job's own name, as the catalog resolves them now: a renamed or
      // recreated table is neither allowed under its old oid nor refused under its new one.
      const { also } = await this.resolveAll([table]);
      if (m && also[0] !== m.oid) m = await this.db.meta(table, true).catch(() => undefined);
    }
    if (m && !this.reserved(m) && (this.all || this.allowed.has(m.oid))) return m;
    throw new BulkError(
      'TABLE_NOT_ALLOWED',
      `table ${JSON.stringify(table)} is not in this worker's allowlist`,
      { table },
    );
  }

  private reserved(m: TableMeta): boolean {
    return SYSTEM_SCHEMAS.has(m.schema) || m.schema === this.ledgerSchema;
  }
}
