"""Comparison tables from the files on disk alone: a Report (rows, metrics, baseline) and the Table it
lays out, which vitstudy.results.render writes as Markdown, LaTeX or HTML.

One row per cell without its seed: mean ± sample std (n − 1) over the finished seeds, and n. Seeds that
failed, diverged, ran out of memory, are still running or have not started are counted in a footnote of
their row, never averaged away. Against a baseline row (the first, or `--baseline head=cls,...`) the
first metric gets Δ with its 95% CI, the Holm-corrected p-value (`*`: significant) and, for a Δ that
is not significant, the seeds that would detect it (vitstudy.results.compare). Bold: per metric, the
best set, the rows not significantly worse than the top one. Where the manifest carries `expect:`
values, a "paper" column and the Δ to it. A tuned grid shows the values its tuning chose, a column per
tuned key; its tuning runs are kept aside (a plot draws them), never rows. Cost columns (params, MACs,
measured images/s) sit beside accuracy. With `cols` axes the table is pivoted: the first metric, one
column per value of those axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from vitstudy.results.compare import BEST_RULE, TESTS_RULE, RowStats, best_set, column
from vitstudy.results.format import human, mean_std, p_text, signed, value_text
from vitstudy.results.groups import Group, axis_value, group_runs, hashable, resolve_axes, short_axis
from vitstudy.results.runs import DEFAULT_METRICS, Run, metric_name, runs_from_dir, runs_from_manifest
from vitstudy.results.stats import MAX_SEEDS
from vitstudy.runfolder import DAMAGED, FAILURES, METRICS_FILE

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


def power_text(s: RowStats) -> str:
    """Seeds per row for 80% power, else (beyond MAX_SEEDS) the smallest detectable |Δ| now."""
    if s.seeds is not None:
        return str(s.seeds)
    return "–" if s.detectable is None else f">{MAX_SEEDS}; MDE {s.detectable:.2f}"


def note(notes: list[str], text: str) -> int:
    """The number of footnote `text`, added once however many cells refer to it."""
    if text not in notes:
        notes.append(text)
    return notes.index(text) + 1


def split_of(metric: str) -> str | None:
    """The split an accuracy is measured on ("test" for test/acc1 and best:test/acc1), else None."""
    name = metric.removeprefix("best:").split("@")[0]
    return name.split("/")[0] if "/" in name and "/acc" in name else None


@dataclass
class Report:
    """A summary of runs: groups (rows), the axes naming them, the metrics shown, the baseline."""

    axes: list[str]
    groups: list[Group]
    metrics: list[str]
    baseline: Group | None
    cols: list[str] = field(default_factory=list)
    title: str = ""
    tuning: list[Run] = field(default_factory=list)  # a tuned grid's tuning runs: a plot, never rows
    manifest: Path | None = None  # the manifest it was built from (report.html shows its text), if any
    _stats: dict[str, list[RowStats]] = field(default_factory=dict, init=False, repr=False)  # per metric

    def status_note(self, g: Group) -> str | None:
        c = g.counts
        bad = {s: n for s, n in c.items() if s != "done"}
        if not bad:
            return None
        parts = [f"{n} {s}" for s, n in sorted(bad.items())]
        errors = sorted({r.record["error"]["message"].splitlines()[0][:80] for r in g.runs
                         if r.status in (*FAILURES, DAMAGED) and r.record.get("error")})
        why = f" ({'; '.join(errors)})" if errors else ""
        return f"{', '.join(parts)} of {sum(c.values())} seeds, not in the mean{why}"

    def delta(self, g: Group, metric: str) -> float | None:
        """The difference of means to the baseline (the Δ of a row that cannot be tested)."""
        base = self.baseline.mean(metric) if self.baseline else None
        mine = g.mean(metric)
        return None if base is None or mine is None else mine - base

    def stats(self, metric: str) -> list[RowStats]:
        """Every row's comparison with the baseline and best-set membership for `metric` (computed once)."""
        if metric not in self._stats:
            self._stats[metric] = column(self.groups, self.baseline, metric)
        return self._stats[metric]

    @property
    def tuned_keys(self) -> list[str]:
        """The keys a tuned grid's tuning chose (train.lr, ...), in first-appearance order."""
        return list(dict.fromkeys(k for g in self.groups for r in g.runs
                                  for k in (r.record.get("tuned") or {}).get("keys") or {}))

    def split_sizes(self, split: str) -> list[int]:
        return sorted({n for g in self.groups if (n := g.split_size(split))})

    def table(self) -> Table:
        return self._pivot() if self.cols else self._long()

    # -- the long table: one row per group, a column per quantity ----------------------------------
    def _long(self) -> Table:
        # a column no run has a value for (e.g. throughput in schema-1 records) is left out
        metrics = [m for i, m in enumerate(self.metrics) if i == 0 or any(g.values(m) for g in self.groups)]
        speeds = [c for c in SPEEDS if any(g.cost(c) for g in self.groups)]
        paper = {m for m in metrics + ["params", "macs"] if any(m in g.expect for g in self.groups)}
        header, align = self._long_header(metrics, speeds, paper)
        notes: list[str] = []
        rows = [self._long_row(i, g, metrics, speeds, paper, notes) for i, g in enumerate(self.groups)]
        return Table(header, align, rows, notes, self.title, self._long_legend(metrics[0]))

    def _long_header(self, metrics: list[str], speeds: list[str], paper: set[str]) -> tuple[list, list]:
        header = [short_axis(a) for a in self.axes] + [f"{short_axis(k)} (tuned)" for k in self.tuned_keys]
        align = ["l"] * len(header)

        def add(*titles: str) -> None:
            header.extend(titles)
            align.extend("r" * len(titles))

        for i, m in enumerate(metrics):
            add(metric_name(m), *(["n"] if i == 0 else []))
            if i == 0 and self.baseline is not None:
                add("Δ [95% CI]", "p (Holm)", "seeds for 80% power")
            if m in paper:
                add("paper", "Δ paper")
        for c in ("params", "macs"):
            add(metric_name(c), *(["paper"] if c in paper else []))
        add(*(metric_name(c) for c in speeds))
        return header, align

    def _long_row(self, i: int, g: Group, metrics: list[str], speeds: list[str], paper: set[str],
                  notes: list[str]) -> list[TableCell]:
        row = [TableCell(axis_value(g.label.get(a))) for a in self.axes]
        row += [self._tuned_cell(g, k, notes) for k in self.tuned_keys]
        for j, m in enumerate(metrics):
            mean = g.mean(m)
            cell = TableCell(mean_std(mean, g.std(m)), best=self.stats(m)[i].best)
            if j == 0 and (status := self.status_note(g)):
                cell.notes.append(note(notes, status))
            row.append(cell)
            if j == 0:
                row.append(TableCell(str(len(g.values(m)))))
                if self.baseline is not None:
                    row += self._test_cells(g, m, self.stats(m)[i], notes)
            if m in paper:
                ref = g.expect.get(m)
                row += [self._paper_cell(ref, g, notes),
                        TableCell(signed(None if ref is None or mean is None else mean - ref))]
        for c in ("params", "macs"):
            v = g.cost(c)
            row.append(TableCell(human(v) if v else "–"))
            if c in paper:
                row.append(self._paper_cell(g.expect.get(c), g, notes, human))
        for c in speeds:
            v = g.cost(c)
            row.append(TableCell(f"{v:,.0f}" if v else "–"))
        return row

    def _test_cells(self, g: Group, m: str, s: RowStats, notes: list[str]) -> list[TableCell]:
        """Δ [95% CI] (`*`: significant), p (Holm) and seeds for 80% power of a row against the baseline."""
        if g is self.baseline:
            return [TableCell("–"), TableCell("–"), TableCell("–")]
        c = s.vs_base
        delta = c.delta if c else self.delta(g, m)  # fewer than two seeds on a side: untested
        ci = "" if c is None else f" [{signed(c.lo)}, {signed(c.hi)}]" + ("*" if s.significant else "")
        cell = TableCell(signed(delta) + ci)
        if c and c.test == "welch":
            cell.notes.append(note(notes, "Welch's t-test: this row and the baseline did not finish the "
                                          "same seeds"))
        if c and c.constant:
            cell.notes.append(note(notes, "the same Δ for every seed (no spread): t is infinite and p = 0, "
                                          "as scipy computes it; more seeds may show a spread"))
        split = split_of(m)
        size = split and (g.split_size(split) or self.baseline.split_size(split))
        if size and delta is not None and 100 / size > abs(delta):
            cell.notes.append(note(notes, f"|Δ| is smaller than one {split} image ({100 / size:.2f} points)"))
        return [cell, TableCell(p_text(s.p_holm)), TableCell(power_text(s))]

    def _tuned_cell(self, g: Group, key: str, notes: list[str]) -> TableCell:
        """The values the tuning chose for `key` in this row; a note where one is the edge of its range."""
        cell = TableCell(", ".join(value_text(v) for v in g.tuned(key)) or "–")
        for value, side in g.tuned_edges(key):
            cell.notes.append(note(notes, f"{short_axis(key)} {value_text(value)} is the {side} value tuned: "
                                          "widen the range"))
        return cell

    def _paper_cell(self, ref, g: Group, notes: list, fmt=lambda v: f"{v:.2f}") -> TableCell:
        if ref is None:
            return TableCell("–")
        cell = TableCell(fmt(ref))
        if g.source:
            cell.notes.append(note(notes, f"paper: {g.source}"))
        return cell

    def _long_legend(self, metric: str) -> str:
        parts = []
        if self.baseline is not None:
            base = ", ".join(f"{short_axis(a)}={self.baseline.label.get(a)}" for a in self.axes)
            parts.append(TESTS_RULE.format(metric=metric_name(metric), base=base or "the only row"))
        parts += [BEST_RULE, "±: the sample standard deviation over seeds; n: the finished seeds."]
        chosen_on = sorted({m for g in self.groups for r in g.runs
                            if (m := (r.record.get("tuned") or {}).get("metric"))})
        if chosen_on:
            parts.append(f"(tuned): the value each row's tuning chose on {', '.join(chosen_on)}.")
        return " ".join(parts + self._split_legend())

    def _split_legend(self) -> list[str]:
        sizes = self.split_sizes("test")
        if len(sizes) == 1:
            return [f"Test split: {sizes[0]} images (one image = {100 / sizes[0]:.2f} points)."]
        return [f"Test split: {' or '.join(map(str, sizes))} images."] if sizes else []

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
        best = set()
        for ck in col_keys:
            in_column = [by[rk, ck] for rk in row_keys if (rk, ck) in by]
            best |= {id(g) for g, b in zip(in_column, best_set(in_column, m), strict=True) if b}
        notes: list[str] = []
        rows = []
        for rk in row_keys:
            row = [TableCell(axis_value(v)) for v in rk]
            for ck in col_keys:
                g = by.get((rk, ck))
                row.append(TableCell("·") if g is None else self._pivot_cell(g, m, id(g) in best, notes))
            rows.append(row)
        legend = " ".join([f"{metric_name(m)}: mean ± sample std over seeds.", BEST_RULE,
                           "Δ, its tests and the cost columns are in the unpivoted table."]
                          + self._split_legend())
        return Table(header, align, rows, notes, self.title, legend)

    def _pivot_cell(self, g: Group, m: str, best: bool, notes: list[str]) -> TableCell:
        n = len(g.values(m))
        cell = TableCell(mean_std(g.mean(m), g.std(m)) + (f" (n={n})" if n != len(g.runs) else ""), best=best)
        if status := self.status_note(g):
            cell.notes.append(note(notes, status))
        return cell


def summarize(runs: list[Run], metrics: Iterable[str] = DEFAULT_METRICS, rows: list[str] | None = None,
              cols: list[str] | None = None, baseline: dict[str, str] | None = None,
              title: str = "") -> Report:
    """Group runs into rows; `rows` orders/sorts by those axes first, `cols` pivots, `baseline`
    ({axis: value}) picks the reference row (default: the first row). Tuning runs are no rows."""
    tuning = [r for r in runs if r.stage == "tune"]
    axes, groups = group_runs([r for r in runs if r.stage != "tune"])
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
    return Report(axes, groups, list(metrics), base, cols, title, tuning)


def for_manifest(manifest: Path, root: Path, smoke: bool = False, metrics: Iterable[str] = DEFAULT_METRICS,
                 rows: list[str] | None = None, cols: list[str] | None = None,
                 baseline: dict[str, str] | None = None) -> tuple[Report, Path]:
    """The report of a manifest's cells under the results root `root`, and the folder it belongs in."""
    runs, out_dir, name = runs_from_manifest(manifest, root, smoke=smoke)
    report = summarize(runs, metrics, rows, cols, baseline, title=name)
    report.manifest = Path(manifest)
    return report, out_dir


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
