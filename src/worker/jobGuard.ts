import { createHash } from 'node:crypto';
import { type Job, type JobJson, Worker } from 'bullmq';
import { defaultOf } from '../core/settings.js';
import { jobFacts as facts, type JobFacts, LenientJob } from '../queue/lenientJob.js';

/**
 * Jobs as read from the queue, before anything trusts them. BullMQ parses a job's data with
 * JSON.parse as it hands the job out; data that is not JSON made that throw inside its fetch
 * loop, so the job was never processed nor failed (it stalled forever, logged as a connection
 * error), and bull-board's lists answered 500. Here such data becomes `null`, with the reason
 * kept beside the job for the processor to refuse it; data larger than the worker's limit is
 * refused before it is parsed at all; and each job's raw data is fingerprinted (the ledger
 * binds a chunk's slot to it).
 */

/** The facts recorded for a job the guarded worker created (undefined for other jobs). */
export function rawFacts(job: object): JobFacts | undefined {
  return facts.get(job);
}

/** UTF-8 size of a string, computed only when the length alone cannot settle the limit. */
function overLimit(s: string, maxBytes: number): { over: boolean; bytes: number } {
  // A string of n UTF-16 units is n to 3n bytes: only in between is it measured.
  if (s.length > maxBytes || s.length * 3 <= maxBytes) {
    return { over: s.length > maxBytes, bytes: s.length > maxBytes ? s.length : -1 };
  }
  const bytes = Buffer.byteLength(s);
  return { over: bytes > maxBytes, bytes };
}

/**
 * BullMQ's Worker, with every job's data size-checked and fingerprinted before it is parsed.
 * `maxPayloadBytes` is read on each job (the BulkWorker's limit).
 */
export class GuardedWorker extends Worker {
  maxPayloadBytes = defaultOf('maxPayloadBytes');

  protected override get Job(): typeof Job {
    return LenientJob as unknown as typeof Job;
  }

  protected override createJob(data: JobJson, jobId: string): Job {
    const raw = typeof data.data === 'string' ? data.data : '';
    const size = overLimit(raw, this.maxPayloadBytes);
    if (size.over) {
      // Never parsed: a 200 MB job would hold the event loop and the heap for seconds.
      const job = super.createJob({ ...data, data: 'null' }, jobId);
      facts.set(job, {
        bytes: size.bytes,
        refused: {
          code: 'PAYLOAD_TOO_LARGE',
          message: `job data is at least ${size.bytes} bytes, over this worker's limit of ${this.maxPayloadBytes} (--max-payload-bytes)`,
        },
      });
      return job;
    }
    const job = super.createJob(data, jobId);
    if (!facts.has(job)) {
      facts.set(job, {
        bytes: size.bytes >= 0 ? size.bytes : raw.length,
        fingerprint: createHash('sha256').update(raw).digest('base64url'),
      });
    }
    return job;
  }
}
