"""report.html: a report as one self-contained page beside its table (no CDN, no fetch; links relative to
the page, so it works from file:// and from a results folder copied off a cluster).

Top to bottom: the comparison table (the same laid-out Table as table.md, sortable by any column), the
figures inline as SVG, each row's runs (seed, status, final metrics, error, links to metrics.json, tb/
and the checkpoints), the manifest (else one run's resolved spec) and the provenance from the records'
`env`. Hooks for tests and scripts: `#report-table`, rows `data-row` / `data-run-ids`, cells
`data-metric` with `data-value` (the raw, unrounded number), runs `data-run-id` / `data-status`.
"""

from __future__ import annotations

import html
import os
import re
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from urllib.parse import quote

from vitstudy import runfolder
from vitstudy.results.format import human
from vitstudy.results.groups import Group, axis_value, short_axis
from vitstudy.results.page_assets import CSP, CSS, JS
from vitstudy.results.render import STATUSES
from vitstudy.results.runs import COST, Run, metric_name
from vitstudy.results.table import Report, Table
from vitstudy.runfolder import DAMAGED, FAILURES, METRICS_FILE, SPEC_FILE, TB_DIR

# the files of a run folder a row links to (vitstudy.runfolder); the first three are named even if missing
FILES = ((METRICS_FILE, METRICS_FILE), (TB_DIR, "tb/"), (runfolder.CKPT_FILE, runfolder.CKPT_FILE),
         (runfolder.BEST_FILE, runfolder.BEST_FILE), (runfolder.TRACEBACK_FILE, runfolder.TRACEBACK_FILE))

PAGE_FILE = "report.html"
PROVENANCE = ("vitstudy", "torch", "lightning", "timm", "python", "commit", "dirty", "device_name",
              "precision", "host")
esc = html.escape


def page(report: Report, out_dir: Path, figures: list[Path] = ()) -> str:
    """The page for `report`, to be written into `out_dir`, with the SVG `figures` inline."""
    out_dir = Path(out_dir)
    title = report.title or "report"
    runs = [r for g in report.groups for r in g.runs]
    body = [f"<h1>{esc(title)}</h1>", _summary(report, runs),
            '<nav><a href="#table">table</a><a href="#plots">plots</a><a href="#runs">runs</a>'
            '<a href="#manifest">manifest</a><a href="#provenance">provenance</a></nav>',
            '<section id="table"><h2>Comparison</h2>', _table(report, report.table()), "</section>",
            '<section id="plots"><h2>Plots</h2>', _figures(figures, out_dir), "</section>",
            '<section id="runs"><h2>Runs</h2>', _runs(report, out_dir), "</section>",
            '<section id="manifest">', _manifest(report, runs), "</section>",
            '<section id="provenance"><h2>Provenance</h2>', _provenance(runs + report.tuning), "</section>"]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="vitstudy {esc(_version())}">',
        f"<title>{esc(title)} · vitstudy report</title>", f"<style>{CSS}</style>", "</head><body>",
        *body, f"<script>{JS}</script>", "</body></html>", ""])


def _summary(report: Report, runs: list[Run]) -> str:
    counts = Counter(r.status for r in runs)
    parts = [f'<span class="status status-{s}" data-count="{counts[s]}">{counts[s]} {s}</span>'
             for s in STATUSES if counts[s]]
    built = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (f'<p class="summary" id="summary">{len(report.groups)} rows, {len(runs)} runs: '
            f'{", ".join(parts) or "none"}. <span class="muted">Built {built} from the files on disk; '
            f"rebuild with <code>vitstudy report</code>.</span></p>")


# -- the comparison table ---------------------------------------------------------------------------
def _column_keys(report: Report, t: Table) -> list[str | None]:
    """The quantity behind each column of the long table (a metric, a cost, "n"), None elsewhere."""
    if report.cols:
        return [None] * len(t.header)  # pivoted: a column per axis value; its cells sort by their text
    names = {metric_name(m): m for m in report.metrics} | {metric_name(c): c for c in COST} | {"n": "n"}
    return [names.get(h) if a == "r" else None for h, a in zip(t.header, t.align, strict=True)]


def _raw(report: Report, g: Group, key: str) -> float | None:
    if key == "n":
        return len(g.values(report.metrics[0]))
    return g.cost(key) if key in COST else g.mean(key)


def _table(report: Report, t: Table) -> str:
    keys = _column_keys(report, t)
    head = "".join(f'<th scope="col" class="{a}"{_attr("data-metric", k)}>{esc(h)}</th>'
                   for h, a, k in zip(t.header, t.align, keys, strict=True))
    out = ['<div class="scroll"><table id="report-table" class="sortable">']
    out.append(f"<thead><tr>{head}</tr></thead><tbody>")
    for i, row in enumerate(t.rows):
        g = None if report.cols else report.groups[i]
        ids = "" if g is None else _attr("data-run-ids", " ".join(_run_id(r) for r in g.runs))
        tds = []
        for j, (c, a, k) in enumerate(zip(row, t.align, keys, strict=True)):
            raw = None if g is None or k is None else _raw(report, g, k)
            text = esc(c.text)
            if j == 0 and g is not None:  # the way to the runs behind the row
                text = f'<a href="#group-{i}" title="the runs of this row">{text}</a>'
            sups = "".join(f'<sup><a href="#note-{n}">{n}</a></sup>' for n in c.notes)
            cls = f"{a} best" if c.best else a
            hooks = _attr("data-sort", c.text) + _attr("data-metric", raw is not None and k)
            hooks += _attr("data-value", raw)
            tds.append(f'<td class="{cls}"{hooks}>{f"<b>{text}</b>" if c.best else text}{sups}</td>')
        out.append(f'<tr id="row-{i}" data-row="{i}"{ids}>{"".join(tds)}</tr>')
    out.append("</tbody></table></div>")
    if t.notes:
        out.append('<div class="notes">' + "".join(f'<p id="note-{i}"><sup>{i}</sup> {esc(n)}</p>'
                                                   for i, n in enumerate(t.notes, 1)) + "</div>")
    if t.legend:
        out.append(f'<p class="legend">{esc(t.legend)}</p>')
    return "\n".join(out)


def _attr(name: str, value) -> str:
    """` name="value"`, or nothing for None/False (a float keeps every digit: the raw number)."""
    if value is None or value is False:
        return ""
    return f' {name}="{esc(repr(value) if isinstance(value, float) else str(value))}"'


# -- the figures ------------------------------------------------------------------------------------
def _figures(figures: list[Path], out_dir: Path) -> str:
    if not figures:
        return '<p class="muted">No plots (written without them, e.g. <code>--no-plots</code>).</p>'
    return "\n".join(
        f'<figure class="plot" id="plot-{esc(p.stem)}">{_inline_svg(p.read_text(), p.stem)}'
        f'<figcaption>{esc(p.stem)} (<a href="{_href(p.with_suffix(".png"), out_dir)}">PNG</a>, '
        f'<a href="{_href(p, out_dir)}">SVG</a>)</figcaption></figure>' for p in figures)


SVG_ID = re.compile(r'(\sid="|href="#|url\(#)([^")]+)')


def _inline_svg(svg: str, prefix: str) -> str:
    """matplotlib's SVG file as an element of the page: without the XML prologue and the metadata (the
    date, and namespace URLs), its ids prefixed so that two figures' glyphs and clip paths never clash."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    ids = set(re.findall(r'\sid="([^"]+)"', svg))
    return SVG_ID.sub(lambda m: m[1] + f"{prefix}-{m[2]}" if m[2] in ids else m[0], svg)


# -- the runs behind each row -----------------------------------------------------------------------
def _runs(report: Report, out_dir: Path) -> str:
    out = [_group(report, g, i, out_dir) for i, g in enumerate(report.groups)]
    if report.tuning:
        out.append(f"<details><summary>{len(report.tuning)} tuning runs (they choose each row's "
                   "hyperparameters; never rows of the table)</summary>")
        out.append(_run_table(report, report.tuning, out_dir, "tuning"))
        out.append("</details>")
    return "\n".join(out)


def _label(report: Report, g: Group) -> str:
    return ", ".join(f"{short_axis(a)}={axis_value(g.label.get(a))}" for a in report.axes) or "all runs"


def _group(report: Report, g: Group, i: int, out_dir: Path) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(g.counts.items()))
    back = f' <a href="#row-{i}" class="muted">↑ table</a>' if not report.cols else ""
    return (f'<section class="group" id="group-{i}" data-group="{i}"><h3>{esc(_label(report, g))} '
            f'<span class="muted">({counts})</span>{back}</h3>{_run_table(report, g.runs, out_dir, str(i))}'
            "</section>")


def _run_table(report: Report, runs: list[Run], out_dir: Path, name: str) -> str:
    final = dict.fromkeys(k for r in runs for k in (r.record.get("metrics") or {}))
    metrics = list(report.metrics) + [k for k in final if k not in report.metrics]
    shown = len(report.metrics)  # the table's metrics, then the files, then the other final metrics
    head = ["seed", "status", *(metric_name(m) for m in metrics), "wall time", "run id"]
    head.insert(2 + shown, "files")
    cols = len(head)
    out = [f'<div class="scroll"><table class="sortable runs" data-runs="{esc(name)}"><thead><tr>'
           + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in runs:
        rid, status = _run_id(r), r.status
        tds = [f'<td class="r">{esc(str((r.record.get("spec") or {}).get("seed", "–")))}</td>',
               f'<td class="status status-{esc(status)}">{esc(status)}</td>']
        for m in metrics:
            v = r.value(m)
            tds.append(f'<td class="r"{_attr("data-metric", m)}{_attr("data-value", v)}>{_value(m, v)}</td>')
        wall = r.record.get("wall_time_s")
        tds += [f'<td class="r"{_attr("data-value", wall)}>{"–" if wall is None else f"{wall:.0f} s"}</td>',
                f"<td><code>{esc(rid)}</code></td>"]
        tds.insert(2 + shown, f'<td class="files">{_files(r, out_dir)}</td>')
        out.append(f'<tr data-run-id="{esc(rid)}" data-status="{esc(status)}">{"".join(tds)}</tr>')
        error = r.record.get("error")
        if status in (*FAILURES, DAMAGED) and error:
            text = f"{error.get('type', status)}: {error.get('message', '')}".strip()
            out.append(f'<tr class="error-row" data-error-of="{esc(rid)}"><td colspan="{cols}">'
                       f'<pre class="error">{esc(text)}</pre></td></tr>')
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _run_id(r: Run) -> str:
    return str(r.record.get("run_id") or (r.dir.name if r.dir else "?"))


def _value(metric: str, v: float | None) -> str:
    if v is None:
        return "–"
    if metric in ("params", "macs"):
        return human(v)
    if metric in COST:
        return f"{v:,.0f}"
    return f"{v:.2f}" if "acc" in metric else f"{v:.4g}"


def _files(r: Run, out_dir: Path) -> str:
    """Links to what the run folder holds now; a file not there (yet) is named, greyed."""
    if r.dir is None or not r.dir.is_dir():
        return '<span class="missing">no folder yet</span>'
    out = []
    for k, (name, label) in enumerate(FILES):
        path = r.dir / name
        if path.exists():
            href = _href(path, out_dir) + ("/" if path.is_dir() else "")
            out.append(f'<a href="{href}" data-file="{esc(label)}">{esc(label)}</a>')
        elif k < 3:
            out.append(f'<span class="missing">{esc(label)}</span>')
    return "".join(out)


def _href(path: Path, out_dir: Path) -> str:
    """`path` relative to the page's folder, as a URL."""
    return quote(Path(os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())).as_posix())


# -- the foot: manifest and provenance --------------------------------------------------------------
def _manifest(report: Report, runs: list[Run]) -> str:
    if report.manifest is not None and Path(report.manifest).is_file():
        return (f"<h2>Manifest</h2><p class=\"muted\">{esc(str(report.manifest))}</p>"
                f'<pre id="manifest-text">{esc(Path(report.manifest).read_text())}</pre>')
    first = next((r for r in runs if r.dir is not None and (r.dir / SPEC_FILE).is_file()), None)
    if first is None:
        return '<h2>Manifest</h2><p class="muted">No manifest, and no run folder with a spec.</p>'
    return (f'<h2>Spec</h2><p class="muted">Built from a results folder, not a manifest: the resolved spec '
            f"of run <code>{esc(_run_id(first))}</code> (every run folder holds its own {SPEC_FILE}).</p>"
            f'<pre id="spec-text">{esc((first.dir / SPEC_FILE).read_text())}</pre>')


def _provenance(runs: list[Run]) -> str:
    envs = [r.record["env"] for r in runs if r.record.get("env")]
    if not envs:
        return '<p class="muted">No run has a record with its environment yet.</p>'
    rows = []
    for key in PROVENANCE:
        seen = Counter(_env_text(key, e.get(key)) for e in envs if key in e)
        if not seen:
            continue
        text = "; ".join(f"{v} ({n} runs)" for v, n in seen.most_common()) if len(seen) > 1 else [*seen][0]
        mixed = ' class="mixed"' if len(seen) > 1 else ""  # runs that differ: worth a second look
        rows.append(f'<dt>{esc(key)}</dt><dd data-key="{esc(key)}"{mixed}>{esc(text)}</dd>')
    return (f'<p class="muted">From the <code>env</code> of {len(envs)} run records; where runs differ, '
            f'each value with its count.</p><dl class="provenance">{"".join(rows)}</dl>'
            f'<p class="muted">Page written by vitstudy {esc(_version())}.</p>')


def _env_text(key: str, value) -> str:
    if key == "dirty" and value is not None:  # the commit alone does not say what ran
        return "yes: uncommitted changes" if value else "no"
    return "unknown" if value is None else str(value)


def _version() -> str:
    try:
        return metadata.version("vitstudy")
    except metadata.PackageNotFoundError:
        return "unknown"
