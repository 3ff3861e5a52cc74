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
    tr.appendChild(el('td', op.id, 'id'));
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
  function render(data) {
    var body = document.getElementById('ops');
    body.replaceChildren.apply(body, data.operations.map(row));
    if (data.operations.length === 0) {
      var tr = el('tr'), td = el('td', 'No operations on this queue yet.', 'empty');
      td.colSpan = 11;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    var list = document.getElementById('signals');
    list.replaceChildren.apply(list, data.signals.map(signal));
    document.getElementById('meta').textContent =
      'queue ' + data.queue + ' · updated ' + new Date(data.time).toLocaleTimeString();
  }
  function poll() {
    fetch('api/operations', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(render)
      .catch(function (e) { document.getElementById('meta').textContent = 'error: ' + e.message; })
      .finally(function () { setTimeout(poll, POLL_MS); });
  }
  poll();
})();
`;
