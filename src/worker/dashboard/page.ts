/**
 * The Operations page: static HTML, and a script that polls /api/operations and renders with
 * textContent only (table names, error messages and signal fields are never parsed as HTML).
 */
export const OPERATIONS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bulkmodel · operations</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2433; background: #f6f7f9; }
  header { display: flex; gap: 1.5em; align-items: baseline; padding: .8em 1.5em; background: #1d2433; color: #fff; }
  header h1 { font-size: 1.1em; margin: 0; }
  header a { color: #9cc3ff; }
  header .meta { margin-left: auto; opacity: .75; font-size: .9em; }
  main { padding: 1em 1.5em; }
  table { border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 2px #0002; }
  th, td { text-align: left; padding: .45em .6em; border-bottom: 1px solid #e4e7ec; vertical-align: top; }
  th { font-weight: 600; font-size: .85em; color: #5b6475; background: #fafbfc; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .id { font-family: ui-monospace, monospace; font-size: .85em; }
  .bar { height: 6px; background: #e4e7ec; border-radius: 3px; margin-top: 3px; min-width: 120px; }
  .bar > div { height: 100%; background: #3b82f6; border-radius: 3px; }
  .state { font-weight: 600; padding: .1em .5em; border-radius: 1em; font-size: .85em; }
  .s-completed { background: #dcfce7; color: #166534; }
  .s-failed, .s-cancelled { background: #fee2e2; color: #991b1b; }
  .s-running { background: #dbeafe; color: #1e40af; }
  .s-queued, .s-enqueueing { background: #fef9c3; color: #854d0e; }
  .err { color: #991b1b; max-width: 36em; word-break: break-word; }
  .err b { font-family: ui-monospace, monospace; }
  h2 { font-size: 1em; margin: 1.5em 0 .5em; }
  ol#signals { list-style: none; padding: 0; margin: 0; font-size: .9em; background: #fff; box-shadow: 0 1px 2px #0002; }
  ol#signals li { padding: .3em .6em; border-bottom: 1px solid #eef0f3; }
  ol#signals .t { color: #5b6475; font-variant-numeric: tabular-nums; }
  ol#signals .n { font-weight: 600; margin: 0 .5em; }
  .empty { color: #5b6475; padding: 1em; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1em; margin-bottom: 1em; }
  .chart { background: #fff; box-shadow: 0 1px 2px #0002; padding: .5em .8em; }
  .chart h3 { font-size: .85em; margin: 0 0 .3em; color: #5b6475; font-weight: 600; }
  .chart svg { width: 100%; height: 120px; display: block; }
  .chart .legend span { font-size: .8em; margin-right: 1em; }
  .chart .legend i { display: inline-block; width: .8em; height: .8em; margin-right: .3em; vertical-align: -1px; }
  form.filters { display: flex; gap: .8em; align-items: center; margin: .5em 0; font-size: .9em; }
  form.filters select, form.filters input { font: inherit; padding: .15em .3em; }
  .pager { margin-left: auto; display: flex; gap: .5em; align-items: center; }
  .w-ok { color: #166534; } .w-stuck { color: #854d0e; font-weight: 600; } .w-gone { color: #991b1b; font-weight: 600; }
  td a, li a { color: #1d4ed8; }
</style>
</head>
<body>
<header>
  <h1>bulkmodel</h1>
  <span>Operations</span>
  <a href="queues">Jobs (bull-board)</a>
  <a href="metrics">Metrics</a>
  <span class="meta" id="meta">connecting…</span>
</header>
<main>
  <section class="charts">
    <div class="chart"><h3>Rows/s, last hour (all queues)</h3><svg id="chart-rows" role="img" aria-label="rows per second"></svg></div>
    <div class="chart"><h3>Jobs by state (since this dashboard started)</h3><svg id="chart-jobs" role="img" aria-label="jobs by state"></svg><div class="legend" id="legend-jobs"></div></div>
    <div class="chart"><h3>Failed jobs and retries per minute</h3><svg id="chart-errors" role="img" aria-label="failed jobs and retries"></svg><div class="legend" id="legend-errors"></div></div>
  </section>
  <h2>Workers</h2>
  <table>
    <thead><tr><th>Worker</th><th>Host</th><th>Pid</th><th>Queues</th><th>Concurrency</th><th>Rows/s</th><th>Running</th><th>Last seen</th><th>Status</th></tr></thead>
    <tbody id="workers"></tbody>
  </table>
  <h2>Operations</h2>
  <form class="filters" id="filters">
    <label>State <select name="state"><option value="">any</option><option>enqueueing</option><option>queued</option><option>running</option><option>completed</option><option>failed</option><option>cancelled</option></select></label>
    <label>Table <input name="table" list="tables" placeholder="any" size="18"></label>
    <datalist id="tables"></datalist>
    <span class="pager"><button type="button" id="prev">‹ newer</button><span id="page"></span><button type="button" id="next">older ›</button></span>
  </form>
  <table>
    <thead><tr>
      <th>Operation</th><th>Queue</th><th>Table</th><th>Kind</th><th>Rows</th><th>Chunks</th>
      <th>Rows/s</th><th>ETA</th><th>State</th><th>Workers</th><th>Error</th>
    </tr></thead>
    <tbody id="ops"></tbody>
  </table>
  <h2>Recent signals</h2>
  <ol id="signals"></ol>
</main>
<script src="charts.js"></script>
<script src="operations.js"></script>
</body>
</html>
`;

export const OPERATIONS_JS = `'use strict';
(function () {
  var POLL_MS = 1000;
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmt(n) { return n === undefined || n === null ? '' : Number(n).toLocaleString('en-US'); }
  function eta(s) {
    if (s === undefined || s === null) return '';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }
  function row(op) {
    var tr = el('tr');
    tr.dataset.id = op.id;
    tr.dataset.state = op.state;
    var idCell = el('td', null, 'id'), link = el('a', op.id);
    link.href = 'operation?queue=' + encodeURIComponent(op.queue) + '&id=' + encodeURIComponent(op.id);
    idCell.appendChild(link);
    tr.appendChild(idCell);
    tr.appendChild(el('td', op.queue));
    tr.appendChild(el('td', op.table));
    tr.appendChild(el('td', op.kind));
    var rows = el('td', null, 'num rows');
    rows.appendChild(el('span', fmt(op.rowsDone) + ' / ' + (op.totalRows === undefined ? '?' : fmt(op.totalRows))));
    if (op.totalRows) {
      var bar = el('div', null, 'bar'), fill = el('div');
      fill.style.width = Math.min(100, (100 * op.rowsDone) / op.totalRows).toFixed(1) + '%';
      bar.appendChild(fill);
      rows.appendChild(bar);
    }
    tr.appendChild(rows);
    tr.appendChild(el('td', fmt(op.chunksDone) + ' / ' + (op.totalChunks === undefined ? '?' : fmt(op.totalChunks)), 'num'));
    tr.appendChild(el('td', fmt(op.rowsPerSec), 'num'));
    tr.appendChild(el('td', eta(op.etaSec), 'num'));
    var st = el('td');
    st.appendChild(el('span', op.state, 'state s-' + String(op.state).replace(/[^a-z]/g, '')));
    tr.appendChild(st);
    tr.appendChild(el('td', (op.workers || []).join(', ')));
    var err = el('td', null, 'err');
    if (op.error) {
      err.appendChild(el('b', op.error.code));
      err.appendChild(document.createTextNode(' ' + op.error.message));
    }
    tr.appendChild(err);
    return tr;
  }
  function signal(s) {
    var li = el('li');
    li.appendChild(el('span', new Date(s.time).toLocaleTimeString(), 't'));
    li.appendChild(el('span', s.name, 'n'));
    var parts = [];
    Object.keys(s.fields).forEach(function (k) { parts.push(k + '=' + s.fields[k]); });
    li.appendChild(el('span', parts.join(' ') + (s.operationId ? '  op ' + s.operationId : '')));
    return li;
  }
  var PAGE = 50, offset = 0, total = 0, more = false;
  function filtered() {
    var f = document.getElementById('filters');
    return Boolean(f.state.value || f.table.value);
  }
  function filters() {
    var f = document.getElementById('filters');
    return 'state=' + encodeURIComponent(f.state.value) + '&table=' + encodeURIComponent(f.table.value) +
      '&limit=' + PAGE + '&offset=' + offset;
  }
  function ago(t) {
    if (!t) return '';
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    return s < 60 ? s + ' s ago' : s < 3600 ? Math.floor(s / 60) + ' min ago' : Math.floor(s / 3600) + ' h ago';
  }
  function worker(w) {
    var tr = el('tr');
    tr.dataset.worker = w.name;
    tr.dataset.status = w.status;
    [w.name, w.host, w.pid, w.queues.join(', ')].forEach(function (t) { tr.appendChild(el('td', t)); });
    tr.appendChild(el('td', w.concurrency === undefined ? '' : w.concurrency, 'num'));
    tr.appendChild(el('td', fmt(w.rowsPerSec), 'num'));
    tr.appendChild(el('td', w.running.join(', '), 'id'));
    tr.appendChild(el('td', ago(w.lastSeen)));
    tr.appendChild(el('td', w.status === 'ok' ? 'running' : w.status === 'stuck' ? 'stuck?' : 'gone', 'w-' + w.status));
    return tr;
  }
  function renderWorkers(data) {
    var body = document.getElementById('workers');
    body.replaceChildren.apply(body, data.workers.map(worker));
    if (data.workers.length === 0) {
      var tr = el('tr'), td = el('td', 'No worker is connected.', 'empty');
      td.colSpan = 9;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }
  function renderCharts(data) {
    var C = window.bulkmodelCharts;
    C.line(document.getElementById('chart-rows'), [{ points: data.rowsPerSec, color: '#3b82f6', fill: true }]);
    var states = [['active', '#3b82f6'], ['waiting', '#eab308'], ['delayed', '#a855f7'], ['failed', '#ef4444']];
    C.line(document.getElementById('chart-jobs'), states.map(function (s) {
      return { color: s[1], points: data.jobs.map(function (j) { return [j.time, j.counts[s[0]] || 0]; }) };
    }));
    C.legend(document.getElementById('legend-jobs'), states);
    var perMin = C.perMinute(data.jobs, function (j) { return j.counts.failed || 0; });
    var retries = C.perMinute(data.jobs, function (j) { return j.retries || 0; });
    C.line(document.getElementById('chart-errors'), [
      { points: perMin, color: '#ef4444' }, { points: retries, color: '#f97316' }]);
    C.legend(document.getElementById('legend-errors'), [['failed jobs', '#ef4444'], ['retries', '#f97316']]);
  }
  function render(data) {
    total = data.total;
    more = data.more;
    document.getElementById('page').textContent = total === 0 ? '' :
      (offset + 1) + '-' + Math.min(offset + PAGE, total) + (more && !filtered() ? '' : ' of ' + total);
    document.getElementById('prev').disabled = offset === 0;
    document.getElementById('next').disabled = !more;
    var dl = document.getElementById('tables');
    dl.replaceChildren.apply(dl, (data.tables || []).map(function (t) { var o = el('option'); o.value = t; return o; }));
    var body = document.getElementById('ops');
    body.replaceChildren.apply(body, data.operations.map(row));
    if (data.operations.length === 0) {
      var tr = el('tr'), td = el('td', 'No operations on this queue yet.', 'empty');
      td.colSpan = 11;
      if (total === 0 && offset === 0 && (form.state.value || form.table.value)) td.textContent = 'No operation matches.';
      tr.appendChild(td);
      body.appendChild(tr);
    }
    var list = document.getElementById('signals');
    list.replaceChildren.apply(list, data.signals.map(signal));
    document.getElementById('meta').textContent =
      'queue ' + data.queue + ' · updated ' + new Date(data.time).toLocaleTimeString();
  }
  function get(url) {
    return fetch(url, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); });
  }
  var slow = 0;
  function poll() {
    var jobs = [get('api/operations?' + filters()).then(render)];
    // Charts and workers change slower than the list: every few polls.
    if (slow++ % 3 === 0) jobs.push(get('api/charts').then(renderCharts), get('api/workers').then(renderWorkers));
    Promise.all(jobs)
      .catch(function (e) { document.getElementById('meta').textContent = 'error: ' + e.message; })
      .finally(function () { setTimeout(poll, POLL_MS); });
  }
  var form = document.getElementById('filters');
  form.addEventListener('change', function () { offset = 0; slow = 1; });
  form.addEventListener('submit', function (e) { e.preventDefault(); });
  document.getElementById('prev').addEventListener('click', function () { offset = Math.max(0, offset - PAGE); });
  document.getElementById('next').addEventListener('click', function () { if (more) offset += PAGE; });
  poll();
})();
`;

/**
 * Small SVG charts (no library, nothing from a CDN): lines over time with the latest and the
 * highest value labelled, built with DOM calls only.
 */
export const CHARTS_JS = `'use strict';
(function () {
  var NS = 'http://www.w3.org/2000/svg';
  function node(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(n) { return Number(n).toLocaleString('en-US', { maximumFractionDigits: 1 }); }
  function time(t) { return new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }); }
  /** series: [{ points: [[t, v], ...], color, fill }] drawn in one box, one scale. */
  function line(svg, series) {
    var W = 300, H = 120, L = 34, B = 16;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.replaceChildren();
    var all = [];
    series.forEach(function (s) { s.points.forEach(function (p) { all.push(p); }); });
    if (all.length < 2) {
      svg.appendChild(node('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', 'font-size': 11, fill: '#5b6475' }, 'collecting data…'));
      svg.dataset.points = '0';
      return;
    }
    var t0 = Math.min.apply(null, all.map(function (p) { return p[0]; }));
    var t1 = Math.max.apply(null, all.map(function (p) { return p[0]; }));
    var max = Math.max(1, Math.max.apply(null, all.map(function (p) { return p[1]; })));
    function x(t) { return L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - 4); }
    function y(v) { return 4 + (1 - v / max) * (H - B - 8); }
    svg.appendChild(node('line', { x1: L, x2: W - 4, y1: y(0), y2: y(0), stroke: '#cbd2dc' }));
    svg.appendChild(node('text', { x: L - 4, y: y(max) + 4, 'text-anchor': 'end', 'font-size': 9, fill: '#5b6475' }, fmt(max)));
    svg.appendChild(node('text', { x: L - 4, y: y(0), 'text-anchor': 'end', 'font-size': 9, fill: '#5b6475' }, '0'));
    svg.appendChild(node('text', { x: L, y: H - 3, 'font-size': 9, fill: '#5b6475' }, time(t0)));
    svg.appendChild(node('text', { x: W - 4, y: H - 3, 'text-anchor': 'end', 'font-size': 9, fill: '#5b6475' }, time(t1)));
    var drawn = 0;
    series.forEach(function (s) {
      if (s.points.length === 0) return;
      var d = s.points.map(function (p, i) { return (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1); }).join(' ');
      if (s.fill) {
        var last = s.points[s.points.length - 1], first = s.points[0];
        svg.appendChild(node('path', { d: d + ' L' + x(last[0]).toFixed(1) + ' ' + y(0) + ' L' + x(first[0]).toFixed(1) + ' ' + y(0) + ' Z', fill: s.color, 'fill-opacity': 0.15, stroke: 'none' }));
      }
      svg.appendChild(node('path', { d: d, fill: 'none', stroke: s.color, 'stroke-width': 1.5, class: 'series' }));
      drawn += s.points.length;
    });
    svg.dataset.points = String(drawn);
    svg.dataset.max = String(max);
  }
  function legend(div, items) {
    div.replaceChildren.apply(div, items.map(function (it) {
      var s = document.createElement('span'), i = document.createElement('i');
      i.style.background = it[1];
      s.appendChild(i);
      s.appendChild(document.createTextNode(it[0]));
      return s;
    }));
  }
  /** Per-minute increases of a counter sampled over time: [[minute, increase], ...]. */
  function perMinute(samples, value) {
    var out = [], by = {};
    for (var i = 1; i < samples.length; i++) {
      var m = Math.floor(samples[i].time / 60000) * 60000;
      by[m] = (by[m] || 0) + Math.max(0, value(samples[i]) - value(samples[i - 1]));
    }
    Object.keys(by).sort().forEach(function (k) { out.push([Number(k), by[k]]); });
    return out;
  }
  window.bulkmodelCharts = { line: line, legend: legend, perMinute: perMinute };
})();
`;

/** One operation: its numbers, error, rows/s chart and chunks (which worker, how long, retries). */
export const OPERATION_HTML =
  OPERATIONS_HTML.slice(0, OPERATIONS_HTML.indexOf('<body>')).replace(
    '<title>bulkmodel · operations</title>',
    '<title>bulkmodel · operation</title>',
  ) +
  `<body>
<header>
  <h1>bulkmodel</h1>
  <a href="./">Operations</a>
  <span>Operation</span>
  <a id="jobs" href="queues">Its jobs (bull-board)</a>
  <span class="meta" id="meta">connecting…</span>
</header>
<main>
  <table><tbody id="facts"></tbody></table>
  <div id="error"></div>
  <section class="charts">
    <div class="chart"><h3>Rows/s while it ran</h3><svg id="chart-op" role="img" aria-label="rows per second of this operation"></svg></div>
  </section>
  <h2>Chunks</h2>
  <table>
    <thead><tr><th>#</th><th>State</th><th>Rows</th><th>Duration</th><th>Attempts</th><th>Worker</th><th>Error</th></tr></thead>
    <tbody id="chunks"></tbody>
  </table>
</main>
<script src="charts.js"></script>
<script src="operation.js"></script>
</body>
</html>
`;

export const OPERATION_JS = `'use strict';
(function () {
  var params = new URLSearchParams(location.search);
  var api = 'api/operation?queue=' + encodeURIComponent(params.get('queue') || '') +
    '&id=' + encodeURIComponent(params.get('id') || '');
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmt(n) { return n === undefined || n === null ? '' : Number(n).toLocaleString('en-US'); }
  function when(t) { return t ? new Date(t).toLocaleString() : ''; }
  function fact(k, v) {
    var tr = el('tr');
    tr.appendChild(el('th', k));
    tr.appendChild(el('td', v));
    return tr;
  }
  function render(d) {
    var op = d.operation;
    document.title = 'bulkmodel · ' + op.id;
    document.getElementById('jobs').href = d.jobsUrl;
    var facts = document.getElementById('facts');
    facts.replaceChildren(
      fact('Operation', op.id), fact('Queue', op.queue), fact('Table', op.table), fact('Kind', op.kind),
      fact('State', op.state),
      fact('Rows', fmt(op.rowsDone) + ' / ' + (op.totalRows === undefined ? '?' : fmt(op.totalRows))),
      fact('Chunks', fmt(op.chunksDone) + ' / ' + (op.totalChunks === undefined ? '?' : fmt(op.totalChunks))),
      fact('Retries', fmt(op.retries)),
      fact('Created', when(op.createdAt)), fact('Started', when(op.startedAt)), fact('Finished', when(op.finishedAt)),
      fact('Workers now', (op.workers || []).join(', ')));
    var err = document.getElementById('error');
    err.replaceChildren();
    if (d.error) {
      var box = el('p', null, 'err');
      box.id = 'op-error';
      box.appendChild(el('b', d.error.code));
      box.appendChild(document.createTextNode(' ' + d.error.message));
      ['table', 'column', 'row', 'line', 'constraint'].forEach(function (k) {
        if (d.error[k] !== undefined) box.appendChild(el('span', ' · ' + k + ' ' + d.error[k]));
      });
      err.appendChild(box);
    }
    window.bulkmodelCharts.line(document.getElementById('chart-op'), [{ points: d.rowsPerSec, color: '#3b82f6', fill: true }]);
    var body = document.getElementById('chunks');
    body.replaceChildren.apply(body, d.chunks.map(function (c) {
      var tr = el('tr');
      tr.dataset.state = c.state;
      tr.appendChild(el('td', c.index, 'num'));
      var st = el('td');
      st.appendChild(el('span', c.state, 'state s-' + c.state));
      tr.appendChild(st);
      tr.appendChild(el('td', fmt(c.rows), 'num'));
      tr.appendChild(el('td', c.durationMs === undefined ? '' : (c.durationMs / 1000).toFixed(2) + ' s', 'num'));
      tr.appendChild(el('td', c.attempts, 'num'));
      tr.appendChild(el('td', c.worker || ''));
      tr.appendChild(el('td', c.error || '', 'err'));
      return tr;
    }));
    document.getElementById('meta').textContent = 'updated ' + new Date(d.time).toLocaleTimeString();
  }
  function poll() {
    fetch(api, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 404) throw new Error('no such operation');
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      })
      .then(function (d) { render(d); setTimeout(poll, d.operation.finishedAt ? 5000 : 2000); })
      .catch(function (e) { document.getElementById('meta').textContent = 'error: ' + e.message; setTimeout(poll, 3000); });
  }
  poll();
})();
`;
