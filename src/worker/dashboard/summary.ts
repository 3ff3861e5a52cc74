/** What the board shows of a job's data and return value: a summary, never the rows. */

function bytesOf(v: unknown): number {
  try {
    return Buffer.byteLength(JSON.stringify(v) ?? '');
  } catch {
    return 0;
  }
}

/** Column names of a filter or set, never their values. */
function namesOf(o: unknown): string[] | undefined {
  return o !== null && typeof o === 'object' && !Array.isArray(o) ? Object.keys(o) : undefined;
}

/**
 * A chunk's data becomes { table, kind, chunk, rows: n, columns, bytes } (COPY groups: their
 * columns, rows and bytes); an update's or a
 * copyTo's filter and values show as column names only. Row values are never shown.
 */
export function summarizeJobData(data: unknown): unknown {
  if (data === null || typeof data !== 'object') return data;
  const d = data as Record<string, unknown>;
  if (d.update !== null && typeof d.update === 'object') {
    const u = d.update as Record<string, unknown>;
    return {
      ...d,
      update: {
        ...(u.all === true ? { all: true } : { whereColumns: namesOf(u.where) }),
        setColumns: namesOf(u.set),
      },
    };
  }
  if (d.copyTo !== null && typeof d.copyTo === 'object') {
    const { where, ...rest } = d.copyTo as Record<string, unknown>;
    return { ...d, copyTo: { ...rest, ...(where ? { whereColumns: namesOf(where) } : {}) } };
  }
  // COPY groups: version 2's data becomes its size; version 3's data digest (of row values)
  // is left out. (Whatever a hostile job holds there: anything but an object stays as it is.)
  if (Array.isArray(d.groups)) {
    const { sha256: _digest, ...dataRef } =
      d.data !== null && typeof d.data === 'object' ? (d.data as Record<string, unknown>) : {};
    return {
      ...d,
      ...(d.data !== undefined ? { data: dataRef } : {}),
      groups: (d.groups as unknown[]).map((g) => {
        if (g === null || typeof g !== 'object' || Array.isArray(g)) return g;
        const { data: text, ...rest } = g as Record<string, unknown>;
        return typeof text === 'string' ? { ...rest, bytes: Buffer.byteLength(text) } : rest;
      }),
    };
  }
  if (!Array.isArray(d.rows)) return data;
  const { rows, columns, ...rest } = d;
  return {
    ...rest,
    rows: rows.length,
    columns,
    bytes: bytesOf(data),
  };
}

/** Returned rows (returning) and missing keys (updateFields) are counted, not listed. */
export function summarizeReturnValue(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const v = { ...(value as Record<string, unknown>) };
  let changed = false;
  if (Array.isArray(v.rows)) {
    v.returnedRows = v.rows.length;
    delete v.rows;
    changed = true;
  }
  if (v.missing !== undefined) {
    const m = v.missing as { v?: unknown[] } | unknown[];
    v.missingKeys = Array.isArray(m) ? m.length : Array.isArray(m?.v) ? m.v.length : undefined;
    delete v.missing;
    changed = true;
  }
  if (changed) v.bytes = bytesOf(value);
  return changed ? v : value;
}
