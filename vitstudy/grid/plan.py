"""A grid's state without training anything, as `vitstudy plan` shows it: each cell's status, its
params and MACs, an ETA once some cells ran, and for a grid with a `budget:` (vitstudy.config.budget)
the row whose cost deviates most from the reference.

A cell's status is its record's (vitstudy.runfolder), corrected by what is live: a record that says
"running" while no process holds the cell's lock (vitstudy.grid.locks) is "interrupted" (its process
died; the next run-grid resumes it from last.ckpt), and a pending or interrupted cell that a SLURM task
waits to train is "queued"; a cell whose metrics.json cannot be read is "damaged" (run-grid runs it
again, vitstudy.runfolder.recover). Params and MACs come from a meta-device model (vitstudy.models.cost), once
per distinct model. Imports no training code (no Lightning).
"""

from __future__ import annotations

import statistics
import subprocess
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from vitstudy import runfolder
from vitstudy.config.manifest import Cell, Grid
from vitstudy.grid.executors import slurm
from vitstudy.grid.locks import is_running
from vitstudy.grid.progress import duration, eta
from vitstudy.models.cost import model_cost

LEFT = ("pending", "interrupted", "running", "queued", runfolder.DAMAGED)  # statuses of cells still to train


@dataclass(frozen=True)
class PlanRow:
    cell: Cell
    status: str
    params: int
    macs: int


@dataclass(frozen=True)
class Plan:
    rows: list[PlanRow]
    walls: list[float]  # the wall times of the finished cells, in grid order

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.rows)

    def summary(self) -> str:
        """'3 done, 1 interrupted, 8 pending; about 9m00s left on one worker (median 1m00s per cell)'."""
        counts = self.counts
        seconds = eta(self.walls, sum(counts[s] for s in LEFT))
        text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if seconds:
            median = statistics.median(self.walls)  # the one `eta` multiplies
            text += f"; about {duration(seconds)} left on one worker (median {duration(median)} per cell)"
        return text

    def budget_worst(self) -> list[PlanRow]:
        """For each grid with a `budget:`, the first row whose cost deviates most from the reference."""
        worst: dict[str, PlanRow] = {}
        for row in self.rows:
            held = worst.get(row.cell.grid)
            if row.cell.budget is not None and (
                    held is None or abs(row.cell.budget.deviation) > abs(held.cell.budget.deviation)):
                worst[row.cell.grid] = row
        return list(worst.values())


def plan(grid: Grid, out: Path) -> Plan:
    """Every cell of `grid` under the results root `out`, with its status and cost."""
    cost = lru_cache(maxsize=None)(model_cost)
    queued = slurm_queued(grid, out)
    rows, walls = [], []
    for cell in grid.cells:
        run_dir = grid.cell_dir(out, cell)
        record = runfolder.read_record(run_dir)
        status = cell_status(run_dir, record, cell.run_id in queued)
        if status == "done" and record.get("wall_time_s"):
            walls.append(float(record["wall_time_s"]))
        c = cost(cell.spec.model)
        rows.append(PlanRow(cell, status, c.params, c.macs))
    return Plan(rows, walls)


def cell_status(run_dir: Path, record: dict, queued: bool) -> str:
    """The record's status, "interrupted" for a dead "running" cell, "queued" for one SLURM holds."""
    status = runfolder.record_status(record)
    if status == "running" and not is_running(run_dir):
        status = "interrupted"
    if status in (runfolder.PENDING, "interrupted") and queued:
        status = "queued"
    return status


def slurm_queued(grid: Grid, out: Path) -> dict[str, str]:
    """run_id → job id of the cells that SLURM holds a task for (none without a SLURM submission)."""
    if not (slurm.jobs_dir(grid, out) / slurm.JOBS_FILE).exists() or not slurm.available():
        return {}
    try:
        return slurm.in_queue(grid, out)
    except (OSError, subprocess.CalledProcessError):  # slurmctld unreachable: show the files' status
        return {}
