"""Results as pandas DataFrames, for a notebook: one row per run (`runs_frame`), and one row per row of
the report with its statistics (`table_frame`). Both read what `vitstudy report` reads (the run folders
through vitstudy.results.runs, the rows and their tests through vitstudy.results.table), so a frame and
the report's files cannot disagree. pandas is the `[analysis]` extra; only vitstudy.api imports this.

A runs frame's columns, in this order:

    <axes>            the grid's axes by dotted key (model.head, ...; phase): a manifest's own, or for a
                      results folder the spec keys that differ between its runs, as a report infers rows
    seed, status      status: done, running, failed, diverged, oom, pending (a cell without a record), or
                      damaged (a metrics.json that cannot be read)
    <metric>          the final values of metrics.json's `metrics` (test/acc1, test/loss, val/acc1, ...)
    best:<metric>     the values at the best-validation epoch (`best`); best:epoch counts from 0, as there
    tuned:<key>       a tuned grid's chosen values (train.lr, ...)
    params, macs, train_img_s, infer_img_s, peak_mem_mib       the cost (`cost`)
    wall_time_s, started_at, finished_at, error, run_id, grid, stage, path
    <spec key>        the rest of the flattened spec (model.embed_dim, train.lr, data.dataset, ...)

A table frame has table.csv's columns under its names (vitstudy.results.render.to_csv: baseline, n_seeds,
test_size, n_<status>, <metric>_<quantity>, cost), except that axes are named by dotted key and tuned
values `tuned:<key>`, with numbers unrounded and 0/1 flags as booleans.

Numbers are floats (NaN where a run has none), counts and seeds nullable integers (Int64), times UTC
timestamps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

try:
    import pandas as pd
except ImportError as e:  # an optional extra: say how to get it
    raise ImportError('results as a DataFrame need pandas: pip install "vitstudy[analysis]"') from e

from vitstudy.results.compare import RowStats
from vitstudy.results.groups import Group, _flatten, group_runs, hashable
from vitstudy.results.render import METRIC_COLUMNS, STATUSES
from vitstudy.results.runs import COST, Run, runs_from_dir, runs_from_manifest
from vitstudy.results.table import Report
from vitstudy.runfolder import METRICS_FILE

OWN = ("grid", "seed", "stage")  # spec keys that have a column of their own
INTS = ("seed", "best:epoch", "params", "macs")


def read_runs(source: str | Path, out: str | Path = "results", smoke: bool = False
              ) -> tuple[list[Run], Path, str]:
    """The runs of a results folder (every run folder in it) or of a manifest (every cell, pending ones
    too, under the results root `out`), the grid's folder and its name. A manifest's problems raise
    vitstudy.config.errors.ManifestError."""
    source = Path(source)
    if not source.is_dir():
        return runs_from_manifest(source, Path(out), smoke=smoke)
    runs = runs_from_dir(source)
    if not runs:  # the words `vitstudy report` uses
        raise ValueError(f"{source}: no run folders with a {METRICS_FILE}")
    return runs, source, source.name


def runs_frame(runs: list[Run], folder: Path | None = None, spec: bool = True) -> pd.DataFrame:
    """One row per run, the columns of the module doc (without the rest of the spec unless `spec`);
    `folder` goes into `attrs["folder"]`."""
    finals = [r for r in runs if r.stage != "tune"]
    axes, _ = group_runs(finals)
    axes += list(dict.fromkeys(k for r in runs if r.axes for k, _ in r.axes if k not in axes))  # tuning's
    metrics = _keys(r.record.get("metrics") for r in runs)
    best = [f"best:{k}" for k in _keys(r.record.get("best") for r in runs) if k != "epoch"] + ["best:epoch"]
    tuned = _keys((r.record.get("tuned") or {}).get("keys") for r in runs)
    rows = []
    for r in runs:
        rec, flat = r.record, _flatten(r.record.get("spec") or {})
        own = dict(r.axes or ())
        row = {a: hashable(own[a] if a in own else flat.get(a)) for a in axes}
        row |= {"seed": flat.get("seed"), "status": r.status}
        row |= {m: r.value(m) for m in metrics}
        row |= {m: r.value(m) for m in best if m != "best:epoch"}
        row["best:epoch"] = (rec.get("best") or {}).get("epoch")
        row |= {f"tuned:{k}": ((rec.get("tuned") or {}).get("keys") or {}).get(k) for k in tuned}
        row |= {c: r.value(c) for c in COST}
        row |= {"wall_time_s": rec.get("wall_time_s"), "started_at": rec.get("started_at"),
                "finished_at": rec.get("finished_at"), "error": (rec.get("error") or {}).get("message"),
                "run_id": rec.get("run_id") or (r.dir.name if r.dir else None), "grid": flat.get("grid"),
                "stage": r.stage, "path": None if r.dir is None else str(r.dir)}
        if spec:
            row |= {k: v for k, v in flat.items() if k not in OWN and k not in row}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=_keys(rows))  # every row's keys: specs of older versions differ
    floats = [*metrics, *(m for m in best if m != "best:epoch"), *COST, "wall_time_s"]
    frame = _typed(frame, floats=floats, ints=INTS)
    for c in ("started_at", "finished_at"):
        if c in frame:
            frame[c] = pd.to_datetime(frame[c], utc=True)
    if folder is not None:
        frame.attrs["folder"] = str(folder)
    return frame


def table_frame(report: Report) -> pd.DataFrame:
    """One row per row of the report: table.csv's quantities as raw numbers (see the module doc)."""
    tuned = report.tuned_keys
    out = []
    for i, g in enumerate(report.groups):
        c = g.counts
        row = {a: g.label.get(a) for a in report.axes}
        row |= {f"tuned:{k}": _one(g.tuned(k)) for k in tuned}
        row |= {"baseline": g is report.baseline, "n_seeds": len(g.runs), "test_size": g.split_size("test")}
        row |= {f"n_{s}": c.get(s, 0) for s in STATUSES}
        for m in report.metrics:
            quantities = _quantities(report, g, m, report.stats(m)[i])
            row |= {f"{m}_{q}": quantities[q] for q in METRIC_COLUMNS}  # a new CSV column: a KeyError here
        row |= {k: g.cost(k) for k in COST}
        out.append(row)
    frame = pd.DataFrame(out, columns=_keys(out))
    kinds = {q: [f"{m}_{q}" for m in report.metrics] for q in METRIC_COLUMNS}
    floats = [c for q in ("mean", "std", "delta", "delta_lo", "delta_hi", "p", "p_holm", "detectable_delta",
                          "paper", "delta_paper") for c in kinds[q]] + list(COST)
    ints = ["n_seeds", "test_size", *(f"n_{s}" for s in STATUSES), *kinds["n"], *kinds["seeds_for_power"]]
    frame = _typed(frame, floats=floats, ints=ints)
    for col in [c for c in ("baseline", *kinds["best"]) if c in frame]:
        frame[col] = frame[col].astype(bool)
    for col in [c for c in kinds["significant"] if c in frame]:
        frame[col] = frame[col].astype("boolean")  # NA where the row was not tested
    return frame


def _quantities(report: Report, g: Group, m: str, s: RowStats) -> dict[str, Any]:
    """METRIC_COLUMNS of one row and metric, as render._metric_columns gives them (raw, not as text)."""
    mean, ref, c = g.mean(m), g.expect.get(m), s.vs_base
    tested = {"delta": c.delta, "delta_lo": c.lo, "delta_hi": c.hi, "p": c.p, "p_holm": s.p_holm,
              "test": c.test, "significant": s.significant} if c else {"delta": report.delta(g, m)}
    return {"mean": mean, "std": g.std(m), "n": len(g.values(m)), "best": s.best,
            **{q: None for q in ("delta_lo", "delta_hi", "p", "p_holm", "test", "significant")}, **tested,
            "seeds_for_power": s.seeds,
            "detectable_delta": s.detectable, "paper": ref,
            "delta_paper": None if ref is None or mean is None else mean - ref}


def _keys(dicts: Iterable[dict | None]) -> list[str]:
    """The keys of the dicts, in first-appearance order."""
    return list(dict.fromkeys(k for d in dicts for k in (d or {})))


def _one(values: list) -> Any:
    """A row's tuned value: the one the seeds chose, a tuple where they disagree, None where none."""
    return values[0] if len(values) == 1 else (tuple(values) or None)


def _typed(frame: pd.DataFrame, floats: Iterable[str], ints: Iterable[str]) -> pd.DataFrame:
    """Numbers as float64 (NaN where missing), counts as nullable Int64 (values read from JSON are
    Python objects, and a column with a missing value would otherwise be object or float)."""
    for c in floats:
        if c in frame:
            frame[c] = pd.to_numeric(frame[c], errors="raise").astype("float64")
    for c in ints:
        if c in frame:
            frame[c] = pd.array(frame[c].tolist(), dtype="Int64")
    return frame
