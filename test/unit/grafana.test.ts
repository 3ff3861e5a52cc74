import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { grafanaDashboard, grafanaMetricNames } from '../../src/worker/grafana.js';
import { createWorkerMetrics } from '../../src/worker/metrics.js';
import { registerQueueMetrics } from '../../src/worker/queueMetrics.js';

describe('docs/grafana-dashboard.json', () => {
  it('is generated from src/worker/grafana.ts (npm run docs:grafana)', () => {
    const onDisk = JSON.parse(
      readFileSync(new URL('../../docs/grafana-dashboard.json', import.meta.url), 'utf8'),
    );
    expect(onDisk).toEqual(grafanaDashboard());
  });

  it('reads only metrics a worker with --metrics-port exports', async () => {
    // The registry bulkmodel worker --metrics-port serves (src/cli/worker.ts).
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    createWorkerMetrics(registry);
    registerQueueMetrics(registry, []);
    const exported = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    exported.add('up'); // Prometheus's own, per scraped target
    const read = grafanaMetricNames();
    expect(read).toContain('bulkmodel_rows_written_total');
    expect(read).toContain('bulkmodel_chunk_duration_seconds');
    for (const name of read) expect(exported, name).toContain(name);
  });
});
