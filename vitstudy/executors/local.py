"""Run a grid's cells one after another in this process, skipping finished ones."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

from vitstudy.manifest import Grid
from vitstudy.train import read_status, run_cell


def run_local(grid: Grid, out: Path, fail_fast: bool = False,
              echo: Callable[[str], None] = print) -> Counter:
    """Train every pending cell; return a Counter of final statuses (done, skipped, failed, ...)."""
    counts: Counter = Counter()
    total = len(grid.cells)
    for i, cell in enumerate(grid.cells, 1):
        run_dir = out / grid.name / cell.run_id
        if read_status(run_dir) == "done":
            counts["skipped"] += 1
            continue
        echo(f"[{i}/{total}] {cell.run_id} ...")
        record = run_cell(cell.spec, run_dir)
        status = record["status"]
        counts[status] += 1
        if status == "done":
            acc = record["metrics"].get("test/acc1", float("nan"))
            echo(f"[{i}/{total}] {cell.run_id} done: test/acc1 {acc:.2f}% in {record['wall_time_s']:.1f}s")
        else:
            echo(f"[{i}/{total}] {cell.run_id} {status}: {record['error']['message']}")
            if fail_fast:
                break
    return counts
