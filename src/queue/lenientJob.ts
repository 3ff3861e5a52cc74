import { Job, type JobJson, Queue } from 'bullmq';
import { defaultOf } from '../core/settings.js';

/**
 * Facts about jobs learnt while reading them from Redis, kept beside the Job objects (the
 * worker's guard adds size and fingerprint; LenientJob the reason data was unreadable).
 */
export interface JobFacts {
  /** Size of the job's data as stored (UTF-8 bytes, or UTF-16 units when that settled a limit). */
  bytes: number;
  /** sha256 of the data as stored (base64url), when it was read. */
  fingerprint?: string;
  /** Why the data was not parsed. */
  refused?: { code: 'INVALID_PAYLOAD' | 'PAYLOAD_TOO_LARGE'; message: string };
}

export const jobFacts = new WeakMap<object, JobFacts>();

/** Job.fromJSON that turns unreadable data into `null` instead of throwing. */
export class LenientJob extends Job {
  /** Data longer than this (UTF-16 units) is not parsed: the producer's 16 MiB limit. */
  static maxDataLength = defaultOf('maxPayloadBytes');

  static override fromJSON<T = unknown, R = unknown, N extends string = string>(
    queue: Parameters<typeof Job.fromJSON>[0],
    json: JobJson,
    jobId?: string,
  ): Job<T, R, N> {
    // Reading lists of jobs (the dashboard) must not parse a huge job on every view either.
    if (typeof json.data === 'string' && json.data.length > LenientJob.maxDataLength) {
      const job = Job.fromJSON(queue, { ...json, data: 'null' }, jobId) as Job<T, R, N>;
      jobFacts.set(job, {
        bytes: json.data.length,
        refused: {
          code: 'PAYLOAD_TOO_LARGE',
          message: `job data is at least ${json.data.length} bytes, not read`,
        },
      });
      return job;
    }
    try {
      return Job.fromJSON(queue, json, jobId) as Job<T, R, N>;
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      const job = Job.fromJSON(queue, { ...json, data: 'null' }, jobId) as Job<T, R, N>;
      jobFacts.set(job, {
        bytes: typeof json.data === 'string' ? Buffer.byteLength(json.data) : 0,
        refused: { code: 'INVALID_PAYLOAD', message: 'job data is not JSON' },
      });
      return job;
    }
  }
}

/** A Queue whose job lists survive jobs with unreadable data (the dashboard's). */
export class LenientQueue extends Queue {
  protected override get Job(): typeof Job {
    return LenientJob as unknown as typeof Job;
  }
}
