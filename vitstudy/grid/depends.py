"""Cells that wait for other cells: a phase-2 cell for its phase 1 (`train.init_from`,
vitstudy.config.phases), a tuned grid's final cell for its tuning cells (`train.tune_from`,
vitstudy.config.tune). `RunSpec.depends_on()` names them, by run id in the same grid folder.

A phase-2 cell starts once its phase 1 is done (it starts from phase 1's weights); a final cell once
every tuning cell has ended, done or not (a failed candidate scores worst: vitstudy.training.tune).
The local executor runs the cells in `waves`, the Ray executor starts a cell when the cells it waits for
end, the SLURM one chains job arrays; before a waiting cell starts, each asks `unmet` from the records
on disk. No torch import.
"""

from __future__ import annotations

from pathlib import Path

from vitstudy import runfolder
from vitstudy.config.manifest import Cell
from vitstudy.config.spec import RunSpec
from vitstudy.runfolder import FAILURES


def waves(cells: list[Cell]) -> list[list[Cell]]:
    """The cells in rounds, in grid order within each: a cell comes after every cell of `cells` that it
    depends on (cells it depends on that are not in `cells` are `unmet`'s business)."""
    left = list(cells)
    out: list[list[Cell]] = []
    while left:
        waiting = {(c.grid, c.run_id) for c in left}
        wave = [c for c in left if not any((c.grid, d) in waiting for d in c.spec.depends_on())]
        if not wave:  # a cycle cannot come out of a manifest (ids include their dependencies' ids)
            raise ValueError(f"cells wait for each other: {', '.join(c.run_id for c in left)}")
        out.append(wave)
        started = {(c.grid, c.run_id) for c in wave}
        left = [c for c in left if (c.grid, c.run_id) not in started]
    return out


def unmet(spec: RunSpec, folder: Path) -> str | None:
    """Why a cell of grid folder `folder` cannot start now ("its phase 1 X is failed"), or None."""
    first = spec.train.init_from
    if first and (status := runfolder.status(Path(folder) / first)) != "done":
        return f"its phase 1 {first} is {status}"
    for run_id in spec.train.tune_from or ():
        status = runfolder.status(Path(folder) / run_id)
        if status != "done" and status not in FAILURES:
            return f"its tuning cell {run_id} is {status}"
    return None
