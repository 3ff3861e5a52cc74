import { BulkError } from '../errors.js';
import { columnOf, type TableMeta } from '../meta.js';
import { type EncodedGroup, encodeRows } from '../rows.js';
import type { Chunk, ChunkSteps } from '../runner.js';
import type { Row } from '../signals.js';
import { buildUpdateFields } from '../sql/updateFields.js';
import type { OpContext } from './context.js';
import { explainRowError } from './locate.js';

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
  groups: EncodedGroup[];
}

export interface UpdateFieldsChunkResult {
  count: number;
  /** Keys (as given) of the chunk's rows that matched no row. */
  missing: Row[];
}

export function planUpdateFields(
  meta: TableMeta,
  opts: { key?: string[] | undefined; fields?: string[] | undefined; acrossChunks?: boolean },
): UpdateFieldsPlan {
  const key = opts.key ?? meta.primaryKey;
  if (!Array.isArray(key) || key.length === 0) {
    throw new BulkError(
      'NO_KEY',
      `${meta.displayName} has no primary key: pass \`key\` to say which columns match rows`,
      {
        table: meta.displayName,
      },
    );
  }
  for (const k of key) columnOf(meta, k);
  let fields: string[] | undefined;
  if (opts.fields !== undefined) {
    if (!Array.isArray(opts.fields) || opts.fields.length === 0) {
      throw new BulkError(
        'INVALID_OPTION',
        `${meta.displayName}: fields must be a non-empty array of column names`,
        { table: meta.displayName },
      );
    }
    for (const f of opts.fields) {
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
    fields = opts.fields;
  }
  return { meta, key, fields, seen: opts.acrossChunks === false ? null : new Map() };
}

/**
 * Sort a group's rows by key: the UPDATE walks them in this order (see buildUpdateFields), so
 * every bulkmodel transaction locks rows in the same order and overlapping calls never deadlock.
 */
function sortByKey(g: EncodedGroup, keyCount: number): void {
  const keyOf = (i: number) => g.values[i]!.slice(0, keyCount).join('\u0000');
  const order = g.values.map((_, i) => i);
  const keys = order.map(keyOf);
  order.sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0));
  g.values = order.map((i) => g.values[i]!);
  g.rowIdx = order.map((i) => g.rowIdx[i]!);
}

export function updateFieldsSteps(
  ctx: OpContext,
  plan: UpdateFieldsPlan,
): ChunkSteps<PreparedUpdateFields, UpdateFieldsChunkResult> {
  const keyCount = plan.key.length;
  const only = plan.fields ? new Set(plan.fields) : undefined;
  return {
    async prepare(chunk) {
      let rows = chunk.rows;
      if (ctx.signals) {
        const ev = {
          table: plan.meta.displayName,
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
      const groups = encodeRows(plan.meta, rows, chunk.offset, { key: plan.key, only });
      const seen = plan.seen ?? new Map<string, number>();
      for (const g of groups) {
        for (let i = 0; i < g.values.length; i++) {
          const k = g.values[i]!.slice(0, keyCount).join('\u0000');
          const at = chunk.offset + g.rowIdx[i]!;
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
        sortByKey(g, keyCount);
      }
      return { chunk, rows, groups };
    },
    async write(client, p) {
      let count = 0;
      const matched = new Set<number>();
      const missing: number[] = [];
      const run = async (g: EncodedGroup) => {
        if (g.columns.length === keyCount) return { rows: [] }; // nothing to write for these rows
        const st = buildUpdateFields(plan.meta, g, keyCount);
        // A nested loop over the sorted rows, each found by its key: rows are locked in key
        // order (a hash or merge join would lock them in table order, and two overlapping
        // calls could deadlock), and no chunk scans the whole table.
        await client.query({
          text: 'SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off',
        });
        return client.query({ text: st.text, values: st.values, rowMode: 'array' });
      };
      for (let gi = 0; gi < p.groups.length; gi++) {
        const g = p.groups[gi]!;
        if (g.columns.length === keyCount) continue;
        let r: { rows: unknown[] };
        try {
          r = await run(g);
        } catch (err) {
          // Locating the row takes a few round trips: not inside a whole-operation transaction,
          // nor while concurrent chunks would keep being scheduled behind a failure not yet known.
          if (ctx.op.transaction === 'operation' || ctx.op.concurrency > 1) throw err;
          throw await explainRowError(client, err, {
            table: plan.meta.displayName,
            offset: p.chunk.offset,
            groups: p.groups,
            failed: gi,
            run,
          });
        }
        for (const row of r.rows as unknown[][]) matched.add(g.rowIdx[Number(row[0]) - 1]!);
        count += r.rows.length;
        for (const i of g.rowIdx) if (!matched.has(i)) missing.push(i);
      }
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
        table: plan.meta.displayName,
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
}

/** The key values (as given) of rows that matched nothing. */
export function missingKeys(plan: UpdateFieldsPlan, rows: Row[], missing: number[]): Row[] {
  return missing.map((i) => Object.fromEntries(plan.key.map((k) => [k, rows[i]?.[k]])));
}
