import { Cluster, type ClusterNode, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { BulkError } from '../core/errors.js';
import { redact } from '../core/logger.js';
import { defaultOf } from '../core/settings.js';

/** One Redis server or a Redis Cluster, as ioredis connects to them. */
export type RedisClient = Redis | Cluster;

/**
 * A Redis Cluster given by some of its nodes: `'host:port,host:port'` (as `REDIS_CLUSTER`), or
 * a list of `host:port` strings, `redis://` URLs or ioredis node objects. ioredis finds the
 * other nodes from these. A URL's user and password apply to every node; `rediss://` turns TLS on.
 */
export interface RedisClusterInput {
  cluster: string | readonly (string | ClusterNode)[];
  /** ioredis Cluster options (bulkmodel sets `redisOptions.maxRetriesPerRequest: null`). */
  options?: ClusterOptions;
}

/**
 * Redis for bulkmodel: a URL, ioredis options, a cluster's nodes, or an ioredis `Redis` or
 * `Cluster` instance (shared: not closed by bulkmodel). Without one: `REDIS_CLUSTER` when set,
 * else `REDIS_URL`, else redis://127.0.0.1:6379.
 */
export type RedisInput = string | RedisOptions | RedisClusterInput | Redis | Cluster;

export const DEFAULT_REDIS_URL = defaultOf('redis');

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

function isClusterInput(input: unknown): input is RedisClusterInput {
  return typeof input === 'object' && input !== null && 'cluster' in input;
}

/** The input a process uses when given none: REDIS_CLUSTER, else REDIS_URL, else the default. */
export function redisFromEnv(env: NodeJS.ProcessEnv = process.env): string | RedisClusterInput {
  if (env.REDIS_CLUSTER?.trim()) return { cluster: env.REDIS_CLUSTER };
  return env.REDIS_URL || DEFAULT_REDIS_URL;
}

interface ParsedNodes {
  nodes: ClusterNode[];
  redisOptions: RedisOptions;
}

/** `host:port`, `[v6]:port` or a redis:// URL, each checked; credentials from URLs. */
function parseNodes(spec: RedisClusterInput['cluster']): ParsedNodes {
  const items = typeof spec === 'string' ? spec.split(',') : [...spec];
  const nodes: ClusterNode[] = [];
  const redisOptions: RedisOptions = {};
  for (const raw of items) {
    if (typeof raw !== 'string') {
      nodes.push(raw);
      continue;
    }
    const item = raw.trim();
    if (item === '') continue;
    if (/^rediss?:\/\//.test(item)) {
      let u: URL;
      try {
        u = new URL(item);
      } catch {
        throw new BulkError('INVALID_OPTION', `Redis Cluster node ${redact(item)} is not a URL`);
      }
      if (u.username) redisOptions.username = decodeURIComponent(u.username);
      if (u.password) redisOptions.password = decodeURIComponent(u.password);
      if (u.protocol === 'rediss:') redisOptions.tls = {};
      nodes.push({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379) });
      continue;
    }
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(item);
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535)
      throw new BulkError(
        'INVALID_OPTION',
        `Redis Cluster node ${JSON.stringify(redact(item))} is not host:port (e.g. 127.0.0.1:7000)`,
      );
    nodes.push({ host: (m[1] ?? m[2])!, port });
  }
  if (nodes.length === 0)
    throw new BulkError(
      'INVALID_OPTION',
      'Redis Cluster needs at least one node (host:port,host:port,...)',
    );
  return { nodes, redisOptions };
}

/**
 * An ioredis connection fit for BullMQ (`maxRetriesPerRequest: null`), and whether it is ours
 * to close. A given instance is used as it is.
 */
export function connect(input: RedisInput | undefined): { redis: RedisClient; owned: boolean } {
  if (input instanceof Redis || input instanceof Cluster) return { redis: input, owned: false };
  const given = input ?? redisFromEnv();
  const base = { maxRetriesPerRequest: null, enableReadyCheck: true } as const;
  if (isClusterInput(given)) {
    const { nodes, redisOptions } = parseNodes(given.cluster);
    const o = given.options ?? {};
    return {
      redis: new Cluster(nodes, {
        ...o,
        redisOptions: { ...redisOptions, ...o.redisOptions, maxRetriesPerRequest: null },
      }),
      owned: true,
    };
  }
  if (typeof given === 'string') return { redis: new Redis(given, base), owned: true };
  return { redis: new Redis({ ...given, ...base }), owned: true };
}

/** Where a Redis input points, without passwords. */
export function describe(input: RedisInput | undefined): string {
  if (input instanceof Cluster) {
    const nodes = input.nodes('master').map((n) => `${n.options.host}:${n.options.port}`);
    return nodes.length > 0 ? `cluster ${nodes.join(',')}` : 'cluster (given instance)';
  }
  if (input instanceof Redis) return `${input.options.host}:${input.options.port}`;
  const given = input ?? redisFromEnv();
  if (isClusterInput(given)) {
    try {
      return `cluster ${parseNodes(given.cluster)
        .nodes.map((n) => (typeof n === 'object' ? `${n.host}:${n.port}` : String(n)))
        .join(',')}`;
    } catch {
      return 'cluster (invalid nodes)';
    }
  }
  if (typeof given === 'string') return redact(given);
  return `${given.host ?? '127.0.0.1'}:${given.port ?? 6379}`;
}

/** Check a Redis Cluster node list early (the CLI's --redis-cluster), with a clear error. */
export function checkClusterNodes(spec: string): void {
  parseNodes(spec);
}

/**
 * A connection that fails fast instead of queueing commands while Redis is away (health checks,
 * startup probes): one try per command, no offline queue.
 */
export function connectFailFast(input: string | RedisClusterInput): RedisClient {
  const fast = {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 5000,
  } as const;
  if (isClusterInput(input)) {
    const { nodes, redisOptions } = parseNodes(input.cluster);
    return new Cluster(nodes, {
      ...input.options,
      enableOfflineQueue: false,
      redisOptions: { ...redisOptions, ...input.options?.redisOptions, ...fast },
    });
  }
  return new Redis(input, fast);
}

/** Check that Redis (or the cluster) answers within a few seconds; throws what went wrong. */
export async function probeRedis(input: string | RedisClusterInput): Promise<void> {
  const opts = {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    retryStrategy: () => null,
  } as const;
  let client: RedisClient;
  if (isClusterInput(input)) {
    const { nodes, redisOptions } = parseNodes(input.cluster);
    client = new Cluster(nodes, {
      ...input.options,
      lazyConnect: true,
      clusterRetryStrategy: () => null,
      redisOptions: { ...redisOptions, ...input.options?.redisOptions, ...opts },
    });
  } else client = new Redis(input, opts);
  client.on('error', () => {});
  const timer = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error('no answer within 10 s')), 10_000).unref(),
  );
  try {
    await Promise.race([
      (async () => {
        await client.connect();
        await client.ping();
        if (isCluster(client)) {
          const info = await client.cluster('INFO');
          if (!/cluster_state:ok/.test(String(info)))
            throw new Error('the cluster is not ready (cluster_state is not ok)');
        }
      })(),
      timer,
    ]);
  } finally {
    client.disconnect();
  }
}

/** Environment for a child process that should reach the same Redis (REDIS_CLUSTER wins). */
export function redisEnv(input: string | RedisClusterInput): Record<string, string> {
  if (isClusterInput(input)) {
    const spec =
      typeof input.cluster === 'string'
        ? input.cluster
        : input.cluster
            .map((n) =>
              typeof n === 'string'
                ? n
                : typeof n === 'number'
                  ? `127.0.0.1:${n}`
                  : `${n.host ?? '127.0.0.1'}:${n.port ?? 6379}`,
            )
            .join(',');
    return { REDIS_CLUSTER: spec };
  }
  return { REDIS_URL: input, REDIS_CLUSTER: '' };
}
