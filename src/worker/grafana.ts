/**
 * The Grafana dashboard for the worker's Prometheus metrics (docs/grafana-dashboard.json,
 * written by `npm run docs:grafana`). Panels: rows written per second by table, chunk duration
 * percentiles, jobs by state, retries and errors by code, workers connected.
 */

/** Grafana's variable for the Prometheus data source the user picks on import. */
const DATASOURCE = `$${'{datasource}'}`;

interface Panel {
  title: string;
  type: 'timeseries' | 'stat';
  unit: string;
  exprs: { expr: string; legend: string }[];
  w: number;
}

const PANELS: Panel[] = [
  {
    title: 'Rows written per second, by table',
    type: 'timeseries',
    unit: 'rowsps',
    exprs: [
      {
        expr: 'sum by (table) (rate(bulkmodel_rows_written_total{job=~"$job"}[1m]))',
        legend: '{{table}}',
      },
    ],
    w: 12,
  },
  {
    title: 'Chunk duration (p50, p95, p99)',
    type: 'timeseries',
    unit: 's',
    exprs: [0.5, 0.95, 0.99].map((q) => ({
      expr: `histogram_quantile(${q}, sum by (le) (rate(bulkmodel_chunk_duration_seconds_bucket{job=~"$job"}[5m])))`,
      legend: `p${Math.round(q * 100)}`,
    })),
    w: 12,
  },
  {
    title: 'Jobs by state',
    type: 'timeseries',
    unit: 'short',
    exprs: [
      {
        expr: 'max by (queue, state) (bulkmodel_queue_jobs{job=~"$job", state!="completed"})',
        legend: '{{queue}} {{state}}',
      },
    ],
    w: 12,
  },
  {
    title: 'Retries and errors per minute',
    type: 'timeseries',
    unit: 'short',
    exprs: [
      {
        expr: 'sum by (table) (increase(bulkmodel_job_retries_total{job=~"$job"}[1m]))',
        legend: 'retries {{table}}',
      },
      {
        expr: 'sum by (code) (increase(bulkmodel_errors_total{job=~"$job"}[1m]))',
        legend: 'errors {{code}}',
      },
    ],
    w: 12,
  },
  {
    title: 'Workers connected',
    type: 'stat',
    unit: 'short',
    exprs: [
      {
        expr: 'max by (queue) (bulkmodel_workers_connected{job=~"$job"})',
        legend: '{{queue}}',
      },
    ],
    w: 8,
  },
  {
    title: 'Worker processes up',
    type: 'stat',
    unit: 'short',
    exprs: [{ expr: 'sum(up{job=~"$job"})', legend: 'up' }],
    w: 8,
  },
  {
    title: 'Worker memory (RSS)',
    type: 'timeseries',
    unit: 'bytes',
    exprs: [{ expr: 'process_resident_memory_bytes{job=~"$job"}', legend: '{{instance}}' }],
    w: 8,
  },
];

/** The metric names the panels read (a test checks each is one the worker exports). */
export function grafanaMetricNames(): string[] {
  const names = new Set<string>();
  for (const p of PANELS)
    for (const e of p.exprs)
      for (const m of e.expr.matchAll(/\b(bulkmodel_[a-z_]+?|process_[a-z_]+|up)(?:_bucket)?\{/g))
        names.add(m[1]!);
  return [...names].sort();
}

export function grafanaDashboard(): Record<string, unknown> {
  let x = 0;
  let y = 0;
  const panels = PANELS.map((p, i) => {
    if (x + p.w > 24) {
      x = 0;
      y += 8;
    }
    const gridPos = { h: 8, w: p.w, x, y };
    x += p.w;
    return {
      id: i + 1,
      title: p.title,
      type: p.type,
      datasource: { type: 'prometheus', uid: DATASOURCE },
      gridPos,
      fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
      options:
        p.type === 'stat'
          ? { reduceOptions: { calcs: ['lastNotNull'] }, colorMode: 'value' }
          : { legend: { displayMode: 'list', placement: 'bottom' } },
      targets: p.exprs.map((e, j) => ({
        refId: String.fromCharCode(65 + j),
        expr: e.expr,
        legendFormat: e.legend,
      })),
    };
  });
  return {
    title: 'bulkmodel workers',
    uid: 'bulkmodel-workers',
    description:
      'Rows written, chunk durations, jobs by state, retries and errors of bulkmodel workers (bulkmodel worker --metrics-port).',
    tags: ['bulkmodel', 'postgres', 'bullmq'],
    schemaVersion: 39,
    version: 1,
    editable: true,
    time: { from: 'now-1h', to: 'now' },
    refresh: '10s',
    templating: {
      list: [
        {
          name: 'datasource',
          type: 'datasource',
          query: 'prometheus',
          label: 'Prometheus',
        },
        {
          name: 'job',
          type: 'query',
          datasource: { type: 'prometheus', uid: DATASOURCE },
          query: 'label_values(bulkmodel_rows_written_total, job)',
          includeAll: true,
          multi: true,
          current: { text: 'All', value: '$__all' },
          label: 'Job',
        },
      ],
    },
    panels,
  };
}
