import { kindsFingerprint } from '../core/catalog.js';
import type { TableMeta } from '../core/meta.js';
import { copyLines } from '../core/ops/copyFrom.js';
import { groupRows } from '../core/rows.js';
import type { Row } from '../core/signals.js';
import type { CopyGroupPayload, PayloadOptions } from '../queue/payload.js';

/**
 * A chunk's rows encoded as COPY text by the producer (payload version 2), with the core's own
 * encoders, for the column kinds of the table's catalog snapshot: the worker streams the text
 * into COPY without decoding a value. Rows are checked here (unknown and read-only columns,
 * values their columns refuse), so bad input fails at enqueue. Undefined when the chunk has
 * rows that carry no column at all (all defaults): COPY needs a column, so such a chunk goes as
 * version 1.
 */
export function encodeCopyChunk(
  meta: TableMeta,
  rows: readonly Row[],
  offset: number,
): { groups: CopyGroupPayload[]; catalog: string } | undefined {
  const groups = groupRows(meta, rows, offset);
  if (groups.some((g) => g.columns.length === 0)) return undefined;
  const out = groups.map((g) => {
    let data = '';
    for (const piece of copyLines({ meta, rows, group: g, offset, ordinal: false })) data += piece;
    const p: CopyGroupPayload = {
      columns: g.columns.map((c) => c.name),
      rows: g.rowIdx.length,
      data,
    };
    if (groups.length > 1) p.rowIdx = g.rowIdx;
    return p;
  });
  return { groups: out, catalog: kindsFingerprint(groups.flatMap((g) => g.columns)) };
}

/** What a version 2 chunk's options carry (it takes no returning, key or fields). */
export function copyOptions(o: PayloadOptions): PayloadOptions {
  const out: PayloadOptions = {};
  if (o.onConflict !== undefined) out.onConflict = o.onConflict;
  if (o.signals === false) out.signals = false;
  if (o.batchSize !== undefined) out.batchSize = o.batchSize;
  if (o.onError !== undefined) out.onError = o.onError;
  if (o.maxErrors !== undefined) out.maxErrors = o.maxErrors;
  return out;
}
