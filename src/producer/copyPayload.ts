import { kindsFingerprint } from '../core/catalog.js';
import { BulkError } from '../core/errors.js';
import type { TableMeta } from '../core/meta.js';
import { copyLines } from '../core/ops/copyFrom.js';
import { textOf } from '../core/ops/copyText.js';
import { groupRows } from '../core/rows.js';
import type { Row } from '../core/signals.js';
import {
  type CopyChunkPayload,
  type CopyGroupPayload,
  chunkDataDigest,
  type DataChunkPayload,
  type PayloadOptions,
} from '../queue/payload.js';

/**
 * A chunk's rows encoded as COPY text by the producer (payload versions 2 and 3), with the
 * core's own encoders, for the column kinds of the table's catalog snapshot: the worker streams
 * the text into COPY without decoding a value. Rows are checked here (unknown and read-only
 * columns, values their columns refuse), so bad input fails at enqueue. Undefined when the
 * chunk has rows that carry no column at all (all defaults): COPY needs a column, so such a
 * chunk goes as version 1.
 */
export function encodeCopyChunk(
  meta: TableMeta,
  rows: readonly Row[],
  offset: number,
): { groups: (CopyGroupPayload & { data: string })[]; catalog: string } | undefined {
  const groups = groupRows(meta, rows, offset);
  if (groups.some((g) => g.columns.length === 0)) return undefined;
  const out = groups.map((g) => {
    let data = '';
    for (const piece of copyLines({ meta, rows, group: g, offset, ordinal: false })) data += piece;
    const p: CopyGroupPayload & { data: string } = {
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

/** A group's data as bytes (UTF-8), refusing text that UTF-8 cannot carry. */
function bytesOf(data: string | Buffer, table: string): Buffer {
  if (typeof data !== 'string') return data;
  // (The encoders refuse lone surrogates already; Buffer.from would turn one into U+FFFD.)
  if (!data.isWellFormed())
    throw new BulkError('INVALID_ROW', `${table}: a value holds a lone UTF-16 surrogate`, {
      table,
    });
  return Buffer.from(data, 'utf8');
}

/**
 * A version 2 chunk as version 3: the same groups, their data taken out of the job into one
 * buffer (stored beside the job), named in the job by its length and sha256.
 */
export function besideJob(p: CopyChunkPayload): { payload: DataChunkPayload; data: Buffer } {
  const parts = p.groups.map((g) => bytesOf(g.data, p.table));
  const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  const { v: _v, groups, ...rest } = p;
  return {
    payload: {
      ...rest,
      v: 3,
      data: { bytes: data.length, sha256: chunkDataDigest(data) },
      groups: groups.map((g, i) => ({
        columns: g.columns,
        rows: g.rows,
        bytes: parts[i]!.length,
        ...(g.rowIdx ? { rowIdx: g.rowIdx } : {}),
      })),
    },
    data,
  };
}

/** A version 2 chunk whose data is all text (as a job's JSON must hold it). */
export function inlineJob(p: CopyChunkPayload): CopyChunkPayload {
  if (p.groups.every((g) => typeof g.data === 'string')) return p;
  return {
    ...p,
    groups: p.groups.map((g) => ({
      ...g,
      data: textOf(g.data),
    })),
  };
}
