"""Per-cell locks, so that two `run-grid` processes (or workers) on one results folder never train
the same cell, and a lock left by a killed process never blocks.

A cell's lock is `<run dir>/.lock`, held with an OS advisory lock (`filelock`: fcntl/flock on POSIX,
msvcrt on Windows) for as long as the cell trains. The kernel releases such a lock when its holder
dies, however it dies (SIGKILL, OOM killer, power loss of a client), so a stale lock *file* is harmless:
the next process simply acquires it, finds the cell's record still saying "running", and resumes
the cell from its last checkpoint. `holder.json` beside it names the holder (pid, host) for `plan`.
Advisory locks are reliable on local disks; on NFS they depend on the server's lock daemon.
No torch import: `plan` uses `is_running`.
"""

from __future__ import annotations

import os
import platform
from contextlib import suppress
from pathlib import Path

from filelock import FileLock, Timeout

from vitstudy import runfolder as files
from vitstudy.runfolder import HOLDER_FILE, LOCK_FILE


class CellLock:
    """The lock of one run directory; `acquire()` returns False at once when another process holds it."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._lock = FileLock(str(self.run_dir / LOCK_FILE), thread_local=False)

    def acquire(self, timeout: float = 0) -> bool:
        """Take the lock, waiting up to `timeout` seconds (-1: as long as it takes)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=timeout, poll_interval=0.2)
        except Timeout:
            return False
        try:
            files.write_json(self.run_dir / HOLDER_FILE, {"pid": os.getpid(), "host": platform.node()})
        except BaseException:  # a full or read-only folder: the lock is not kept
            self._lock.release(force=True)
            raise
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            with suppress(OSError):  # a folder turned read-only keeps it: harmless, is_running asks the lock
                (self.run_dir / HOLDER_FILE).unlink(missing_ok=True)
            self._lock.release(force=True)

    def __enter__(self) -> "CellLock":
        self.acquire(timeout=-1)
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_running(run_dir: str | Path) -> bool:
    """Whether some live process holds the cell's lock. Creates nothing where there is no run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / LOCK_FILE).exists():
        return False
    probe = FileLock(str(run_dir / LOCK_FILE), thread_local=False)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release(force=True)
    return False
