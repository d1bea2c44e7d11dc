"""Comparison tables from the files on disk alone (never an executor's memory), so a report works
while a grid runs, after a crash, and on results copied back from a cluster.

One row per cell without its seed: mean ± sample std (n − 1) over the finished seeds, and n. Seeds that
failed, diverged, ran out of memory, are still running or have not started are counted in a footnote of
their row, never averaged away. A baseline row (the first, or `--baseline head=cls,...`) gets a Δ column
(difference of means); where the manifest carries `expect:` values, a "paper" column and the Δ to it.
The best mean of each metric is marked (bold). Cost columns (params, MACs, measured images/s) sit beside
accuracy. Formats: Markdown, CSV (raw numbers, one column per quantity), LaTeX (booktabs) and HTML.
With `cols` axes the table is pivoted: the first metric, one column per value of those axes.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


def human(n: float) -> str:
    from vitstudy.results.format import human

    return human(n)

METRIC = "test/acc1"
DEFAULT_METRICS = ("test/acc1", "best:test/acc1")
COST = ("params", "macs", "train_img_s", "infer_img_s", "peak_mem_mib")
NOT_DONE = ("failed", "diverged", "oom", "running", "pending")
NAMES = {"test/acc1": "test top-1 (%)", "test/acc5": "test top-5 (%)", "test/loss": "test loss",
         "val/acc1": "val top-1 (%)", "val/acc5": "val top-5 (%)", "val/loss": "val loss",
         "train/loss": "train loss", "params": "params", "macs": "MACs", "train_img_s": "train img/s",
         "infer_img_s": "infer img/s", "peak_mem_mib": "peak mem (MiB)"}


def metric_name(metric: str) -> str:
    if metric.startswith("best:"):
        return NAMES.get(metric[5:], metric[5:]) + " @ best val"
    return NAMES.get(metric, metric)


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class Run:
    """One cell's record as read from disk (status "pending" when it has no metrics.json yet)."""

    record: dict
    dir: Path | None = None
    axes: tuple[tuple[str, Any], ...] | None = None  # from a manifest; None: inferred from the specs
    expect: dict[str, float] = field(default_factory=dict)
    source: str | None = None

    @property
    def status(self) -> str:
        return self.record.get("status", "pending")

    def value(self, metric: str) -> float | None:
        rec = self.record
        if metric.startswith("best:"):
            v = (rec.get("best") or {}).get(metric[5:])
        elif metric in COST:
            v = (rec.get("cost") or {}).get(metric)
        else:
            v = (rec.get("metrics") or {}).get(metric)
        return None if v is None else float(v)


def load_records(grid_dir: Path, cells: Iterable[tuple[str, dict]] | None = None) -> list[dict]:
    """The metrics.json records under a grid folder. With `cells` ((run_id, spec) pairs, e.g. from a
    manifest), exactly those runs in that order, a cell without files counting as pending."""
    grid_dir = Path(grid_dir)
    if cells is None:
        cells = [(p.parent.name, None) for p in sorted(grid_dir.glob("*/metrics.json"))]
    records = []
    for run_id, spec in cells:
        try:
            records.append(json.loads((grid_dir / run_id / "metrics.json").read_text()))
        except FileNotFoundError:
            if spec is not None:
                records.append({"run_id": run_id, "status": "pending", "spec": spec})
    return records


def runs_from_dir(grid_dir: Path) -> list[Run]:
    """Every run folder under `grid_dir` that has a metrics.json."""
    return [Run(json.loads(p.read_text()), p.parent) for p in sorted(Path(grid_dir).glob("*/metrics.json"))]


def runs_from_manifest(manifest: Path, root: Path, smoke: bool = False) -> tuple[list[Run], Path, str]:
    """The manifest's cells, in its order, with their records under `root` (pending where none yet);
    also the folder the report goes to and the grid's name."""
    from vitstudy.config.manifest import load

    grid = load(manifest, smoke=True) if smoke else load(manifest)
    runs = []
    for cell in grid.cells:
        d = grid.cell_dir(root, cell) if hasattr(grid, "cell_dir") else Path(root) / grid.name / cell.run_id
        try:
            record = json.loads((d / "metrics.json").read_text())
        except FileNotFoundError:
            record = {"run_id": cell.run_id, "status": "pending", "spec": cell.spec.model_dump(mode="json")}
        runs.append(Run(record, d, tuple(cell.axes), dict(getattr(cell, "expect", {}) or {}),
                        getattr(cell, "expect_source", None)))
    folder = getattr(grid, "folder", "") or grid.name
    return runs, Path(root) / folder, folder


# -- grouping --------------------------------------------------------------------------------------
def _flatten(spec: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def _identity(spec: dict) -> dict[str, Any]:
    """The flattened spec without what does not change a result's row: seed, grid name, logging."""
    flat = _flatten(spec)
    return {k: v for k, v in flat.items() if k not in ("seed", "grid") and not k.startswith("log.")}


@dataclass
class Group:
    """One row: the runs of one cell across seeds."""

    label: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [v for r in self.runs if r.status == "done" and (v := r.value(metric)) is not None]

    def mean(self, metric: str) -> float | None:
        vals = self.values(metric)
        return statistics.fmean(vals) if vals else None

    def std(self, metric: str) -> float | None:
        vals = self.values(metric)
        return statistics.stdev(vals) if len(vals) > 1 else None

    def cost(self, key: str) -> float | None:
        """Params and MACs from any record (known before training); measured ones averaged over seeds."""
        vals = self.values(key) or [v for r in self.runs if (v := r.value(key)) is not None]
        if not vals and key in ("params", "macs") and self.runs:
            return _static_cost(self.runs[0].record.get("spec")).get(key)
        return statistics.fmean(vals) if vals else None

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.runs)

    @property
    def expect(self) -> dict[str, float]:
        return next((r.expect for r in self.runs if r.expect), {})

    @property
    def source(self) -> str | None:
        return next((r.source for r in self.runs if r.source), None)


def _static_cost(spec: dict | None) -> dict:
    """Params and MACs of a cell that has not run (counted on the meta device, no training)."""
    try:
        from vitstudy.config.spec import ModelSpec
        from vitstudy.models.cost import model_cost

        return model_cost(ModelSpec(**spec["model"])).as_dict()
    except Exception:  # noqa: BLE001 - a spec from an older version: its cost is simply unknown
        return {}


def group_runs(runs: list[Run]) -> tuple[list[str], list[Group]]:
    """The axes that name rows and the rows, in first-appearance order."""
    if runs and all(r.axes is not None for r in runs):
        axes = list(dict.fromkeys(k for r in runs for k, _ in r.axes))
        labels = [dict(r.axes) for r in runs]
    else:
        flats = [_identity(r.record.get("spec") or {}) for r in runs]
        keys = sorted({k for f in flats for k in f})
        axes = [k for k in keys if len({f.get(k) for f in flats}) > 1]
        if "model.preset" in axes:  # a preset determines its own fields: name it, not them
            axes = ["model.preset"] + [k for k in axes if k != "model.preset" and not _determined(flats, k)]
        labels = [{k: f.get(k) for k in axes} for f in flats]
    groups: dict[tuple, Group] = {}
    for run, label in zip(runs, labels, strict=True):
        key = tuple((k, _hashable(label.get(k))) for k in axes)
        groups.setdefault(key, Group({k: label.get(k) for k in axes})).runs.append(run)
    return axes, list(groups.values())


def _determined(flats: list[dict], key: str) -> bool:
    seen: dict = {}
    for f in flats:
        value = _hashable(f.get(key))
        if seen.setdefault(_hashable(f.get("model.preset")), value) != value:
            return False
    return True


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _short(axis: str) -> str:
    return axis.rsplit(".", 1)[-1]


def _resolve_axes(names: list[str], axes: list[str]) -> list[str]:
    """Dotted axis names from user names: a full key (model.head) or its last part (head)."""
    out = []
    for name in names:
        match = [a for a in axes if a == name or _short(a) == name]
        if not match:
            raise ValueError(f"unknown axis '{name}'; the axes that vary here: {', '.join(axes) or 'none'}")
        out.append(match[0])
    return out


# -- the table -------------------------------------------------------------------------------------
@dataclass
class Cell:
    text: str
    best: bool = False
    notes: list[int] = field(default_factory=list)  # footnote numbers


@dataclass
class Table:
    header: list[str]
    align: list[str]  # "l" or "r" per column
    rows: list[list[Cell]]
    notes: list[str]  # numbered footnotes, referenced from cells
    title: str = ""
    legend: str = ""  # an unnumbered note under the table


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def _best(values: list[float | None], metric: str) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    lower = metric.endswith("loss")
    return round(min(vals) if lower else max(vals), 2)


@dataclass
class Report:
    """A summary of runs: groups (rows), the axes naming them, the metrics shown, the baseline."""

    axes: list[str]
    groups: list[Group]
    metrics: list[str]
    baseline: Group | None
    cols: list[str] = field(default_factory=list)
    title: str = ""

    def status_note(self, g: Group) -> str | None:
        c = g.counts
        bad = {s: n for s, n in c.items() if s != "done"}
        if not bad:
            return None
        parts = [f"{n} {s}" for s, n in sorted(bad.items())]
        errors = sorted({r.record["error"]["message"].splitlines()[0][:80] for r in g.runs
                         if r.status in ("failed", "diverged", "oom") and r.record.get("error")})
        why = f" ({'; '.join(errors)})" if errors else ""
        return f"{', '.join(parts)} of {sum(c.values())} seeds, not in the mean{why}"

    def delta(self, g: Group, metric: str) -> float | None:
        base = self.baseline.mean(metric) if self.baseline else None
        mine = g.mean(metric)
        return None if base is None or mine is None else mine - base

    def table(self) -> Table:
        return self._pivot() if self.cols else self._long()

    def _label(self, g: Group, axes: list[str]) -> list[Cell]:
        return [Cell(_axis_value(g.label.get(a))) for a in axes]

    def _long(self) -> Table:
        # a column no run has a value for (e.g. throughput in schema-1 records) is left out
        metrics = [m for i, m in enumerate(self.metrics) if i == 0 or any(g.values(m) for g in self.groups)]
        speeds = [c for c in ("train_img_s", "infer_img_s") if any(g.cost(c) for g in self.groups)]
        notes: list[str] = []
        header = [_short(a) for a in self.axes]
        align = ["l"] * len(self.axes)
        paper = {m for m in metrics + ["params", "macs"] if any(m in g.expect for g in self.groups)}
        for i, m in enumerate(metrics):
            header += [metric_name(m)] + (["n"] if i == 0 else [])
            align += ["r"] + (["r"] if i == 0 else [])
            if i == 0 and self.baseline is not None:
                header.append("Δ")
                align.append("r")
            if m in paper:
                header += ["paper", "Δ paper"]
                align += ["r", "r"]
        for c in ("params", "macs"):
            header.append(metric_name(c))
            align.append("r")
            if c in paper:
                header += ["paper"]
                align += ["r"]
        header += [metric_name(c) for c in speeds]
        align += ["r"] * len(speeds)
        best = {m: _best([g.mean(m) for g in self.groups], m) for m in metrics}
        sources: dict[str, int] = {}
        rows = []
        for g in self.groups:
            row = self._label(g, self.axes)
            for i, m in enumerate(metrics):
                mean = g.mean(m)
                cell = Cell(_fmt(mean, g.std(m)), best=mean is not None and round(mean, 2) == best[m])
                if i == 0 and (note := self.status_note(g)):
                    notes.append(note)
                    cell.notes.append(len(notes))
                row.append(cell)
                if i == 0:
                    row.append(Cell(str(len(g.values(m)))))
                    if self.baseline is not None:
                        row.append(Cell("–" if g is self.baseline else _signed(self.delta(g, m))))
                if m in paper:
                    ref = g.expect.get(m)
                    row += [self._paper_cell(ref, g, sources, notes),
                            Cell(_signed(None if ref is None or mean is None else mean - ref))]
            for c in ("params", "macs"):
                v = g.cost(c)
                row.append(Cell(human(v) if v else "–"))
                if c in paper:
                    ref = g.expect.get(c)
                    row.append(self._paper_cell(ref, g, sources, notes, human))
            for c in speeds:
                v = g.cost(c)
                row.append(Cell(f"{v:,.0f}" if v else "–"))
            rows.append(row)
        if self.baseline is not None:
            base = ", ".join(f"{_short(a)}={self.baseline.label.get(a)}" for a in self.axes) or "the only row"
            legend = (f"Δ: difference of the mean to the baseline row's ({base}). Bold: the best mean of a "
                      "column; ±: the sample standard deviation over seeds; n: the finished seeds.")
        else:
            legend = "Bold: the best mean of a column; ±: the sample std over seeds; n: the finished seeds."
        return Table(header, align, rows, notes, self.title, legend)

    def _paper_cell(self, ref, g: Group, sources: dict, notes: list, fmt=lambda v: f"{v:.2f}") -> Cell:
        if ref is None:
            return Cell("–")
        cell = Cell(fmt(ref))
        if g.source:
            if g.source not in sources:
                notes.append(f"paper: {g.source}")
                sources[g.source] = len(notes)
            cell.notes.append(sources[g.source])
        return cell

    def _pivot(self) -> Table:
        m = self.metrics[0]
        row_axes = [a for a in self.axes if a not in self.cols]
        col_keys = list(dict.fromkeys(tuple(g.label.get(a) for a in self.cols) for g in self.groups))
        row_keys = list(dict.fromkeys(tuple(g.label.get(a) for a in row_axes) for g in self.groups))
        by = {(tuple(g.label.get(a) for a in row_axes), tuple(g.label.get(a) for a in self.cols)): g
              for g in self.groups}
        header = [_short(a) for a in row_axes] + [
            ", ".join(f"{_short(a)}={v}" for a, v in zip(self.cols, ck, strict=True)) for ck in col_keys]
        align = ["l"] * len(row_axes) + ["r"] * len(col_keys)
        best = {ck: _best([by[rk, ck].mean(m) for rk in row_keys if (rk, ck) in by], m) for ck in col_keys}
        notes: list[str] = []
        rows = []
        for rk in row_keys:
            row = [Cell(_axis_value(v)) for v in rk]
            for ck in col_keys:
                g = by.get((rk, ck))
                if g is None:
                    row.append(Cell("·"))
                    continue
                mean = g.mean(m)
                n = len(g.values(m))
                cell = Cell(_fmt(mean, g.std(m)) + (f" (n={n})" if n != len(g.runs) else ""),
                            best=mean is not None and round(mean, 2) == best[ck])
                if note := self.status_note(g):
                    notes.append(note)
                    cell.notes.append(len(notes))
                row.append(cell)
            rows.append(row)
        legend = (f"{metric_name(m)}: mean ± sample std over seeds; bold: the best of a column; "
                  "Δ and cost columns are in the unpivoted table.")
        return Table(header, align, rows, notes, self.title, legend)

    def render(self, fmt: str) -> str:
        if fmt == "csv":
            return self.csv()
        return {"md": to_markdown, "tex": to_latex, "html": to_html}[fmt](self.table())

    def csv(self) -> str:
        """Raw numbers (no rounding beyond 6 decimals), one column per quantity, one row per group."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        head = [_short(a) for a in self.axes] + ["baseline", "n_seeds"]
        head += [f"n_{s}" for s in ("done",) + NOT_DONE]
        for m in self.metrics:
            head += [f"{m}_{q}" for q in ("mean", "std", "n", "best", "delta", "paper", "delta_paper")]
        head += list(COST)
        w.writerow(head)
        best = {m: _best([g.mean(m) for g in self.groups], m) for m in self.metrics}
        for g in self.groups:
            c = g.counts
            row = [g.label.get(a) for a in self.axes] + [int(g is self.baseline), len(g.runs)]
            row += [c.get(s, 0) for s in ("done",) + NOT_DONE]
            for m in self.metrics:
                mean, ref = g.mean(m), g.expect.get(m)
                row += [_num(mean), _num(g.std(m)), len(g.values(m)),
                        int(mean is not None and round(mean, 2) == best[m]), _num(self.delta(g, m)),
                        _num(ref), _num(None if ref is None or mean is None else mean - ref)]
            row += [_num(g.cost(k)) for k in COST]
            w.writerow(row)
        return buf.getvalue()


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.6f}".rstrip("0").rstrip(".") if isinstance(x, float) else str(x)


def summarize(runs: list[Run], metrics: Iterable[str] = DEFAULT_METRICS, rows: list[str] | None = None,
              cols: list[str] | None = None, baseline: dict[str, str] | None = None,
              title: str = "") -> Report:
    """Group runs into rows; `rows` orders/sorts by those axes first, `cols` pivots, `baseline`
    ({axis: value}) picks the reference row (default: the first row)."""
    axes, groups = group_runs(runs)
    rows = _resolve_axes(rows or [], axes)
    cols = _resolve_axes(cols or [], axes)
    axes = rows + [a for a in axes if a not in rows and a not in cols] + cols
    if rows:
        order = {a: {} for a in rows}
        for g in groups:
            for a in rows:
                order[a].setdefault(_hashable(g.label.get(a)), len(order[a]))
        groups.sort(key=lambda g: tuple(order[a][_hashable(g.label.get(a))] for a in rows))
    base = groups[0] if groups else None
    if baseline:
        want = {_resolve_axes([k], axes)[0]: v for k, v in baseline.items()}
        found = [g for g in groups if all(str(g.label.get(k)) == str(v) for k, v in want.items())]
        if not found:
            raise ValueError(f"no row matches the baseline {baseline}")
        base = found[0]
    return Report(axes, groups, list(metrics), base, cols, title)


# -- formats ---------------------------------------------------------------------------------------
def to_markdown(t: Table) -> str:
    def cell(c: Cell) -> str:
        s = f"**{c.text}**" if c.best else c.text
        return s + "".join(f" [{n}]" for n in c.notes)

    lines = ["| " + " | ".join(t.header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in t.align) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
    foot = [f"[{i}] {n}" for i, n in enumerate(t.notes, 1)] + ([t.legend] if t.legend else [])
    if foot:
        lines += [""] + [f + "  " for f in foot[:-1]] + foot[-1:]  # two spaces: a Markdown line break
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "·": r"$\cdot$", "—": "---", "×": r"$\times$"}


def tex_escape(s: str) -> str:
    out = "".join(_TEX.get(ch, ch) for ch in s)
    return out.encode("ascii", "replace").decode()  # pdflatex-safe


def to_latex(t: Table) -> str:
    """A booktabs table that compiles as is (\\usepackage{booktabs}); pure ASCII."""

    def cell(c: Cell) -> str:
        s = tex_escape(c.text)
        s = rf"\textbf{{{s}}}" if c.best else s
        return s + "".join(rf"\textsuperscript{{{n}}}" for n in c.notes)

    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if t.title:
        lines.append(rf"\caption{{{tex_escape(t.title)}}}")
    lines += [rf"\begin{{tabular}}{{{''.join(t.align)}}}", r"\toprule",
              " & ".join(tex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.notes or t.legend:
        lines.append(r"\par\smallskip\footnotesize")
        lines += [rf"\textsuperscript{{{i}}}{tex_escape(n)}\par" for i, n in enumerate(t.notes, 1)]
        lines += [tex_escape(t.legend) + r"\par"] if t.legend else []
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(t: Table) -> str:
    def cell(c: Cell) -> str:
        s = html.escape(c.text)
        s = f"<b>{s}</b>" if c.best else s
        return s + "".join(f"<sup>{n}</sup>" for n in c.notes)

    def tag(name: str, a: str) -> str:
        return f'<{name} style="text-align:{"right" if a == "r" else "left"}">'

    out = ["<table>"]
    if t.title:
        out.append(f"<caption>{html.escape(t.title)}</caption>")
    out.append("<thead><tr>" + "".join(f"{tag('th', a)}{html.escape(h)}</th>"
                                       for h, a in zip(t.header, t.align, strict=True)) + "</tr></thead>")
    out.append("<tbody>")
    for row in t.rows:
        tds = "".join(f"{tag('td', a)}{cell(c)}</td>" for c, a in zip(row, t.align, strict=True))
        out.append(f"<tr>{tds}</tr>")
    out.append("</tbody>")
    out.append("</table>")
    out += [f"<p><sup>{i}</sup> {html.escape(n)}</p>" for i, n in enumerate(t.notes, 1)]
    out += [f"<p>{html.escape(t.legend)}</p>"] if t.legend else []
    return "\n".join(out) + "\n"


def write(report: Report, out_dir: Path, plots: bool = True) -> list[Path]:
    """table.{md,csv,tex,html} and (with `plots`) the figures, in `out_dir`; returns the paths."""
    from vitstudy import runfolder as files

    written = []
    for fmt in ("md", "csv", "tex", "html"):
        path = Path(out_dir) / f"table.{fmt}"
        files.write_text(path, report.render(fmt))
        written.append(path)
    if plots:
        from vitstudy.results.plots import plot_all

        written += plot_all(report, Path(out_dir))
    return written


def markdown_table(records: list[dict], metric: str = METRIC) -> str:
    """The Markdown table of plain records (as `load_records` returns them)."""
    return summarize([Run(r) for r in records], metrics=[metric]).render("md")


def for_manifest(manifest: Path, root: Path, smoke: bool = False, **options) -> tuple[Report, Path]:
    """The report of a manifest's cells under the results root `root`, and the folder it belongs in."""
    runs, out_dir, name = runs_from_manifest(manifest, root, smoke=smoke)
    return summarize(runs, title=name, **options), out_dir


def for_source(source: Path, root: Path, **options) -> tuple[Report, Path]:
    """A report of a results folder (every run in it) or of a manifest file (its cells, done or not)."""
    source = Path(source)
    if source.is_dir():
        runs = runs_from_dir(source)
        if not runs:
            raise ValueError(f"{source}: no run folders with a metrics.json")
        return summarize(runs, title=source.name, **options), source
    return for_manifest(source, root, **options)


def _axis_value(value: Any) -> str:
    """An axis value as a table shows it: an option a variant does not have (None) is a dash."""
    return "–" if value is None else str(value)
