"""Figures for a report, written next to its table as PNG and SVG (matplotlib, no display needed):

- `accuracy_vs_cost`: the first metric (mean ± std over seeds) against parameters and against MACs,
  one marker shape per token mixer, each point labelled with its row;
- `val_acc_vs_epoch`: validation top-1 against epoch, one line per row (mean over seeds, band min–max),
  read from each run's TensorBoard event files (`tb/`), so it works for runs in progress too;
- `tuning_curve` (a tuned grid): per row, the selection metric's mean over the tuning seeds against the
  tuned value (the first tuned key; a line per value of the others), the chosen value circled; a log
  axis for a learning rate or a range wider than 20×. A row's tuning runs are those its final cells
  name (`train.tune_from`); a candidate without a finished seed (diverged, pending) has no point.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from vitstudy import runfolder
from vitstudy.results.format import value_text
from vitstudy.results.groups import Group, hashable, short_axis
from vitstudy.results.runs import Run, metric_name, val_curve
from vitstudy.results.table import Report

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label(report: Report, g: Group) -> str:
    parts = [f"{short_axis(a)}={g.label.get(a)}" for a in report.axes if g.label.get(a) is not None]
    return ", ".join(parts) or "all runs"


def colors(n: int) -> list:
    """n distinct colours: matplotlib's tab10 up to 10 rows, tab20 beyond (no colour used twice)."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


ANNOTATE_AT_MOST = 8  # more rows than this: a colour legend instead of a label beside every point


def save(fig, stem: Path) -> list[Path]:
    """The figure as <stem>.png and <stem>.svg, each written atomically (vitstudy.runfolder); closes it."""
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    try:
        runfolder.atomic_write(paths[0], lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"))
        runfolder.atomic_write(paths[1], lambda f: fig.savefig(f, format="svg", bbox_inches="tight"))
    finally:
        pyplot().close(fig)
    return paths


def _mixer(g: Group) -> str:
    for r in g.runs:
        mixer = ((r.record.get("spec") or {}).get("model") or {}).get("mixer")
        if mixer:
            return mixer
    return "?"


def accuracy_vs_cost(report: Report, stem: Path) -> list[Path]:
    plt = pyplot()
    metric = report.metrics[0]
    points = [(g, g.mean(metric), g.std(metric) or 0.0, g.cost("params"), g.cost("macs"))
              for g in report.groups]
    points = [p for p in points if p[1] is not None and p[3] and p[4]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    mixers = list(dict.fromkeys(_mixer(g) for g, *_ in points))
    palette = colors(len(report.groups))
    color = {id(g): palette[i] for i, g in enumerate(report.groups)}  # as in val_acc_vs_epoch
    annotate = len(points) <= ANNOTATE_AT_MOST
    for ax, idx, xlabel in ((axes[0], 3, "parameters"), (axes[1], 4, "MACs per image")):
        for g, mean, std, *cost in points:
            x = cost[idx - 3]
            ax.errorbar(x, mean, yerr=std, fmt=MARKERS[mixers.index(_mixer(g)) % len(MARKERS)],
                        color=color[id(g)], ecolor="0.5", capsize=3, markersize=7)
            if annotate:
                ax.annotate(label(report, g), (x, mean), textcoords="offset points", xytext=(6, 4),
                            fontsize=7, color=color[id(g)])
        ax.margins(x=0.3, y=0.1)
        xs = [p[idx] for p in points]
        if xs and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: _si(v)))
    axes[0].set_ylabel(f"{metric_name(metric)}, mean ± std over seeds")
    handles = [plt.Line2D([], [], marker=MARKERS[i % len(MARKERS)], color="0.3", linestyle="", label=m)
               for i, m in enumerate(mixers)]
    if handles:
        axes[1].legend(handles=handles, title="token mixer", loc="best")
    if not annotate:
        rows = [plt.Line2D([], [], marker=MARKERS[mixers.index(_mixer(g)) % len(MARKERS)], color=color[id(g)],
                           linestyle="", label=label(report, g)) for g, *_ in points]
        fig.legend(handles=rows, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8,
                   frameon=False)
    fig.suptitle(f"{report.title}: accuracy against model size and compute" if report.title
                 else "accuracy against model size and compute")
    return save(fig, stem)


def _si(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= div:
            return f"{v / div:.4g}{suffix}"
    return f"{v:.4g}"


def val_acc_vs_epoch(report: Report, stem: Path) -> list[Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    drawn = 0
    palette = colors(len(report.groups))
    for i, g in enumerate(report.groups):
        curves = [val_curve(r.dir) for r in g.runs if r.dir is not None]
        curves = [c for c in curves if c]
        if not curves:
            continue
        epochs = sorted(set().union(*curves))
        per_epoch = [[c[e] for c in curves if e in c] for e in epochs]
        mean = [statistics.fmean(v) for v in per_epoch]
        color = palette[i]
        ax.plot([e + 1 for e in epochs], mean, color=color, label=f"{label(report, g)} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between([e + 1 for e in epochs], [min(v) for v in per_epoch], [max(v) for v in per_epoch],
                            color=color, alpha=0.15, linewidth=0)
        drawn += 1
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="lower right", title="line: mean over seeds; band: min–max",
                  title_fontsize=8)
    ax.set_title(f"{report.title}: validation accuracy during training" if report.title
                 else "validation accuracy during training")
    return save(fig, stem)


def tuning_runs(report: Report, g: Group) -> list[Run]:
    """The tuning runs of a row: those its final cells name in train.tune_from."""
    ids = {i for r in g.runs for i in _train(r).get("tune_from") or ()}
    return [r for r in report.tuning if r.record.get("run_id") in ids]


def _train(run: Run) -> dict:
    return (run.record.get("spec") or {}).get("train") or {}


def _varying(runs: list[Run]) -> list[str]:
    """The train.* keys whose values differ between a row's tuning runs: the tuned ones, lr first."""
    keys = list(dict.fromkeys(k for r in runs for k in _train(r)))
    keys = [k for k in keys if len({hashable(_train(r).get(k)) for r in runs}) > 1]
    return sorted(keys, key=lambda k: k != "lr")


def _candidate_means(runs: list[Run], key: str, metric: str) -> list[tuple[float, float]]:
    """(tuned value, the metric's mean over that candidate's finished seeds), sorted by value."""
    by_value: dict = {}
    for r in runs:
        if r.status == "done" and (v := r.value(metric)) is not None:
            by_value.setdefault(_train(r)[key], []).append(v)
    return sorted((x, statistics.fmean(v)) for x, v in by_value.items())


def tuning_curve(report: Report, stem: Path) -> list[Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    palette = colors(len(report.groups))
    metrics, xs, key = set(), [], "lr"
    for i, g in enumerate(report.groups):
        runs = tuning_runs(report, g)
        if not (keys := _varying(runs)):
            continue
        key = keys[0]
        metric = next((m for r in g.runs if (m := _train(r).get("tune_metric"))), "val/acc1")
        metrics.add(metric)
        xs += _draw_row(ax, label(report, g), g, runs, keys, metric, palette[i])
    if xs and min(xs) > 0 and (key.endswith("lr") or max(xs) / min(xs) > 20):
        ax.set_xscale("log")
    ax.set_xlabel(f"train.{key} (tuned)")
    ax.set_ylabel(f"{', '.join(sorted(metric_name(m) for m in metrics))}, mean over tuning seeds")
    ax.grid(alpha=0.3)
    if xs:
        ax.legend(fontsize=8, loc="best", title="circled: the value chosen", title_fontsize=8)
    ax.set_title(f"{report.title}: per-variant tuning" if report.title else "per-variant tuning")
    return save(fig, stem)


def _draw_row(ax, name: str, g: Group, runs: list[Run], keys: list[str], metric: str, color) -> list[float]:
    """A row's tuning: a line over the first tuned key per value of the others; returns the x values."""
    key, others = keys[0], keys[1:]
    xs = []
    rests = dict.fromkeys(tuple(_train(r).get(k) for k in others) for r in runs)
    for j, rest in enumerate(rests):
        points = _candidate_means([r for r in runs if tuple(_train(r).get(k) for k in others) == rest],
                                  key, metric)
        if not points:
            continue
        xs += [x for x, _ in points]
        line = [name] + [f"{k}={value_text(v)}" for k, v in zip(others, rest, strict=True)]
        ax.plot(*zip(*points, strict=True), marker="o", color=color, label=", ".join(line),
                linestyle=("-", "--", ":", "-.")[j % 4])
        values = dict(zip(others, rest, strict=True))
        chosen = [(x, y) for x, y in points
                  if all(v in g.tuned(f"train.{k}") for k, v in {**values, key: x}.items())]
        if chosen:
            ax.plot(*zip(*chosen, strict=True), marker="o", markersize=13, fillstyle="none", linestyle="",
                    color=color)
    return xs


def plot_all(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return accuracy_vs_cost(report, out_dir / "accuracy_vs_cost") + \
        val_acc_vs_epoch(report, out_dir / "val_acc_vs_epoch")
