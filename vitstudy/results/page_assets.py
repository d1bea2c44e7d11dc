"""The style sheet and the script that report.html carries inline (vitstudy.results.page): no CDN and
no fetch, so the page works from file:// and from a results folder copied off a cluster.

The script sorts any `table.sortable` by the column whose header is clicked (or given Enter/Space):
by a cell's `data-value` (the raw number) where it has one, else by the leading number of its text
("96.94 ± 1.32" → 96.94, "18.6K" → 18600, "<0.001" → 0.001), else as text; cells without a number go
last either way. Clicking the same header again reverses; the header's `aria-sort` says the order.
"""

from __future__ import annotations

# default-src 'none': the browser itself refuses any fetch the page might make (a stray URL in an SVG)
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

CSS = """
:root { --fg: #1d232a; --muted: #5f6b76; --line: #d5dbe1; --head: #eef1f4; --best: #0b5394;
        --ok: #1e7b34; --bad: #b3261e; --run: #8a5a00; --wait: #5f6b76; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 1.2em 2em 3em; max-width: 1500px; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 .2em; }
h2 { font-size: 1.2em; margin: 2em 0 .6em; border-bottom: 1px solid var(--line); padding-bottom: .2em; }
h3 { font-size: 1em; margin: 1.4em 0 .4em; }
nav a { margin-right: 1.2em; }
a { color: #1a5fb4; }
.muted, .legend, .notes { color: var(--muted); }
.summary { margin: .3em 0 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .4em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .3em .6em; white-space: nowrap; }
thead th { background: var(--head); position: sticky; top: 0; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th:hover { background: #e1e6eb; }
th[aria-sort=ascending]::after { content: " \\25B2"; font-size: .75em; }
th[aria-sort=descending]::after { content: " \\25BC"; font-size: .75em; }
.r { text-align: right; }
.l { text-align: left; }
td.best { color: var(--best); font-weight: 700; }
tbody tr:nth-child(even) { background: #f8f9fa; }
tbody tr:target, section.group:target { outline: 2px solid #f0b400; }
sup a { text-decoration: none; }
.notes p, .legend { margin: .25em 0; max-width: 110ch; }
.status { font-weight: 600; }
.status-done { color: var(--ok); }
.status-failed, .status-diverged, .status-oom { color: var(--bad); }
.status-running { color: var(--run); }
.status-pending { color: var(--wait); font-style: italic; }
tr.error-row td { white-space: normal; background: #fdf0ef; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: .8em; overflow-x: auto;
      font-size: 12.5px; }
pre.error { margin: 0; border: none; background: none; padding: 0; white-space: pre-wrap; color: var(--bad); }
figure.plot { margin: 1em 0; }
figure.plot svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); }
.files a { margin-right: .6em; }
.files .missing { color: #aab3bb; margin-right: .6em; }
dl.provenance { display: grid; grid-template-columns: max-content auto; gap: .2em 1.2em; }
dl.provenance dt { color: var(--muted); }
dl.provenance dd { margin: 0; font-family: ui-monospace, monospace; }
.mixed { color: var(--bad); }
"""

JS = r"""
(function () {
  "use strict";
  var SCALE = {K: 1e3, M: 1e6, G: 1e9, T: 1e12};
  var NUMBER = /^[<>~]?\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([KMGT](?![a-z]))?/;

  // a cell's sort key: its raw number, else the leading number of its text, else null
  function number(cell) {
    if (cell.hasAttribute("data-value")) return parseFloat(cell.getAttribute("data-value"));
    var text = (cell.getAttribute("data-sort") || cell.textContent).trim()
      .replace(/\u2212/g, "-").replace(/,/g, "");
    var m = NUMBER.exec(text);
    return m ? parseFloat(m[1]) * (SCALE[m[2]] || 1) : null;
  }

  function sortBy(table, th) {
    var col = th.cellIndex;
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).filter(function (row) {
      return !row.classList.contains("error-row");  // moved with the run it belongs to, below
    }).map(function (row, i) {
      var cell = row.cells[col];
      var n = cell ? number(cell) : null;
      return {row: row, i: i, n: n === null || isNaN(n) ? null : n,
              t: cell ? (cell.getAttribute("data-sort") || cell.textContent).trim() : ""};
    });
    var numeric = rows.some(function (r) { return r.n !== null; });
    rows.sort(function (a, b) {
      if (numeric) {
        if (a.n === null || b.n === null) return a.n === b.n ? a.i - b.i : (a.n === null ? 1 : -1);
        return sign * (a.n - b.n) || a.i - b.i;
      }
      return sign * a.t.localeCompare(b.t, undefined, {numeric: true}) || a.i - b.i;
    });
    rows.forEach(function (r) {
      body.appendChild(r.row);
      var id = r.row.getAttribute("data-run-id");
      var error = id && body.querySelector('tr.error-row[data-error-of="' + id + '"]');
      if (error) body.appendChild(error);
    });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.tabIndex = 0;
      th.title = "sort by this column (again: reverse)";
      th.addEventListener("click", function () { sortBy(table, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
      });
    });
  });
})();
"""
