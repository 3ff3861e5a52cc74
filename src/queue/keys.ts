import { BulkError } from '../core/errors.js';

/**
 * Queue names: letters, digits, `.`, `_` and `-`, up to 100 characters. (A name becomes part of
 * every key of its queue; `:` `{` `}` `,` would change what the key means, or the CLI's lists.)
 */
export function checkQueueName(name: unknown, what = 'queue'): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,100}$/.test(name))
    throw new BulkError(
      'INVALID_OPTION',
      `${what} ${JSON.stringify(name)} is not a queue name: 1-100 letters, digits, '.', '_' or '-'`,
    );
  return name;
}

/** A key prefix: 1-200 printable characters, no spaces. */
export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(prefix))
    throw new BulkError(
      'INVALID_OPTION',
      `prefix ${JSON.stringify(prefix)} must be 1-200 printable characters without spaces`,
    );
  return prefix;
}

/** Queue names from a list or a comma-separated string (`a,b,c`), each checked, no repeats. */
export function queueNames(
  input: string | readonly string[] | undefined,
  fallback: string,
): string[] {
  const list =
    input === undefined
      ? fallback.split(',')
      : typeof input === 'string'
        ? input.split(',')
        : [...input];
  const names = list.map((s) => (typeof s === 'string' ? s.trim() : s));
  if (names.length === 0) throw new BulkError('INVALID_OPTION', 'at least one queue is needed');
  for (const n of names) checkQueueName(n);
  if (new Set(names).size !== names.length)
    throw new BulkError(
      'INVALID_OPTION',
      `queue ${JSON.stringify(names.join(','))} names a queue twice`,
    );
  return names;
}

/**
 * Whether a key starting with `prefix` has a Redis Cluster hash tag there: the first `{`, then
 * a `}` after at least one character (Redis hashes only what is between).
 */
export function hasHashTag(prefix: string): boolean {
  const open = prefix.indexOf('{');
  if (open < 0) return false;
  const close = prefix.indexOf('}', open + 1);
  return close > open + 1;
}

/**
 * The prefix BullMQ is given for one queue. On a Redis Cluster every key of a queue must hash to
 * one slot (BullMQ's scripts touch several at once): the queue's name becomes a hash tag,
 * `<prefix>:{<queue>}`, so that each queue has a slot of its own (queues spread over the nodes),
 * unless the prefix has a hash tag already (then every queue under it shares that slot). One
 * Redis server needs none: the prefix is used as it is.
 */
export function bullPrefix(prefix: string, queue: string, cluster: boolean): string {
  if (!cluster || hasHashTag(prefix)) return prefix;
  return `${prefix}:{${queue}}`;
}

/**
 * Keys bulkmodel keeps beside one BullMQ queue: under BullMQ's own prefix for the queue and the
 * queue's name, then `bm:`, so that they share the queue's hash slot on a cluster.
 */
export class QueueKeys {
  /** The prefix BullMQ uses for this queue (with its hash tag on a cluster). */
  readonly bullPrefix: string;
  constructor(
    readonly prefix: string,
    readonly queue: string,
    readonly cluster = false,
  ) {
    this.bullPrefix = bullPrefix(prefix, queue, cluster);
  }
  /** BullMQ's qualified queue name, used as a parent's `queue`. */
  get qualified(): string {
    return `${this.bullPrefix}:${this.queue}`;
  }
  private get base(): string {
    return `${this.bullPrefix}:${this.queue}:bm`;
  }
  op(id: string): string {
    return `${this.base}:op:${id}`;
  }
  /** Bitmap of the chunks counted (one bit per chunk index). */
  opDone(id: string): string {
    return `${this.base}:op:${id}:done`;
  }
  /** Hash of the operation's running jobs: job id to the worker's name. */
  opActive(id: string): string {
    return `${this.base}:op:${id}:active`;
  }
  /** Hash of the operation's chunk data (payload version 3): chunk index to its COPY data. */
  opData(id: string): string {
    return `${this.base}:op:${id}:data`;
  }
  /** Sorted set of operation ids by creation time. */
  get ops(): string {
    return `${this.base}:ops`;
  }
  /** Catalog snapshots of allowed tables (workers publish, producers read). */
  get catalog(): string {
    return `${this.base}:catalog`;
  }
  /** Stream of signals and progress events. */
  get events(): string {
    return `${this.base}:events`;
  }
}

/** Job ids: the operation's parent is the operation id; chunks and the seal hang off it. */
export const jobIds = {
  parent: (op: string) => op,
  chunk: (op: string, index: number) => `${op}-c${index}`,
  seal: (op: string) => `${op}-seal`,
};
