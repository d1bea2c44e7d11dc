"""Runs as a report sees them: one cell's record read from its run folder (vitstudy.runfolder), never
from an executor's memory, so a report works while a grid runs, after a crash, and on results copied
back from a cluster. Also the metrics a record holds and the names a table gives them. A record that
cannot be read (cut short by a copy or a crash) is a run with status "damaged" whose error says why
(vitstudy.runfolder.read_record), placed in its row by its spec.yaml: reported, never a crash.

A metric is a key of the record's `metrics` (final test/val/train values), `best:<key>` (the value at
the best-validation epoch, from `best`), `<key>@epoch<k>` (a logged value at epoch k, counted from 1,
from the run's TensorBoard events: how fast a variant gets there), or a cost (params, MACs, measured
images/s, peak memory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vitstudy import runfolder
from vitstudy.config.manifest import load
from vitstudy.runfolder import METRICS_FILE, SPEC_FILE, TB_DIR

DEFAULT_METRICS = ("test/acc1", "best:test/acc1")
COST = ("params", "macs", "train_img_s", "infer_img_s", "peak_mem_mib")
NAMES = {"test/acc1": "test top-1 (%)", "test/acc5": "test top-5 (%)", "test/loss": "test loss",
         "val/acc1": "val top-1 (%)", "val/acc5": "val top-5 (%)", "val/loss": "val loss",
         "train/loss": "train loss", "params": "params", "macs": "MACs", "train_img_s": "train img/s",
         "infer_img_s": "infer img/s", "peak_mem_mib": "peak mem (MiB)"}


AT_EPOCH = re.compile(r"(?P<tag>.+)@epoch(?P<epoch>[1-9][0-9]*)")  # val/acc1@epoch3


def metric_name(metric: str) -> str:
    """The column title of a metric: 'test top-1 (%)', 'test top-1 (%) @ best val', 'val top-1 (%) @
    epoch 3'."""
    if metric.startswith("best:"):
        return NAMES.get(metric[5:], metric[5:]) + " @ best val"
    if at := AT_EPOCH.fullmatch(metric):
        return f"{NAMES.get(at['tag'], at['tag'])} @ epoch {at['epoch']}"
    return NAMES.get(metric, metric)


def val_curve(run_dir: Path, tag: str = "val/acc1") -> dict[int, float]:
    """{epoch (from 0): value} of a scalar in a run's TensorBoard events (the last value where an epoch
    repeats, e.g. after a resume)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = Path(run_dir) / TB_DIR
    if not tb.is_dir():
        return {}
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    if tag not in tags:
        return {}
    epoch_at = {e.step: int(e.value) for e in acc.Scalars("epoch")} if "epoch" in tags else {}
    out = {}
    for i, e in enumerate(acc.Scalars(tag)):
        out[epoch_at.get(e.step, i)] = e.value
    return dict(sorted(out.items()))


@dataclass
class Run:
    """One cell's record as read from disk (status "pending" when it has no record yet)."""

    record: dict
    dir: Path | None = None
    axes: tuple[tuple[str, Any], ...] | None = None  # from a manifest; None: inferred from the specs
    expect: dict[str, float] = field(default_factory=dict)
    source: str | None = None
    tolerance: dict[str, float] = field(default_factory=dict)  # metric -> ±, for expected values given one

    @property
    def status(self) -> str:
        return runfolder.record_status(self.record)

    @property
    def stage(self) -> str:
        """"tune" for a tuning run of a tuned grid (never a row of a comparison), else "final"."""
        return (self.record.get("spec") or {}).get("stage", "final")

    def value(self, metric: str) -> float | None:
        rec = self.record
        if metric.startswith("best:"):
            v = (rec.get("best") or {}).get(metric[5:])
        elif at := AT_EPOCH.fullmatch(metric):
            v = val_curve(self.dir, at["tag"]).get(int(at["epoch"]) - 1) if self.dir is not None else None
        elif metric in COST:
            v = (rec.get("cost") or {}).get(metric)
        else:
            v = (rec.get("metrics") or {}).get(metric)
        return None if v is None else float(v)


def runs_from_dir(grid_dir: Path) -> list[Run]:
    """Every run folder under `grid_dir` that has a record."""
    dirs = sorted(p.parent for p in Path(grid_dir).glob(f"*/{METRICS_FILE}"))
    return [Run(_record_of(d), d) for d in dirs]


def _record_of(run_dir: Path) -> dict:
    """A run's record; a damaged one gets the spec its attempt wrote (spec.yaml), where that can be read."""
    record = runfolder.read_record(run_dir)
    if runfolder.record_status(record) == runfolder.DAMAGED:
        try:
            spec = yaml.safe_load((Path(run_dir) / SPEC_FILE).read_text())
        except (OSError, ValueError, yaml.YAMLError):
            spec = None
        if isinstance(spec, dict):
            record["spec"] = spec
    return record


def runs_from_manifest(manifest: Path, root: Path, smoke: bool = False) -> tuple[list[Run], Path, str]:
    """The manifest's cells, in its order, with their records under `root` (pending where none yet);
    also the folder the report goes to and the grid's name."""
    from vitstudy.models.cost import model_cost  # solves budget:; imports torch, so not at import time

    grid = load(manifest, smoke=smoke, cost=model_cost)
    runs = []
    for cell in grid.cells:
        d = grid.cell_dir(root, cell)
        record = runfolder.read_record(d) or {"run_id": cell.run_id, "status": runfolder.PENDING}
        record.setdefault("spec", cell.spec.model_dump(mode="json"))  # pending, or damaged
        runs.append(Run(record, d, tuple(cell.axes), dict(cell.expect), cell.expect_source,
                        tolerance=dict(cell.tolerance)))
    return runs, Path(root) / grid.folder, grid.folder
