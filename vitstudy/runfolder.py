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
resuming grid) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

METRICS_FILE = "metrics.json"
SPEC_FILE = "spec.yaml"
CKPT_FILE = "last.ckpt"
BEST_FILE = "best.ckpt"
TRACEBACK_FILE = "traceback.txt"
TB_DIR = "tb"
LOCK_FILE = ".lock"
HOLDER_FILE = "holder.json"
SCHEMA_VERSION = 2  # the metrics.json layout

# a record's status: "pending" (no record yet), "running", "done", or one of the failures
PENDING = "pending"
FAILURES = ("failed", "diverged", "oom")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
    """The run's metrics.json record, {} when it has none yet."""
    return read_json(Path(run_dir) / METRICS_FILE) or {}


def record_status(record: dict) -> str:
    """The status a record says: "pending" for an empty record (a run folder without one)."""
    return record.get("status", PENDING)


def status(run_dir: str | Path) -> str:
    """The run's status as its record says: "pending" without a record."""
    return record_status(read_record(run_dir))
