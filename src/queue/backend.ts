import { FlowProducer, type QueueOptions } from 'bullmq';
import { connect, describe, isCluster, type RedisClient, type RedisInput } from './connection.js';
import { checkPrefix, QueueKeys } from './keys.js';
import { LenientQueue } from './lenientJob.js';
import { RedisQueueState } from './redisState.js';
import type { QueueState } from './state.js';

/**
 * Where queues live: BullMQ's jobs and bulkmodel's state beside them. Producer, worker,
 * dashboard and CLI reach a store only through this: BullMQ classes get `bullOptions(queue)`,
 * and everything else goes through `state(queue)`.
 */
export interface QueueBackend {
  readonly kind: 'redis';
  /** Where it points, without secrets (for logs). */
  readonly where: string;
  /** What BullMQ's classes take for one queue: connection and key prefix. */
  bullOptions(queue: string): Pick<QueueOptions, 'connection' | 'prefix'>;
  /** BullMQ's qualified name of a queue (a parent job's `queue` in a flow). */
  qualifiedName(queue: string): string;
  /** bulkmodel's state beside one queue. */
  state(queue: string): QueueState;
  /** A BullMQ Queue for one queue that lists jobs whose data is not JSON (LenientQueue). */
  queue(name: string): LenientQueue;
  /** A FlowProducer for one queue's flows. */
  flows(queue: string): FlowProducer;
  /** Resolves when the store answers. */
  ping(): Promise<void>;
  /** Warnings about the store's configuration (e.g. a Redis eviction policy). */
  configWarnings(): Promise<string[]>;
  /** Close the connections this backend opened (a given instance is left open). */
  close(): Promise<void>;
  /** Close at once. */
  disconnect(): void;
}

export interface RedisBackendOptions {
  redis?: RedisInput;
  /** BullMQ key prefix. Default 'bull'. */
  prefix?: string;
}

/** Queues in one Redis server or a Redis Cluster (each queue in one hash slot). */
export class RedisBackend implements QueueBackend {
  readonly kind = 'redis' as const;
  readonly where: string;
  readonly client: RedisClient;
  readonly cluster: boolean;
  readonly prefix: string;
  private readonly owned: boolean;
  private readonly states = new Map<string, RedisQueueState>();

  constructor(options: RedisBackendOptions = {}) {
    this.prefix = checkPrefix(options.prefix ?? 'bull');
    const c = connect(options.redis);
    this.client = c.redis;
    this.owned = c.owned;
    this.cluster = isCluster(c.redis);
    this.where = describe(options.redis);
  }

  keys(queue: string): QueueKeys {
    return new QueueKeys(this.prefix, queue, this.cluster);
  }

  bullOptions(queue: string) {
    return { connection: this.client, prefix: this.keys(queue).bullPrefix };
  }

  qualifiedName(queue: string): string {
    return this.keys(queue).qualified;
  }

  state(queue: string): RedisQueueState {
    let s = this.states.get(queue);
    if (!s) {
      s = new RedisQueueState(this.client, this.keys(queue));
      this.states.set(queue, s);
    }
    return s;
  }

  queue(name: string): LenientQueue {
    return new LenientQueue(name, this.bullOptions(name));
  }

  flows(queue: string): FlowProducer {
    return new FlowProducer(this.bullOptions(queue));
  }

  async ping(): Promise<void> {
    await this.client.ping();
  }

  async configWarnings(): Promise<string[]> {
    const nodes = isCluster(this.client) ? this.client.nodes('master') : [this.client];
    const out: string[] = [];
    for (const node of nodes) {
      const policy = (await node.config('GET', 'maxmemory-policy').catch(() => null)) as
        | string[]
        | null;
      if (policy?.[1] && policy[1] !== 'noeviction') {
        const at = isCluster(this.client) ? ` (${node.options.host}:${node.options.port})` : '';
        out.push(
          `Redis maxmemory-policy is ${policy[1]}${at}: set it to noeviction, or Redis may evict queued jobs`,
        );
      }
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.owned) await this.client.quit().catch(() => this.client.disconnect());
  }

  disconnect(): void {
    if (this.owned) this.client.disconnect();
  }
}
