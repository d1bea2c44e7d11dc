"""One attempt at one cell, as run by the local executor in its own process or in a spawned worker:
take the cell's lock, skip it if it is finished (or failed, unless retrying), else train it with
`training.run.run_cell`, which resumes from last.ckpt when an earlier attempt was interrupted.

Importing this module imports no torch, so a spawned worker can pin its GPU (CUDA_VISIBLE_DEVICES)
and its CPU threads before torch loads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from vitstudy import runfolder as files
from vitstudy.grid.locks import CellLock
from vitstudy.runfolder import FAILURES, HOLDER_FILE, LOCK_FILE, METRICS_FILE

_EVENTS: Any = None  # in a spawned worker: a queue to announce the cells it starts


class Terminated(BaseException):
    """SIGTERM, raised by `on_sigterm`. Not an Exception, so that run_cell does not record it as the
    cell's failure (the cell stays "running" with its last.ckpt and resumes), and not a
    KeyboardInterrupt, which Lightning turns into sys.exit(1)."""


def on_sigterm(signum, frame) -> None:
    """A SIGTERM handler: end the attempt like Ctrl-C (Lightning calls it after its own handler)."""
    raise Terminated(f"signal {signum}")


def init_worker(devices: Any, threads: int | None, events: Any) -> None:
    """Initialiser of a spawned worker: pin a GPU (one per worker, from the `devices` queue), split the
    CPU threads, quiet Lightning's info lines. Runs before torch is imported."""
    global _EVENTS
    _EVENTS = events
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
    from vitstudy.training.quiet import quiet_lightning

    quiet_lightning()


def attempt(spec: Any, run_dir: str | Path, retry_failed: bool = False, progress: bool | None = None,
            timeout: float = 0,
            on_start: Callable[[str], None] | None = None) -> tuple[str, dict | None, bool]:
    """(outcome, metrics record, trained here). Outcomes: "locked" (another process holds the cell),
    "skipped" (done before), a failure status from an earlier attempt (not retried: trained is False),
    or the status of this attempt ("done", "failed", "diverged", "oom")."""
    run_dir = Path(run_dir)
    lock = CellLock(run_dir)
    if not lock.acquire(timeout=timeout):
        return "locked", None, False
    try:
        record = files.read_record(run_dir)
        status = files.record_status(record)
        if status == "done":
            return "skipped", record, False
        if status in FAILURES:
            if not retry_failed:
                return status, record, False
            _clear(run_dir)  # a retry starts afresh: a failed cell's checkpoint may be what failed
        if on_start is not None:
            on_start(run_dir.name)
        elif _EVENTS is not None:
            _EVENTS.put(run_dir.name)
        from vitstudy.training.run import run_cell

        record = run_cell(spec, run_dir, progress=progress)
        return record["status"], record, True
    finally:
        lock.release()


def _clear(run_dir: Path) -> None:
    """Everything of a failed attempt but its lock and its record (which counts the attempts)."""
    for path in run_dir.iterdir():
        if path.name in (LOCK_FILE, HOLDER_FILE, METRICS_FILE):
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
