"""Comparison tables from the files on disk alone: a Report (rows, metrics, baseline) and the Table it
lays out, which vitstudy.results.render writes as Markdown, LaTeX or HTML.

One row per cell without its seed: mean ± sample std (n − 1) over the finished seeds, and n. Seeds that
failed, diverged, ran out of memory, are still running or have not started are counted in a footnote of
their row, never averaged away. A baseline row (the first, or `--baseline head=cls,...`) gets a Δ column
(difference of means); where the manifest carries `expect:` values, a "paper" column and the Δ to it.
The best mean of each metric is marked (bold). Cost columns (params, MACs, measured images/s) sit beside
accuracy. With `cols` axes the table is pivoted: the first metric, one column per value of those axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from vitstudy.results.format import human
from vitstudy.results.groups import Group, axis_value, group_runs, hashable, resolve_axes, short_axis
from vitstudy.results.runs import DEFAULT_METRICS, Run, metric_name, runs_from_dir, runs_from_manifest
from vitstudy.runfolder import FAILURES, METRICS_FILE

SPEEDS = ("train_img_s", "infer_img_s")


@dataclass
class TableCell:
    text: str
    best: bool = False
    notes: list[int] = field(default_factory=list)  # footnote numbers


@dataclass
class Table:
    header: list[str]
    align: list[str]  # "l" or "r" per column
    rows: list[list[TableCell]]
    notes: list[str]  # numbered footnotes, referenced from cells
    title: str = ""
    legend: str = ""  # an unnumbered note under the table


def mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def best_of(values: list[float | None], metric: str) -> float | None:
    """The best of a column's means at the table's precision (the lowest for a loss, else the highest)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    lower = metric.endswith("loss")
    return round(min(vals) if lower else max(vals), 2)


def is_best(mean: float | None, best: float | None) -> bool:
    return mean is not None and round(mean, 2) == best


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
                         if r.status in FAILURES and r.record.get("error")})
        why = f" ({'; '.join(errors)})" if errors else ""
        return f"{', '.join(parts)} of {sum(c.values())} seeds, not in the mean{why}"

    def delta(self, g: Group, metric: str) -> float | None:
        base = self.baseline.mean(metric) if self.baseline else None
        mine = g.mean(metric)
        return None if base is None or mine is None else mine - base

    def table(self) -> Table:
        return self._pivot() if self.cols else self._long()

    # -- the long table: one row per group, a column per quantity ----------------------------------
    def _long(self) -> Table:
        # a column no run has a value for (e.g. throughput in schema-1 records) is left out
        metrics = [m for i, m in enumerate(self.metrics) if i == 0 or any(g.values(m) for g in self.groups)]
        speeds = [c for c in SPEEDS if any(g.cost(c) for g in self.groups)]
        paper = {m for m in metrics + ["params", "macs"] if any(m in g.expect for g in self.groups)}
        header, align = self._long_header(metrics, speeds, paper)
        best = {m: best_of([g.mean(m) for g in self.groups], m) for m in metrics}
        notes: list[str] = []
        sources: dict[str, int] = {}  # a paper's footnote number
        rows = [self._long_row(g, metrics, speeds, paper, best, notes, sources) for g in self.groups]
        return Table(header, align, rows, notes, self.title, self._long_legend())

    def _long_header(self, metrics: list[str], speeds: list[str], paper: set[str]) -> tuple[list, list]:
        header = [short_axis(a) for a in self.axes]
        align = ["l"] * len(self.axes)

        def add(*titles: str) -> None:
            header.extend(titles)
            align.extend("r" * len(titles))

        for i, m in enumerate(metrics):
            add(metric_name(m), *(["n"] if i == 0 else []))
            if i == 0 and self.baseline is not None:
                add("Δ")
            if m in paper:
                add("paper", "Δ paper")
        for c in ("params", "macs"):
            add(metric_name(c), *(["paper"] if c in paper else []))
        add(*(metric_name(c) for c in speeds))
        return header, align

    def _long_row(self, g: Group, metrics: list[str], speeds: list[str], paper: set[str], best: dict,
                  notes: list[str], sources: dict[str, int]) -> list[TableCell]:
        row = [TableCell(axis_value(g.label.get(a))) for a in self.axes]
        for i, m in enumerate(metrics):
            mean = g.mean(m)
            cell = TableCell(mean_std(mean, g.std(m)), best=is_best(mean, best[m]))
            if i == 0 and (note := self.status_note(g)):
                notes.append(note)
                cell.notes.append(len(notes))
            row.append(cell)
            if i == 0:
                row.append(TableCell(str(len(g.values(m)))))
                if self.baseline is not None:
                    row.append(TableCell("–" if g is self.baseline else signed(self.delta(g, m))))
            if m in paper:
                ref = g.expect.get(m)
                row += [self._paper_cell(ref, g, sources, notes),
                        TableCell(signed(None if ref is None or mean is None else mean - ref))]
        for c in ("params", "macs"):
            v = g.cost(c)
            row.append(TableCell(human(v) if v else "–"))
            if c in paper:
                row.append(self._paper_cell(g.expect.get(c), g, sources, notes, human))
        for c in speeds:
            v = g.cost(c)
            row.append(TableCell(f"{v:,.0f}" if v else "–"))
        return row

    def _paper_cell(self, ref, g: Group, sources: dict, notes: list, fmt=lambda v: f"{v:.2f}") -> TableCell:
        if ref is None:
            return TableCell("–")
        cell = TableCell(fmt(ref))
        if g.source:
            if g.source not in sources:
                notes.append(f"paper: {g.source}")
                sources[g.source] = len(notes)
            cell.notes.append(sources[g.source])
        return cell

    def _long_legend(self) -> str:
        if self.baseline is None:
            return "Bold: the best mean of a column; ±: the sample std over seeds; n: the finished seeds."
        base = ", ".join(f"{short_axis(a)}={self.baseline.label.get(a)}" for a in self.axes) or "the only row"
        return (f"Δ: difference of the mean to the baseline row's ({base}). Bold: the best mean of a "
                "column; ±: the sample standard deviation over seeds; n: the finished seeds.")

    # -- the pivoted table: the first metric, one column per value of the `cols` axes ----------------
    def _pivot(self) -> Table:
        m = self.metrics[0]
        row_axes = [a for a in self.axes if a not in self.cols]
        col_keys = list(dict.fromkeys(tuple(g.label.get(a) for a in self.cols) for g in self.groups))
        row_keys = list(dict.fromkeys(tuple(g.label.get(a) for a in row_axes) for g in self.groups))
        by = {(tuple(g.label.get(a) for a in row_axes), tuple(g.label.get(a) for a in self.cols)): g
              for g in self.groups}
        header = [short_axis(a) for a in row_axes] + [
            ", ".join(f"{short_axis(a)}={v}" for a, v in zip(self.cols, ck, strict=True)) for ck in col_keys]
        align = ["l"] * len(row_axes) + ["r"] * len(col_keys)
        best = {ck: best_of([by[rk, ck].mean(m) for rk in row_keys if (rk, ck) in by], m) for ck in col_keys}
        notes: list[str] = []
        rows = []
        for rk in row_keys:
            row = [TableCell(axis_value(v)) for v in rk]
            for ck in col_keys:
                g = by.get((rk, ck))
                row.append(TableCell("·") if g is None else self._pivot_cell(g, m, best[ck], notes))
            rows.append(row)
        legend = (f"{metric_name(m)}: mean ± sample std over seeds; bold: the best of a column; "
                  "Δ and cost columns are in the unpivoted table.")
        return Table(header, align, rows, notes, self.title, legend)

    def _pivot_cell(self, g: Group, m: str, best: float | None, notes: list[str]) -> TableCell:
        mean = g.mean(m)
        n = len(g.values(m))
        cell = TableCell(mean_std(mean, g.std(m)) + (f" (n={n})" if n != len(g.runs) else ""),
                         best=is_best(mean, best))
        if note := self.status_note(g):
            notes.append(note)
            cell.notes.append(len(notes))
        return cell


def summarize(runs: list[Run], metrics: Iterable[str] = DEFAULT_METRICS, rows: list[str] | None = None,
              cols: list[str] | None = None, baseline: dict[str, str] | None = None,
              title: str = "") -> Report:
    """Group runs into rows; `rows` orders/sorts by those axes first, `cols` pivots, `baseline`
    ({axis: value}) picks the reference row (default: the first row)."""
    axes, groups = group_runs(runs)
    rows = resolve_axes(rows or [], axes)
    cols = resolve_axes(cols or [], axes)
    axes = rows + [a for a in axes if a not in rows and a not in cols] + cols
    if rows:
        order = {a: {} for a in rows}
        for g in groups:
            for a in rows:
                order[a].setdefault(hashable(g.label.get(a)), len(order[a]))
        groups.sort(key=lambda g: tuple(order[a][hashable(g.label.get(a))] for a in rows))
    base = groups[0] if groups else None
    if baseline:
        want = {resolve_axes([k], axes)[0]: v for k, v in baseline.items()}
        found = [g for g in groups if all(str(g.label.get(k)) == str(v) for k, v in want.items())]
        if not found:
            raise ValueError(f"no row matches the baseline {baseline}")
        base = found[0]
    return Report(axes, groups, list(metrics), base, cols, title)


def for_manifest(manifest: Path, root: Path, smoke: bool = False, metrics: Iterable[str] = DEFAULT_METRICS,
                 rows: list[str] | None = None, cols: list[str] | None = None,
                 baseline: dict[str, str] | None = None) -> tuple[Report, Path]:
    """The report of a manifest's cells under the results root `root`, and the folder it belongs in."""
    runs, out_dir, name = runs_from_manifest(manifest, root, smoke=smoke)
    return summarize(runs, metrics, rows, cols, baseline, title=name), out_dir


def for_source(source: Path, root: Path, metrics: Iterable[str] = DEFAULT_METRICS,
               rows: list[str] | None = None, cols: list[str] | None = None,
               baseline: dict[str, str] | None = None) -> tuple[Report, Path]:
    """A report of a results folder (every run in it) or of a manifest file (its cells, done or not)."""
    source = Path(source)
    if not source.is_dir():
        return for_manifest(source, root, metrics=metrics, rows=rows, cols=cols, baseline=baseline)
    runs = runs_from_dir(source)
    if not runs:
        raise ValueError(f"{source}: no run folders with a {METRICS_FILE}")
    return summarize(runs, metrics, rows, cols, baseline, title=source.name), source
