import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { link, lstat, mkdir, open, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BulkClient } from '../core/client.js';
import { BulkError } from '../core/errors.js';
import { valuesCounted } from '../core/ops/copyTo.js';
import type { Where } from '../core/sql/where.js';
import { checkExportFileName, type OperationPayload } from '../queue/payload.js';

/**
 * Where queued copyTo jobs may write: one directory the operator named, taken as its real path
 * when the worker starts. A job names a plain file in it, never a path.
 */
export interface ExportTarget {
  dir: string;
  /** Replace a file of the same name (default: refuse with FILE_EXISTS). */
  overwrite: boolean;
}

/** Create the directory if needed and settle its real path once. */
export async function openExportTarget(dir: string, overwrite: boolean): Promise<ExportTarget> {
  await mkdir(dir, { recursive: true });
  const real = await realpath(dir);
  if (!(await stat(real)).isDirectory())
    throw new BulkError('INVALID_OPTION', `export directory ${dir} is not a directory`);
  return { dir: real, overwrite };
}

const TEMP = /^\.bulkmodel-[0-9a-f-]{36}\.partial$/;

/**
 * Remove temporary files untouched for `staleMs`: those of exports whose worker was killed
 * mid-way (a running export touches its file at least every TOUCH_MS, even while it writes
 * nothing). Only names exports use, only regular files, only in the export directory itself.
 */
export async function sweepStaleTemps(target: ExportTarget, staleMs: number): Promise<number> {
  let removed = 0;
  const cutoff = Date.now() - staleMs;
  for (const name of await readdir(target.dir)) {
    if (!TEMP.test(name)) continue;
    const full = join(target.dir, name);
    const st = await lstat(full).catch(() => undefined);
    if (!st?.isFile() || st.mtimeMs > cutoff) continue;
    await rm(full, { force: true });
    removed++;
  }
  return removed;
}

/** Flags of the temporary file: created here, never through a link, never an existing file. */
const CREATE_NEW =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

export interface ExportJob {
  db: BulkClient;
  target: ExportTarget | undefined;
  /** The allowed table, as the catalog names it. */
  table: string;
  spec: NonNullable<OperationPayload['copyTo']>;
  where: Where | undefined;
  signals: boolean;
  /**
   * Remember, on the operation, that the file with this identity (device and inode) holds its
   * export of `count` rows; called before the file gets its name, so that a later run of the
   * same operation (its worker died before the job completed, or two workers ran a stalled
   * job at once) finds its own file done instead of FILE_EXISTS.
   */
  remember(identity: string, count: number): Promise<void>;
  /** The count remembered for a file identity, if this operation made that file. */
  recall(identity: string): Promise<number | undefined>;
}

/** How often a running export marks its temporary file as alive (see sweepStaleTemps). */
const TOUCH_MS = 5 * 60_000;

/**
 * Stream a table out into a new file of the export directory: written under a random
 * temporary name, then linked to its name only if no file has that name (or renamed over it
 * when the operator allows overwriting). Nothing outside the directory is created, written,
 * followed or removed.
 */
export async function exportToFile(job: ExportJob): Promise<{ count: number; path: string }> {
  if (!job.target)
    throw new BulkError(
      'EXPORT_DISABLED',
      'this worker has no export directory: start it with --export-dir (exportDir) to accept copyTo jobs',
      { table: job.table },
    );
  const { dir, overwrite } = job.target;
  const name = checkExportFileName(job.spec.path);
  const full = join(dir, name);
  /** The file that has the name: done by this operation (its count), or someone else's. */
  const existing = async (): Promise<{ count: number } | 'other' | undefined> => {
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(full);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const count = st.isFile() ? await job.recall(`${st.dev}:${st.ino}`) : undefined;
    return count === undefined ? 'other' : { count };
  };
  const taken = () =>
    new BulkError(
      'FILE_EXISTS',
      `${name} exists in the export directory (start the worker with --export-overwrite to replace files)`,
      { table: job.table },
    );
  if (!overwrite) {
    const found = await existing();
    if (found === 'other') throw taken();
    if (found) return { count: found.count, path: full };
  }
  const tmp = join(dir, `.bulkmodel-${randomUUID()}.partial`);
  const file = await open(tmp, CREATE_NEW, 0o640);
  // A long export (a COPY waiting on a lock, a filter that matches little of a large table)
  // may write nothing for a while: its file is touched, so that no sweep takes it for dead.
  const touch = setInterval(() => {
    const now = new Date();
    void file.utimes(now, now).catch(() => {});
  }, TOUCH_MS);
  touch.unref();
  const model = job.db.model(job.table);
  const base = {
    ...(job.spec.columns ? { columns: job.spec.columns } : {}),
    ...(job.where ? { where: job.where } : {}),
    signals: job.signals,
  };
  let count = 0;
  try {
    // csv, COPY text, or NDJSON written from COPY text (core/ndjson.ts): values exact.
    const out = model.copyTo({ ...base, format: (job.spec.format ?? 'csv') as 'csv' });
    const chunks = Readable.from(
      valuesCounted(out, (n) => {
        count = n;
      }),
    );
    await pipeline(chunks, file.createWriteStream());
    // (The stream has closed the file; the temporary name is this export's own, random.)
    const st = await lstat(tmp);
    await job.remember(`${st.dev}:${st.ino}`, count);
    if (overwrite) {
      await rename(tmp, full);
    } else {
      try {
        await link(tmp, full);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        // Another run of this operation may have got there first (a stalled job run twice).
        const found = await existing();
        if (found === 'other' || found === undefined) throw taken();
        count = found.count;
      }
      await rm(tmp, { force: true });
    }
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    clearInterval(touch);
    await file.close().catch(() => {});
  }
  return { count, path: full };
}
