import type { BulkClient } from '../core/client.js';
import { BulkError } from '../core/errors.js';
import { parseTableName } from '../core/meta.js';

/**
 * The tables a worker may write. A job's table is compared as written first, then as the
 * catalog resolves it (`t`, `public.t` and `"t"` are one table; a table of the same name in
 * another schema is not); ['*'] allows every table.
 */
export class Allowlist {
  private readonly literal = new Set<string>();
  private readonly resolved = new Set<string>();
  private readonly all: boolean;

  constructor(
    private readonly tables: string[],
    private readonly db: BulkClient,
  ) {
    Allowlist.validate(tables);
    this.all = tables.includes('*');
    for (const t of tables) {
      if (t === '*') continue;
      const p = parseTableName(t);
      this.literal.add(`${p.schema ?? ''}.${p.name}`);
    }
  }

  /** A worker needs a list of tables (or ['*']); anything else is INVALID_OPTION. */
  static validate(tables: unknown): asserts tables is string[] {
    if (
      !Array.isArray(tables) ||
      tables.length === 0 ||
      tables.some((t) => typeof t !== 'string')
    ) {
      throw new BulkError(
        'INVALID_OPTION',
        'BulkWorker needs `tables`: the tables it may write (or ["*"] for all)',
      );
    }
  }

  /** Resolve every entry through the catalog; returns those not found (yet). */
  async resolveAll(): Promise<string[]> {
    const missing: string[] = [];
    for (const t of this.tables) if (t !== '*' && !(await this.resolve(t))) missing.push(t);
    return missing;
  }

  /** An entry's schema-qualified name from the catalog, or undefined. */
  private async resolve(t: string): Promise<string | undefined> {
    try {
      const m = await this.db.meta(t);
      const full = `${m.schema}.${m.name}`;
      this.resolved.add(full);
      return full;
    } catch {
      return undefined;
    }
  }

  /** Throws TABLE_NOT_ALLOWED unless the table is on the list. */
  async check(table: string): Promise<void> {
    if (this.all) return;
    const p = parseTableName(table);
    if (this.literal.has(`${p.schema ?? ''}.${p.name}`)) return;
    try {
      const m = await this.db.meta(table);
      const full = `${m.schema}.${m.name}`;
      if (this.resolved.has(full)) return;
      // An allowed table created after the worker started is resolved now.
      for (const t of this.tables) if (t !== '*' && (await this.resolve(t)) === full) return;
    } catch {
      // an unknown table is not allowed either
    }
    throw new BulkError(
      'TABLE_NOT_ALLOWED',
      `table ${JSON.stringify(table)} is not in this worker's allowlist`,
      {
        table,
      },
    );
  }
}
