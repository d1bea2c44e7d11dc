"""One attempt at one cell, as run by the local executor in its own process or in a spawned worker:
take the cell's lock, skip it if it is finished (or failed, unless retrying), else train it with
`training.run.run_cell`, which resumes from last.ckpt when an earlier attempt was interrupted.
A results folder that cannot be written (full, read-only) ends the attempt with a StorageError
(vitstudy.runfolder), never a record that says the cell failed: the executor stops the grid.

The executor hears of each cell that starts and, for a live display, of its progress while it trains
(vitstudy.training.progress_events): through callbacks in its own process, or, from a spawned worker,
through a multiprocessing queue: a start is the run id, progress a (run id, fields) pair.

Importing this module imports no torch, so a spawned worker can pin its GPU (CUDA_VISIBLE_DEVICES)
and its CPU threads before torch loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from vitstudy import runfolder as files
from vitstudy.grid.locks import CellLock
from vitstudy.runfolder import FAILURES

_EVENTS: Any = None  # in a spawned worker: a queue to announce the cells it starts (and their progress)
_LIVE = False  # in a spawned worker: whether the executor shows its cells' progress


class Terminated(BaseException):
    """SIGTERM, raised by `on_sigterm`. Not an Exception, so that run_cell does not record it as the
    cell's failure (the cell stays "running" with its last.ckpt and resumes), and not a
    KeyboardInterrupt, which Lightning turns into sys.exit(1)."""


def on_sigterm(signum, frame) -> None:
    """A SIGTERM handler: end the attempt like Ctrl-C (Lightning calls it after its own handler)."""
    raise Terminated(f"signal {signum}")


def init_worker(devices: Any, threads: int | None, events: Any, live: bool = False) -> None:
    """Initialiser of a spawned worker: pin a GPU (one per worker, from the `devices` queue), split the
    CPU threads and apply the thread policy (unless the user set the variables: vitstudy.threads), quiet
    Lightning's info lines. Runs before torch is imported. `live`: send the cells' progress too."""
    global _EVENTS, _LIVE
    _EVENTS, _LIVE = events, live
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    from vitstudy.threads import apply_here

    if "OMP_NUM_THREADS" in apply_here(threads):
        import torch

        torch.set_num_threads(threads)
    from vitstudy.training.quiet import quiet_lightning

    quiet_lightning()


def attempt(spec: Any, run_dir: str | Path, retry_failed: bool = False, progress: bool | None = None,
            timeout: float = 0, on_start: Callable[[str], None] | None = None,
            pack: str | int | None = None, on_progress: Callable[[str, dict], None] | None = None
            ) -> tuple[str, dict | None, bool]:
    """(outcome, metrics record, trained here). Outcomes: "locked" (another process holds the cell),
    "skipped" (done before), a failure status from an earlier attempt (not retried: trained is False),
    or the status of this attempt ("done", "failed", "diverged", "oom"). `progress`: Lightning's own bar
    (None: the spec's choice); `on_progress`: where the cell's progress goes, in this process."""
    run_dir = Path(run_dir)
    try:
        with files.storage_faults(run_dir):
            return _attempt(spec, run_dir, retry_failed, progress, timeout, on_start, pack, on_progress)
    except files.StorageError as e:
        raise files.StorageError(f"stopped at {run_dir.name}: {e}") from e


def _attempt(spec: Any, run_dir: Path, retry_failed: bool, progress: bool | None, timeout: float,
             on_start: Callable[[str], None] | None, pack: str | int | None,
             on_progress: Callable[[str, dict], None] | None) -> tuple[str, dict | None, bool]:
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
            files.clear_attempt(run_dir)  # a retry starts afresh: a failed checkpoint may be what failed
        _announce(run_dir.name, on_start)
        send = _progress_sink(on_progress)
        from vitstudy.training.pack_checkpoint import started_in_pack

        if started_in_pack(run_dir):  # it finishes in a pack, of one (vitstudy.grid.packing)
            from vitstudy.training.pack import run_pack

            record = run_pack([spec], [run_dir], mode=str(pack or "off"), report=send)[0]
        else:
            from vitstudy.training.progress_events import ProgressCallback
            from vitstudy.training.run import run_cell

            # `pack`: the grid's --pack, recorded (vitstudy.grid.packing: this cell trains alone)
            record = run_cell(spec, run_dir, progress=progress,
                              callbacks=(ProgressCallback(run_dir.name, send),) if send else (),
                              pack={"mode": str(pack), "size": 1} if pack is not None else None)
        return record["status"], record, True
    finally:
        lock.release()


def _announce(run_id: str, on_start: Callable[[str], None] | None) -> None:
    """Tell the executor a cell starts: its callback in this process, or a spawned worker's queue."""
    if on_start is not None:
        on_start(run_id)
    elif _EVENTS is not None:
        _EVENTS.put(run_id)


def _progress_sink(on_progress: Callable[[str, dict], None] | None) -> Callable[[str, dict], None] | None:
    """Where a cell's progress goes: the executor's callback in this process, a spawned worker's queue
    when the executor shows progress, else nowhere (None: nothing is measured or sent)."""
    if on_progress is not None:
        return on_progress
    if _EVENTS is not None and _LIVE:
        return lambda run_id, fields: _EVENTS.put((run_id, fields))
    return None


def attempt_pack(specs: list, run_dirs: list, retry_failed: bool = False, mode: str | int = "auto",
                 timeout: float = 0, on_start: Callable[[str], None] | None = None,
                 on_progress: Callable[[str, dict], None] | None = None
                 ) -> list[tuple[str, dict | None, bool]]:
    """`attempt` for cells that train as one pack (vitstudy.training.pack): each member under its own
    lock, skipped or not retried as `attempt` would; the rest train together. One (outcome, record,
    trained here) per cell, in order."""
    run_dirs = [Path(d) for d in run_dirs]
    try:
        with files.storage_faults(run_dirs[0].parent if run_dirs else None):
            return _attempt_pack(specs, run_dirs, retry_failed, mode, timeout, on_start, on_progress)
    except files.StorageError as e:
        raise files.StorageError(f"stopped at the pack of {', '.join(d.name for d in run_dirs)}: {e}") from e


def _attempt_pack(specs: list, run_dirs: list[Path], retry_failed: bool, mode: str | int, timeout: float,
                  on_start: Callable[[str], None] | None, on_progress: Callable[[str, dict], None] | None
                  ) -> list[tuple[str, dict | None, bool]]:
    locks = [CellLock(d) for d in run_dirs]
    outcomes: list = [None] * len(specs)
    held = []
    try:
        for i, (lock, run_dir) in enumerate(zip(locks, run_dirs, strict=True)):
            if not lock.acquire(timeout=timeout):
                outcomes[i] = ("locked", None, False)
                continue
            held.append(lock)
            record = files.read_record(run_dir)
            status = files.record_status(record)
            if status == "done":
                outcomes[i] = ("skipped", record, False)
            elif status in FAILURES and not retry_failed:
                outcomes[i] = (status, record, False)
            elif status in FAILURES:
                files.clear_attempt(run_dir)
        todo = [i for i, o in enumerate(outcomes) if o is None]
        for i in todo:
            _announce(run_dirs[i].name, on_start)
        from vitstudy.grid.packing import resumable_groups
        from vitstudy.training.pack import run_pack

        # a member another process holds is left out: the others may then resume at another epoch
        for group in resumable_groups([run_dirs[i] for i in todo]):
            members = [todo[j] for j in group]
            records = run_pack([specs[i] for i in members], [run_dirs[i] for i in members], mode=str(mode),
                               report=_progress_sink(on_progress))
            for i, record in zip(members, records, strict=True):
                outcomes[i] = (record["status"], record, True)
        return outcomes
    finally:
        for lock in held:
            lock.release()
