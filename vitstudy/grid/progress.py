"""The grid's progress: cells done / running / failed, an ETA, and each running cell's latest epoch, step,
loss and validation top-1. Shown one line per event (`echo`; the plain output, for logs and pipes),
or through a `View`: the live display in a terminal (vitstudy.grid.live) or `Quiet` (failures only).
No torch import."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Protocol

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


class View(Protocol):
    """What shows a grid's progress instead of its event lines."""

    def changed(self, progress: Progress) -> None:
        """The counts, the running cells or a cell's numbers changed."""

    def failed(self, event: str) -> None:
        """A cell failed: '✗ <run id> <status>: <message>'."""


class Quiet:
    """`run-grid --quiet`: no progress, but failures are still said, one line each."""

    def __init__(self, echo: Callable[[str], None] = print):
        self.echo = echo

    def changed(self, progress: Progress) -> None:
        pass

    def failed(self, event: str) -> None:
        self.echo(event)


class Progress:
    """Counts of the grid's cells by status; `line()` is the live summary. With a `view`, events
    redraw it instead of echoing their line."""

    def __init__(self, name: str, total: int, workers: int = 1, echo: Callable[[str], None] = print,
                 walls: list[float] | None = None, tuning: frozenset[str] = frozenset(),
                 view: View | None = None):
        self.name, self.total, self.workers, self.echo, self.view = name, total, workers, echo, view
        self.tuning = tuning  # run ids of tuning cells: a candidate that fails is an outcome, counted apart
        self.counts: Counter = Counter()
        self.running: set[str] = set()
        self.cells: dict[str, dict] = {}  # running cell -> its latest progress (training.progress_events)
        self.ended_ids: set[str] = set()
        self.walls = list(walls or [])  # wall times of finished cells, earlier runs included
        self.start = time.time()

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def show(self) -> None:
        """The grid as it stands: its line, or the view redrawn."""
        if self.view is None:
            self.echo(self.line())
        else:
            self.view.changed(self)

    def started(self, run_id: str) -> None:
        if run_id in self.ended_ids:  # a late start event from a worker
            return
        self.running.add(run_id)
        self.cells.setdefault(run_id, {})
        self._tell(f"→ {run_id}")

    def stepped(self, run_id: str, fields: dict) -> None:
        """A running cell's latest progress: epoch, epochs, batch, batches, step, stage, loss, val_acc1.
        Only a view shows it (one line per event leaves training silent)."""
        if run_id in self.running:
            self.cells[run_id] = fields
            if self.view is not None:
                self.view.changed(self)

    def ended(self, run_id: str, status: str, record: dict | None = None) -> None:
        self.running.discard(run_id)
        self.cells.pop(run_id, None)
        self.ended_ids.add(run_id)
        self.counts[self._key(run_id, status)] += 1
        if record and status == "done" and record.get("wall_time_s"):
            self.walls.append(float(record["wall_time_s"]))
        if status == "done" and record is not None:
            self._tell(f"✓ {run_id}: {_note(record)} in {duration(record.get('wall_time_s', 0))}")
        elif status in FAILURES or status == "worker died":
            message = ((record or {}).get("error") or {}).get("message", "")
            self._tell(f"✗ {run_id} {status}: {message.splitlines()[0] if message else ''}", failure=True)
        elif self.view is not None:
            self.view.changed(self)
        for note in (record or {}).get("recovered") or ():  # files it found unreadable, and what it did
            self._tell(f"↻ {run_id}: {note}", failure=True)

    def failed_before(self, run_id: str, status: str) -> None:
        """A cell that failed in an earlier run and is not retried."""
        self.counts[self._key(run_id, status)] += 1
        self._tell(f"✗ {run_id} {status} in an earlier run (--retry-failed reruns it)", failure=True)

    def _tell(self, event: str, failure: bool = False) -> None:
        """One event: its line after the grid's (the plain output), or to the view (which lists failures,
        and what was recovered: `failure`, lines that stay on screen, and that --quiet still says)."""
        if self.view is None:
            self.echo(f"{self.line()}  {event}")
            return
        if failure:
            self.view.failed(event)
        self.view.changed(self)

    def _key(self, run_id: str, status: str) -> str:
        return count_key(status, run_id in self.tuning)

    @property
    def failures(self) -> int:
        return failures(self.counts)

    def line(self) -> str:
        return f"[{self.name}] {self.status()}"

    def status(self) -> str:
        """'3/12 done · 2 running · 1 failed · ETA 4m10s' (the ETA once a cell has run)."""
        done = self.counts["done"] + self.counts["skipped"]
        failed = sum(self.counts[s] for s in FAILURES)
        left = self.total - self.finished
        seconds = eta(self.walls, left, self.workers)
        eta_s = f" · ETA {duration(seconds)}" if seconds is not None and left else ""
        return f"{done}/{self.total} done · {len(self.running)} running · {failed} failed{eta_s}"

    def summary(self) -> str:
        """'3 done, 9 skipped (done before), 1 failed, 1 diverged' in a fixed order."""
        order = ["done", "skipped", "failed", "diverged", "oom", "worker died", "not run"]
        parts = []
        for status in order + sorted(set(self.counts) - set(order)):
            if self.counts[status]:
                label = "skipped (done before)" if status == "skipped" else status
                parts.append(f"{self.counts[status]} {label}")
        return ", ".join(parts) + f" in {duration(time.time() - self.start)}"


TUNING = "(tuning)"


def count_key(status: str, tuning: bool) -> str:
    """The count a cell's outcome goes to: a tuning candidate that failed or diverged is tuning's answer
    (that value loses), not a failure of the grid: "diverged (tuning)"."""
    return f"{status} {TUNING}" if status in FAILURES and tuning else status


def failures(counts: dict[str, int]) -> int:
    """Cells that failed, diverged, ran out of memory or were not run, tuning candidates aside."""
    return sum(n for s, n in counts.items() if s not in ("done", "skipped") and not s.endswith(TUNING))


def _note(record: dict) -> str:
    """What a finished cell scored: test top-1; a tuning cell's validation top-1 (the test split is not
    its business); a tuned final cell's chosen values too (vitstudy.training.tune)."""
    tuning = (record.get("spec") or {}).get("stage") == "tune"
    metric = "val/acc1" if tuning else "test/acc1"
    acc = record.get("metrics", {}).get(metric)
    note = f"{metric} {acc:.2f}%" if acc is not None else "done"
    chosen = (record.get("tuned") or {}).get("keys", {})
    if chosen:
        note += " at " + ", ".join(f"{key.partition('.')[2]}={value}" for key, value in chosen.items())
    return ("tuning, " if tuning else "") + note


def survey(grid: Grid, out: Path, workers: int, echo: Callable[[str], None], view: View | None = None
           ) -> tuple[Progress, dict[str, Path], list[Cell]]:
    """Where a grid stands before an executor runs it: each cell's folder (keyed by run id + grid name),
    a Progress (shown by `view`, if given) that counts the cells done before as skipped (their wall times
    feed the ETA), and the cells still to run, in grid order."""
    dirs = {cell.run_id + cell.grid: grid.cell_dir(out, cell) for cell in grid.cells}
    records = {key: runfolder.read_record(d) for key, d in dirs.items()}
    done = {key for key, r in records.items() if runfolder.record_status(r) == "done"}
    walls = [r["wall_time_s"] for key, r in records.items() if key in done and r.get("wall_time_s")]
    tuning = frozenset(cell.run_id for cell in grid.cells if cell.stage == "tune")
    progress = Progress(grid.name, len(grid.cells), workers, echo, walls, tuning, view)
    progress.counts["skipped"] += len(done)
    return progress, dirs, [cell for cell in grid.cells if cell.run_id + cell.grid not in done]
