"""The grid's live view: cells done / running / failed and an ETA, one line per event, printed above
Lightning's per-cell progress bar. No torch import."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from vitstudy import runfolder
from vitstudy.config.manifest import Cell, Grid
from vitstudy.runfolder import FAILURES


def duration(seconds: float) -> str:
    """75 -> '1m15s'; 4000 -> '1h06m'."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def eta(walls: list[float], remaining: int, workers: int = 1) -> float | None:
    """Seconds left: the median wall time of the cells that ran, times the cells left, over the workers.
    None until some cell has run."""
    if not walls or remaining <= 0:
        return None if not walls else 0.0
    return statistics.median(walls) * remaining / max(1, min(workers, remaining))


class Progress:
    """Counts of the grid's cells by status; `line()` is the live summary."""

    def __init__(self, name: str, total: int, workers: int = 1, echo: Callable[[str], None] = print,
                 walls: list[float] | None = None):
        self.name, self.total, self.workers, self.echo = name, total, workers, echo
        self.counts: Counter = Counter()
        self.running: set[str] = set()
        self.ended_ids: set[str] = set()
        self.walls = list(walls or [])  # wall times of finished cells, earlier runs included
        self.start = time.time()

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def started(self, run_id: str) -> None:
        if run_id in self.ended_ids:  # a late start event from a worker
            return
        self.running.add(run_id)
        self.echo(f"{self.line()}  → {run_id}")

    def ended(self, run_id: str, status: str, record: dict | None = None) -> None:
        self.running.discard(run_id)
        self.ended_ids.add(run_id)
        self.counts[status] += 1
        if record and status == "done" and record.get("wall_time_s"):
            self.walls.append(float(record["wall_time_s"]))
        if status == "done" and record is not None:
            acc = record.get("metrics", {}).get("test/acc1")
            note = f"test/acc1 {acc:.2f}%" if acc is not None else "done"
            self.echo(f"{self.line()}  ✓ {run_id}: {note} in {duration(record.get('wall_time_s', 0))}")
        elif status in FAILURES or status == "worker died":
            message = ((record or {}).get("error") or {}).get("message", "")
            self.echo(f"{self.line()}  ✗ {run_id} {status}: {message.splitlines()[0] if message else ''}")

    def failed_before(self, run_id: str, status: str) -> None:
        """A cell that failed in an earlier run and is not retried."""
        self.counts[status] += 1
        self.echo(f"{self.line()}  ✗ {run_id} {status} in an earlier run (--retry-failed reruns it)")

    def line(self) -> str:
        done = self.counts["done"] + self.counts["skipped"]
        failed = sum(self.counts[s] for s in FAILURES)
        left = self.total - self.finished
        seconds = eta(self.walls, left, self.workers)
        eta_s = f" · ETA {duration(seconds)}" if seconds is not None and left else ""
        return (f"[{self.name}] {done}/{self.total} done · {len(self.running)} running · "
                f"{failed} failed{eta_s}")

    def summary(self) -> str:
        """'3 done, 9 skipped (done before), 1 failed, 1 diverged' in a fixed order."""
        order = ["done", "skipped", "failed", "diverged", "oom", "worker died", "not run"]
        parts = []
        for status in order + sorted(set(self.counts) - set(order)):
            if self.counts[status]:
                label = "skipped (done before)" if status == "skipped" else status
                parts.append(f"{self.counts[status]} {label}")
        return ", ".join(parts) + f" in {duration(time.time() - self.start)}"


def survey(grid: Grid, out: Path, workers: int, echo: Callable[[str], None]
           ) -> tuple[Progress, dict[str, Path], list[Cell]]:
    """Where a grid stands before an executor runs it: each cell's folder (keyed by run id + grid name),
    a Progress that counts the cells done before as skipped (their wall times feed the ETA), and the
    cells still to run, in grid order."""
    dirs = {cell.run_id + cell.grid: grid.cell_dir(out, cell) for cell in grid.cells}
    records = {key: runfolder.read_record(d) for key, d in dirs.items()}
    done = {key for key, r in records.items() if runfolder.record_status(r) == "done"}
    walls = [r["wall_time_s"] for key, r in records.items() if key in done and r.get("wall_time_s")]
    progress = Progress(grid.name, len(grid.cells), workers, echo, walls)
    progress.counts["skipped"] += len(done)
    return progress, dirs, [cell for cell in grid.cells if cell.run_id + cell.grid not in done]
