import type { Queue } from 'bullmq';
import { Gauge, type Registry } from 'prom-client';

const STATES = [
  'waiting',
  'active',
  'delayed',
  'waiting-children',
  'prioritized',
  'completed',
  'failed',
] as const;

/**
 * Gauges read from the queue at scrape time: jobs by state and connected workers. Both the
 * dashboard and each worker expose them (aggregate with max(), not sum()).
 */
export function registerQueueMetrics(registry: Registry, queues: readonly Queue[]): void {
  const registers = [registry];
  new Gauge({
    name: 'bulkmodel_queue_jobs',
    help: 'Jobs in the bulkmodel queue by state',
    labelNames: ['queue', 'state'],
    registers,
    async collect() {
      for (const queue of queues) {
        const counts = await queue.getJobCounts(...STATES);
        for (const s of STATES) this.set({ queue: queue.name, state: s }, counts[s] ?? 0);
      }
    },
  });
  new Gauge({
    name: 'bulkmodel_workers_connected',
    help: 'Workers connected to the bulkmodel queue',
    labelNames: ['queue'],
    registers,
    async collect() {
      for (const queue of queues) this.set({ queue: queue.name }, await queue.getWorkersCount());
    },
  });
}
