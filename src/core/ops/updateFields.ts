import { columnList } from '../checks.js';
import type { DbClient } from '../db.js';
import { valueError } from '../encode.js';
import { BulkError } from '../errors.js';
import { columnOf, type TableMeta } from '../meta.js';
import type { Columns } from '../options.js';
import { type EncodedGroup, encodeGroup, groupRows, type RowGroup } from '../rows.js';
import type { Chunk, ChunkSteps } from '../runner.js';
import type { Row } from '../signals.js';
import { buildStageCopy, buildStageTable } from '../sql/copy.js';
import {
  buildDuplicateInStage,
  buildMissingFromStage,
  buildUpdateFields,
  buildUpdateFromStage,
} from '../sql/updateFields.js';
import type { OpContext } from './context.js';
import { copyIn } from './copyFrom.js';
import { explainRowError, isRowError } from './locate.js';

export interface UpdateFieldsPlan {
  meta: TableMeta;
  key: string[];
  fields: string[] | undefined;
  /**
   * Key -> row index of keys seen so far in this call (duplicates would make the result depend
   * on order), or null to check within each chunk only (streamed input: memory stays bounded).
   */
  seen: Map<string, number> | null;
}

export interface PreparedUpdateFields {
  chunk: Chunk;
  rows: Row[];
  /** Rows grouped by the columns they carry, each group's rows in key order. */
  groups: RowGroup[];
}

export interface UpdateFieldsChunkResult {
  count: number;
  /** Keys (as given) of the chunk's rows that matched no row. */
  missing: Row[];
}

export function planUpdateFields(
  meta: TableMeta,
  opts: {
    key?: Columns | undefined;
    fields?: Columns | undefined;
    acrossChunks?: boolean;
  },
): UpdateFieldsPlan {
  // One name is a one-column list (key: 'ext_id'); a malformed list is INVALID_OPTION.
  const key = columnList(opts.key, 'key', meta.displayName) ?? meta.primaryKey;
  const givenFields = columnList(opts.fields, 'fields', meta.displayName);
  if (key.length === 0) {
    throw new BulkError(
      'NO_KEY',
      `${meta.displayName} has no primary key: pass \`key\` to say which columns match rows`,
      {
        table: meta.displayName,
      },
    );
  }
  for (const k of key) columnOf(meta, k);
  if (new Set(key).size !== key.length) {
    throw new BulkError('INVALID_OPTION', `${meta.displayName}: key names a column twice`, {
      table: meta.displayName,
    });
  }
  let fields: string[] | undefined;
  if (givenFields !== undefined) {
    for (const f of givenFields) {
      columnOf(meta, f);
      if (key.includes(f)) {
        throw new BulkError(
          'INVALID_OPTION',
          `${meta.displayName}: ${f} is part of the key and cannot be in fields`,
          {
            table: meta.displayName,
            column: f,
          },
        );
      }
    }
    fields = givenFields;
  }
  return { meta, key, fields, seen: opts.acrossChunks === false ? null : new Map() };
}

/**
 * Check a group's keys for duplicates and sort its rows by key: the UPDATE walks them in this
 * order (see write), so every bulkmodel transaction locks rows in the same order and
 * overlapping calls never deadlock.
 */
function checkAndSortKeys(
  plan: UpdateFieldsPlan,
  rows: readonly Row[],
  g: RowGroup,
  offset: number,
  seen: Map<string, number>,
): void {
  const keyCount = plan.key.length;
  const n = g.rowIdx.length;
  const keys: string[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const ri = g.rowIdx[i]!;
    const row = rows[ri]!;
    let k = '';
    for (let j = 0; j < keyCount; j++) {
      const name = g.columns[j]!.name;
      let lit: string | null;
      try {
        lit = g.encoders[j]!(row[name]);
      } catch (err) {
        throw valueError(plan.meta, name, offset + ri, err);
      }
      k = j === 0 ? (lit as string) : `${k}\u0000${lit}`;
    }
    keys[i] = k;
    const at = offset + ri;
    const before = seen.get(k);
    if (before !== undefined && before !== at) {
      throw new BulkError(
        'DUPLICATE_KEY',
        `${plan.meta.displayName}: row ${at} repeats the key of row ${before} (${plan.key.join(', ')})`,
        {
          table: plan.meta.displayName,
          row: at,
        },
      );
    }
    seen.set(k, at);
  }
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0));
  g.rowIdx = order.map((i) => g.rowIdx[i]!);
}

export function updateFieldsSteps(
  ctx: OpContext,
  plan: UpdateFieldsPlan,
): ChunkSteps<PreparedUpdateFields, UpdateFieldsChunkResult> {
  const keyCount = plan.key.length;
  const only = plan.fields ? new Set(plan.fields) : undefined;
  const meta = plan.meta;
  // Matching on the primary key: a staged row matches at most one row (other keys may match many).
  const byPrimaryKey =
    meta.primaryKey.length === keyCount && meta.primaryKey.every((k) => plan.key.includes(k));
  // With an index on the key, the UPDATE is a nested loop over the staged rows in key order,
  // each found through the index (hash and merge joins off): rows are locked in key order. A key
  // without an index would make that loop scan the table once per row: there the planner joins
  // as it likes (a hash join locks rows in the table's order; a deadlock is retried).
  const keyIndexed = meta.indexes.some(
    (ix) => ix.length >= keyCount && plan.key.every((k) => ix.slice(0, keyCount).includes(k)),
  );
  const joinsOffSql = keyIndexed
    ? '; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off'
    : '';
  return {
    async prepare(chunk) {
      let rows = chunk.rows;
      if (ctx.signals) {
        const ev = {
          table: meta.displayName,
          operationId: ctx.op.operationId,
          chunkIndex: chunk.index,
          batchSize: ctx.op.batchSize,
          rows,
          fields: plan.fields,
          key: plan.key,
        };
        await ctx.signals.emitPre('preUpdateFields', ev);
        rows = ev.rows;
      }
      const groups = groupRows(meta, rows, chunk.offset, { key: plan.key, only });
      const seen = plan.seen ?? new Map<string, number>();
      for (const g of groups) checkAndSortKeys(plan, rows, g, chunk.offset, seen);
      return { chunk, rows, groups };
    },
    /**
     * Per group: COPY the rows (in key order, values encoded as they stream) into a temporary
     * staging table, then one UPDATE ... FROM it. With the key indexed, hash and merge joins are
     * off, so the UPDATE is a nested loop over the staged rows in the order they were written,
     * each found through the index: rows are locked in key order (a hash or merge join would
     * lock them in table order, and two overlapping calls could deadlock), and no chunk scans
     * the whole table. Keys that matched nothing are then looked up if the count says so.
     */
    signalsBusy: true,
    async write(client, p, hooks) {
      let count = 0;
      const missing: number[] = [];
      let joinsOff = false;
      for (let gi = 0; gi < p.groups.length; gi++) {
        const g = p.groups[gi]!;
        if (g.columns.length === keyCount) continue; // nothing to write for these rows
        const stage = `bulkmodel_uf_${gi}`;
        // Dropped after use, not only at commit: one transaction may stage many chunks.
        await client.query({
          text: buildStageTable(stage, g.columns, keyCount) + (joinsOff ? '' : joinsOffSql),
        });
        joinsOff = true;
        await copyIn(client, buildStageCopy(stage, g.columns), {
          meta,
          rows: p.rows,
          group: g,
          offset: p.chunk.offset,
          ordinal: true,
        });
        // Keys equal to Postgres though not in their text ('ab' and 'ab   ' in char(5), 1.0
        // and 1 in numeric, a uuid in both cases): one of the rows would win at random.
        const dup = await client.query({
          text: buildDuplicateInStage(g.columns, keyCount, stage),
          rowMode: 'array',
        });
        if (dup.rows.length > 0) {
          const [a, b] = (dup.rows[0] as string[]).map(
            (i) => p.chunk.offset + g.rowIdx[Number(i) - 1]!,
          );
          throw new BulkError(
            'DUPLICATE_KEY',
            `${meta.displayName}: row ${b} repeats the key of row ${a} (${plan.key.join(', ')}), as Postgres compares them`,
            { table: meta.displayName, row: b },
          );
        }
        let r: { rows: unknown[]; rowCount: number | null };
        try {
          const sent = client.query({
            text: buildUpdateFromStage(meta, g.columns, keyCount, stage, !byPrimaryKey),
            rowMode: 'array',
          });
          if (gi === p.groups.length - 1) hooks.busy();
          r = await sent;
        } catch (err) {
          // Postgres does not say which row broke a constraint. Locating it takes a few round
          // trips: not inside a whole-operation transaction, nor while concurrent chunks would
          // keep being scheduled behind a failure not yet known.
          if (ctx.op.transaction === 'operation' || ctx.op.concurrency > 1 || !isRowError(err))
            throw err;
          const encoded = p.groups
            .slice(0, gi + 1)
            .map((x) => encodeGroup(meta, p.rows, x, p.chunk.offset));
          throw await explainRowError(client, err, {
            table: meta.displayName,
            offset: p.chunk.offset,
            groups: encoded,
            failed: gi,
            run: (eg) => runFromDocument(client, eg),
          });
        }
        // By primary key a staged row matches at most one row, and no two share a key: a count
        // equal to the staged rows means none is missing (most chunks), and no row comes back.
        // Another key may match several rows: the UPDATE returns the ordinals that matched.
        // Either way, when some staged row updated nothing, the keys that match no row are
        // looked up (a row a trigger or a policy kept from being updated did match: not missing).
        let someUnmatched: boolean;
        if (byPrimaryKey) {
          const n = r.rowCount ?? 0;
          count += n;
          someUnmatched = n !== g.rowIdx.length;
        } else {
          const matched = new Uint8Array(g.rowIdx.length);
          for (const row of r.rows as unknown[][]) matched[Number(row[0]) - 1] = 1;
          count += r.rows.length;
          someUnmatched = matched.includes(0);
        }
        if (someUnmatched) {
          const m = await client.query({
            text: buildMissingFromStage(meta, g.columns, keyCount, stage),
            rowMode: 'array',
          });
          for (const row of m.rows as unknown[][]) missing.push(g.rowIdx[Number(row[0]) - 1]!);
        }
        await client.query({ text: `DROP TABLE ${stage}` });
      }
      hooks.busy(); // (already, unless the last group had nothing to write)
      missing.sort((a, b) => a - b);
      // The ledger keeps row indexes; the caller gets the keys.
      return {
        result: { count, missing: missingKeys(plan, p.rows, missing) },
        ledger: { count, missing },
      };
    },
    async recover(_client, p, value) {
      const v = (value ?? {}) as { count?: unknown; missing?: unknown };
      const idx = Array.isArray(v.missing) ? (v.missing as number[]) : [];
      return {
        count: typeof v.count === 'number' ? v.count : 0,
        missing: missingKeys(plan, p.rows, idx),
      };
    },
    async after(p, r) {
      await ctx.signals?.emitPost('postUpdateFields', {
        table: meta.displayName,
        operationId: ctx.op.operationId,
        chunkIndex: p.chunk.index,
        batchSize: ctx.op.batchSize,
        rows: p.rows,
        fields: plan.fields,
        key: plan.key,
        count: r.count,
        missing: r.missing,
      });
    },
  };

  /** The same update from a JSON document of literals: used only to locate a failing row. */
  async function runFromDocument(client: DbClient, g: EncodedGroup) {
    if (g.columns.length === keyCount) return { rows: [] }; // nothing to write for these rows
    const st = buildUpdateFields(meta, g, keyCount);
    if (joinsOffSql) await client.query({ text: joinsOffSql.slice(2) });
    return client.query({ text: st.text, values: st.values, rowMode: 'array' });
  }
}

/** The key values (as given) of rows that matched nothing. */
export function missingKeys(plan: UpdateFieldsPlan, rows: Row[], missing: number[]): Row[] {
  return missing.map((i) => Object.fromEntries(plan.key.map((k) => [k, rows[i]?.[k]])));
}
