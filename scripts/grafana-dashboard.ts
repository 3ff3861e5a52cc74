// Writes docs/grafana-dashboard.json: a Grafana dashboard for the worker's Prometheus metrics
// (src/worker/metrics.ts, src/worker/queueMetrics.ts). A test checks the file is current and
// that every expression names a metric the worker exports.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { grafanaDashboard } from '../src/worker/grafana.js';

const file = fileURLToPath(new URL('../docs/grafana-dashboard.json', import.meta.url));
writeFileSync(file, `${JSON.stringify(grafanaDashboard(), null, 2)}\n`);
// As the repository formats JSON (the test compares parsed values, not bytes).
execFileSync('npx', ['biome', 'format', '--write', file], { stdio: 'ignore' });
process.stdout.write('wrote docs/grafana-dashboard.json\n');
