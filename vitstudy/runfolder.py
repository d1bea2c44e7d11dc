"""A run's folder on disk: its file names, the metrics.json record and its status, atomic writes.

Every layer that touches a run folder goes through this module: training writes it, the executors and
`plan` read each cell's status from it, the report reads the records. Nothing here imports torch.

    <results root>/<grid>/<run id>/
      spec.yaml       the fully resolved run spec
      metrics.json    the record (schema 2, vitstudy.training.run._record): status, spec, metrics, cost, env
      tb/             TensorBoard event files
      last.ckpt       the latest checkpoint (a resumed cell starts from it); best.ckpt: best validation
      traceback.txt   a failed cell's traceback
      .lock           the cell's lock (vitstudy.grid.locks), holder.json: who holds it

Writes are atomic: a temporary file beside the target, fsync, rename. A reader (a report, `plan`, a
resuming grid) sees either the old file or the new one, never half of one. A finished ("done") record is
never replaced by a later attempt's unfinished or failed one (`write_record`).

Faults of the folder itself are not a cell's failure. A full disk, a quota or a read-only folder ends the
command with a `StorageError` (which names the file and the errno), before any record says "failed": what
was written stays whole and the same command, run again once the folder is writable, goes on from there.
A file cut short by something else (a crash of the machine, an unfinished copy) is found and said: a
metrics.json that cannot be read is a "damaged" record (shown by `plan` and the report, retrained by
`run-grid`), and `recover` clears what an attempt cannot resume from before the cell trains again.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Callable, Iterator

METRICS_FILE = "metrics.json"
SPEC_FILE = "spec.yaml"
CKPT_FILE = "last.ckpt"
BEST_FILE = "best.ckpt"
PREV_FILE = "prev.ckpt"  # a pack member's previous checkpoint (vitstudy.training.pack_checkpoint)
TRACEBACK_FILE = "traceback.txt"
TB_DIR = "tb"
LOCK_FILE = ".lock"
HOLDER_FILE = "holder.json"
SCHEMA_VERSION = 2  # the metrics.json layout

# a record's status: "pending" (no record yet), "running", "done", one of the failures, or "damaged" (a
# metrics.json that cannot be read: not a failure of the cell, which run-grid trains again)
PENDING = "pending"
FAILURES = ("failed", "diverged", "oom")
DAMAGED = "damaged"
DAMAGED_SUFFIX = ".damaged"  # a damaged metrics.json is kept beside the new one, as metrics.json.damaged

# a full disk, a quota, a read-only file system: never a cell's fault (for a permission refused, see
# `storage_error`)
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class StorageError(Exception):
    """Files cannot be written where they must go (full, over quota, read-only): the command stops, and the
    same command goes on from there once the folder is writable. Its message names the file and the errno."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(file)` into a temporary file beside it, then rename it into place. An
    OSError names `path` (not the temporary file, which is removed)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with suppress(OSError):  # a folder that just turned read-only keeps it
                Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any | None:
    """The parsed file, or None if it does not exist."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def read_record(run_dir: str | Path) -> dict:
    """The run's metrics.json record: {} when it has none yet, a "damaged" record when the file cannot be
    read as one (cut short, empty, not JSON), whose error says why."""
    path = Path(run_dir) / METRICS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        return damaged_record(path, os.strerror(e.errno) if e.errno else str(e))
    if not data.strip():
        return damaged_record(path, f"empty, {len(data)} bytes")
    try:
        record = json.loads(data)
    except UnicodeDecodeError:
        return damaged_record(path, f"{len(data)} bytes, not UTF-8 text")
    except ValueError as e:  # json.JSONDecodeError
        return damaged_record(path, f"{len(data)} bytes, not JSON at byte {getattr(e, 'pos', '?')}")
    if not isinstance(record, dict) or not isinstance(record.get("status", PENDING), str):
        return damaged_record(path, f"{len(data)} bytes, JSON but not a record")
    return record


def damaged_record(path: Path, why: str) -> dict:
    """The record of a run whose metrics.json cannot be read: status "damaged", the reason as its error."""
    message = (f"{path.name} cannot be read ({why}); run-grid sets it aside and runs the cell again, from "
               f"its last checkpoint when that is whole. (vitstudy writes its files whole: something else "
               f"cut it short, such as an unfinished copy or a crash of the machine.)")
    return {"run_id": path.parent.name, "status": DAMAGED,
            "error": {"category": DAMAGED, "type": "DamagedRecord", "message": message, "why": why}}


def write_record(run_dir: str | Path, record: dict) -> bool:
    """Write the run's metrics.json, unless that would replace a finished ("done") record with a record
    that is not: a result is never lost to a later attempt that failed or did not end. Returns whether
    it wrote."""
    if record_status(read_record(run_dir)) == "done" and record.get("status") != "done":
        return False
    write_json(Path(run_dir) / METRICS_FILE, record)
    return True


def record_status(record: dict) -> str:
    """The status a record says: "pending" for an empty record (a run folder without one)."""
    return record.get("status", PENDING)


def status(run_dir: str | Path) -> str:
    """The run's status as its record says: "pending" without a record."""
    return record_status(read_record(run_dir))


def storage_error(error: BaseException, folder: str | Path | None = None) -> StorageError | None:
    """`error` as a StorageError when it is a full disk, a quota or a read-only file system (or, for a
    file under `folder`, a permission refused: a folder made read-only for its user), else None. The
    first such fault among the errors it was raised while handling is the one named (a later one, such as
    a logger's flush while Lightning handles the first, is its consequence); one raised `from` another
    restates it (atomic_write names the file, not its temporary one)."""
    if isinstance(error, StorageError):
        return error
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = None if error.__cause__ is not None or error.__suppress_context__ else error.__context__
    faults = [e for e in chain if isinstance(e, OSError) and _storage_fault(e, folder)]
    if not faults:
        return None
    first = next((e for e in reversed(faults) if e.filename), faults[-1])
    where = first.filename or folder or "the results folder"
    name = errno.errorcode.get(first.errno, str(first.errno))
    return StorageError(f"cannot write {where}: {os.strerror(first.errno)} ({name})")


@contextmanager
def storage_faults(folder: str | Path | None = None) -> Iterator[None]:
    """Within: an OSError that is a storage fault (see `storage_error`) is raised as a StorageError."""
    try:
        yield
    except OSError as e:
        if (fault := storage_error(e, folder)) is None:
            raise
        raise fault from e


def _storage_fault(e: OSError, folder: str | Path | None) -> bool:
    if e.errno in STORAGE_ERRNOS:
        return True
    if e.errno in (errno.EACCES, errno.EPERM) and folder is not None and e.filename:
        return Path(os.fspath(e.filename)).resolve().is_relative_to(Path(folder).resolve())
    return False


# -- recovery: what an earlier attempt left that cannot be read ------------------------------------------
CHECKPOINTS = (CKPT_FILE, PREV_FILE, BEST_FILE)


def checkpoint_damage(path: str | Path) -> str | None:
    """Why a checkpoint cannot be read (empty, cut short), or None when it is whole or missing. A torch
    checkpoint is a zip archive whose directory is at its end: a file cut anywhere has none. Reads the
    directory only."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return "empty, 0 bytes"
    try:
        with zipfile.ZipFile(path):
            return None
    except (zipfile.BadZipFile, OSError) as e:
        return f"{size} bytes, cut short or not a checkpoint: {e}"


def damaged_checkpoints(run_dir: str | Path) -> dict[str, str]:
    """{file name: why} of the run's checkpoints that cannot be read."""
    found = {name: checkpoint_damage(Path(run_dir) / name) for name in CHECKPOINTS}
    return {name: why for name, why in found.items() if why is not None}


def recover(run_dir: str | Path) -> list[str]:
    """Before a cell trains again: set aside a metrics.json that cannot be read (as metrics.json.damaged),
    and when a checkpoint cannot be read, clear the earlier attempts' files (`clear_attempt`), so that the
    cell starts from scratch rather than fail on it. One note per thing done, for the new record
    (`recovered`) and the console."""
    run_dir = Path(run_dir)
    notes = []
    record = read_record(run_dir)
    if record_status(record) == DAMAGED:
        path = run_dir / METRICS_FILE
        os.replace(path, path.with_name(path.name + DAMAGED_SUFFIX))
        notes.append(f"{METRICS_FILE} cannot be read ({record['error']['why']}): set aside as "
                     f"{METRICS_FILE}{DAMAGED_SUFFIX}, this attempt writes a new record")
    damaged = damaged_checkpoints(run_dir)
    if damaged:
        clear_attempt(run_dir)
        notes += [f"{name} cannot be read ({why}): removed with the earlier attempts' files, the cell "
                  f"starts from scratch" for name, why in damaged.items()]
    return notes


def clear_attempt(run_dir: str | Path) -> None:
    """Everything an earlier attempt left but the cell's lock, its record (which counts the attempts) and
    a damaged record set aside."""
    for path in Path(run_dir).iterdir():
        if path.name in (LOCK_FILE, HOLDER_FILE, METRICS_FILE) or path.name.endswith(DAMAGED_SUFFIX):
            continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
