"""Run a grid's cells on this machine: one after another in this process, or `workers` at a time in
spawned worker processes (one per GPU, pinned to it; on a CPU the threads are split between them).

Every cell is attempted under its lock (vitstudy.grid.locks): finished cells are skipped, cells another
process is training are deferred and waited for at the end (then skipped when that process finished
them, or trained here when it died), interrupted cells resume from their last checkpoint, failed
cells are reported and rerun only with `retry_failed`. A results folder that cannot be written (full,
read-only) stops the grid: the StorageError is raised once the cells in flight ended, and the same
command, run again, goes on from there.

Progress goes one line per event to `echo`, or to a `view` (vitstudy.grid.progress.View: the live display,
or quiet); for a view, the cells also report their epochs while they train, from this process or, through
the workers' event queue, from theirs.
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from vitstudy.config.manifest import Cell, Grid
from vitstudy.grid import depends
from vitstudy.grid.executors.worker import attempt, attempt_pack, init_worker
from vitstudy.grid.packing import Unit, cpu_workers, plan_units
from vitstudy.grid.progress import Progress, View, survey
from vitstudy.runfolder import FAILURES, StorageError


def cells_at_once() -> int:
    """One worker per visible GPU, else one."""
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def run_local(grid: Grid, out: Path, fail_fast: bool = False, retry_failed: bool = False,
              workers: int | None = None, echo: Callable[[str], None] = print,
              pack: str | int = "auto", view: View | None = None) -> Progress:
    """Train every cell that is not finished; return the Progress, whose counts hold the outcome of
    every cell: done, skipped (done before), failed / diverged / oom, not run (after --fail-fast).
    `pack`: which cells train together as one vectorised model (vitstudy.grid.packing); `view`: what
    shows the progress instead of one line per event (`echo` still gets the executor's messages)."""
    chosen, workers = workers, workers or cells_at_once()
    device = "cuda" if _has_cuda() else "cpu"
    progress, dirs, todo = survey(grid, Path(out), workers, echo, view)
    if todo:
        progress.show()
    stop = False
    # a cell that waits for others (phase 2, a tuned grid's final cell: vitstudy.grid.depends) runs in a
    # wave after theirs, once they ended as it needs
    for cells in depends.waves(todo):
        wave = [] if stop else _startable(cells, dirs, echo)
        if not wave:
            continue
        deferred: list[Cell] = []
        units = plan_units(wave, dirs, pack, device)
        workers = chosen or (cpu_workers(units) if device == "cpu" else workers)
        if workers == 1 or len(units) <= 1:
            stop = _in_process(units, dirs, progress, deferred, fail_fast, retry_failed, pack, timeout=0)
        else:
            stop = _pool(units, dirs, progress, deferred, fail_fast, retry_failed, pack, workers)
        if deferred and not stop:
            echo(f"waiting for {len(deferred)} cell(s) that another process is training")
            alone = [Unit((cell,), packed=False) for cell in deferred]
            stop = _in_process(alone, dirs, progress, [], fail_fast, retry_failed, pack, timeout=-1)
    progress.counts["not run"] += len(grid.cells) - progress.finished
    return progress


def _startable(wave: list[Cell], dirs: dict, echo: Callable[[str], None]) -> list[Cell]:
    """The cells of a wave whose dependencies ended as they need (asked once the earlier waves ran);
    the others are not run."""
    ready = []
    for cell in wave:
        reason = depends.unmet(cell.spec, dirs[cell.run_id + cell.grid].parent)
        if reason is None:
            ready.append(cell)
        else:
            echo(f"  - {cell.run_id} not run: {reason}")
    return ready


def _handle(cell: Cell, outcome: str, record: dict | None, trained: bool, progress: Progress,
            deferred: list) -> bool:
    """Count one attempt's outcome; True when it is a failure."""
    if outcome == "locked":
        deferred.append(cell)
        return False
    if outcome in FAILURES and not trained:  # failed in an earlier run
        progress.failed_before(cell.run_id, outcome)
        return True
    progress.ended(cell.run_id, outcome, record)
    return outcome in FAILURES


def _call(unit: Unit, dirs: dict, retry_failed: bool, pack, timeout: float = 0, on_start=None,
          progress: bool | None = None, on_progress=None):
    """The attempt that trains a unit: (function, arguments); it returns one outcome per cell."""
    run_dirs = [dirs[cell.run_id + cell.grid] for cell in unit.cells]
    if unit.packed:
        return attempt_pack, ([c.spec for c in unit.cells], run_dirs, retry_failed, pack, timeout, on_start,
                              on_progress)
    return _alone, (unit.cells[0].spec, run_dirs[0], retry_failed, progress, timeout, on_start, pack,
                    on_progress)


def _alone(*args) -> list:
    return [attempt(*args)]


def _in_process(units, dirs, progress, deferred, fail_fast, retry_failed, pack, timeout) -> bool:
    shown = progress.view is not None  # a view replaces Lightning's bar and wants the cells' epochs
    bar = False if shown else None
    for unit in units:
        ids = {dirs[c.run_id + c.grid].name: c.run_id for c in unit.cells}
        stepped = (lambda name, fields, ids=ids: progress.stepped(ids[name], fields)) if shown else None
        fn, args = _call(unit, dirs, retry_failed, pack, timeout,
                         lambda name, ids=ids: progress.started(ids[name]), progress=bar, on_progress=stepped)
        for cell, (outcome, record, trained) in zip(unit.cells, fn(*args), strict=True):
            if _handle(cell, outcome, record, trained, progress, deferred) and fail_fast:
                return True
    return False


def _pool(units, dirs, progress, deferred, fail_fast, retry_failed, pack, workers) -> bool:
    ctx = get_context("spawn")
    gpus = cells_at_once() if _has_cuda() else 0
    devices = None
    if gpus:
        devices = ctx.Queue()
        for i in range(workers):
            devices.put(i % gpus)
    threads = None if gpus else max(1, (os.cpu_count() or 1) // workers)
    events = ctx.Queue()
    by_name = {cell.run_id: cell for unit in units for cell in unit.cells}
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                             initargs=(devices, threads, events, progress.view is not None)) as pool:
        futures = {pool.submit(*_pool_call(unit, dirs, retry_failed, pack)): unit for unit in units}
        pending, stop, fault = set(futures), False, None
        while pending:
            # the workers' events are read between waits, as often as a live display repaints
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            _drain(events, progress, by_name)
            for future in done:
                unit = futures[future]
                try:
                    results = future.result()
                except StorageError as e:  # no cell can end well in a folder that cannot be written
                    fault, stop = fault or e, True
                    for f in pending:
                        f.cancel()
                    continue
                except Exception as e:  # noqa: BLE001 - a worker died (segfault, OOM killer)
                    # the cells' records still say "running": the next run-grid resumes them
                    results = [("worker died", {"error": {"message": repr(e)}}, True)] * len(unit.cells)
                failed = False
                for cell, (outcome, record, trained) in zip(unit.cells, results, strict=True):
                    failed = _handle(cell, outcome, record, trained, progress, deferred) or failed
                    failed = failed or outcome == "worker died"
                if failed and fail_fast and not stop:
                    stop = True
                    for f in pending:
                        f.cancel()
            pending = {f for f in pending if not f.cancelled()}
    if fault is not None:
        raise fault
    return stop


def _pool_call(unit: Unit, dirs: dict, retry_failed: bool, pack) -> tuple:
    """A unit's attempt as a pool submission: the function and its arguments, picklable."""
    fn, args = _call(unit, dirs, retry_failed, pack, progress=False)
    return (fn, *args)


def _drain(events, progress: Progress, by_name: dict) -> None:
    """The workers' events so far: a run id for a cell that starts, (run id, fields) for its progress."""
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return
        run_id, fields = event if isinstance(event, tuple) else (event, None)
        if run_id not in by_name or run_id in progress.ended_ids:
            continue
        if fields is None:
            progress.started(run_id)
        else:
            progress.stepped(run_id, fields)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() > 0
