"""What an expanded manifest is: its cells (a spec, a run id, the axis values that name it, reference
values) and the Grid that holds them, with the one place a cell's folder is made. No torch import."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitstudy.config.budget import Matched
from vitstudy.config.spec import RunSpec


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its spec, its id, the axis values that distinguish it, reference values."""

    spec: RunSpec
    run_id: str
    axes: tuple[tuple[str, Any], ...]  # (dotted key, value) for each grid axis, seed excluded
    expect: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    expect_source: str | None = field(default=None, compare=False)
    tolerance: dict[str, float] = field(default_factory=dict, compare=False, hash=False)  # metric -> ±
    budget: Matched | None = field(default=None, compare=False)  # the solved `budget:` value, if any

    @property
    def grid(self) -> str:
        """The name of the manifest that owns this cell, i.e. its results folder."""
        return self.spec.grid

    @property
    def stage(self) -> str:
        """"tune" for a tuning cell of a tuned grid (vitstudy.config.tune), else "final"."""
        return self.spec.stage


@dataclass(frozen=True)
class Grid:
    name: str
    file: str
    description: str
    axes: tuple[str, ...]
    cells: tuple[Cell, ...]
    smoke: bool = False
    folder: str = ""  # the top-level results folder: the name, plus "-smoke" for a smoke run

    def cell_dir(self, root: str | Path, cell: Cell) -> Path:
        """`<root>/<cell's grid>/<run id>`, refusing any path that would leave `root`."""
        root = Path(root)
        path = root / cell.grid / cell.run_id
        if not path.resolve().is_relative_to(root.resolve()) or ".." in path.relative_to(root).parts:
            raise ValueError(f"run directory {path} escapes the results root {root}")
        return path


def make_run_id(axes: tuple[tuple[str, Any], ...], spec: RunSpec) -> str:
    """A readable name from the axis values and seed, plus a short hash of the resolved spec. It names a
    folder, so it is made of ASCII letters, digits and `_.+-` only, whatever the values hold (no path
    separator, no control character), and is never `.` or `..` (it always has `_s<seed>-`)."""
    parts = [f"{_name(key.rsplit('.', 1)[-1])}-{_slug(value)}" for key, value in axes]
    if not parts:
        parts = [_name(spec.model.preset or spec.model.mixer)]
    readable = "_".join(parts)[:80]
    return f"{readable}_s{spec.seed}-{spec.digest()}"


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "", str(value).replace(" ", "")) or "x"


def _name(name: str) -> str:
    """A key or preset name as it goes into a run id: unchanged for the names of the schema and the
    registries; anything outside `[A-Za-z0-9_.+-]` dropped."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "", name) or "x"
