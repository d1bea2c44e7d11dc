"""Experiment manifests: YAML → validated, expanded grid of run specs.

    name: digits                  # results go to <out>/<name>/
    defaults:                     # one value for every section field, for every cell
      model: {preset: vit_micro}
      data: {dataset: digits}
      train: {epochs: 30}
    grid:                         # dotted key → list of values; cells are their product
      model.head: [cls, gap]
    seeds: [0, 1, 2]              # the replicate axis

Every cell is validated before anything runs, and every problem of every cell is reported together,
each naming the file, the line where known, the dotted key path, the bad value and what is valid.
Only this layer reads YAML (`yaml.safe_load`: a manifest can never import or run code). No torch import.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vitstudy.models.presets import MODEL_DEFAULTS, PRESETS
from vitstudy.registry import DATASETS, UnknownNameError
from vitstudy.spec import DataSpec, LogSpec, ModelSpec, RunSpec, TrainSpec

SECTIONS: dict[str, type] = {"model": ModelSpec, "data": DataSpec, "train": TrainSpec, "log": LogSpec}
TOP_LEVEL = ("name", "description", "defaults", "grid", "seeds")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Problem:
    path: str  # dotted key path in the manifest, e.g. "grid.model.head[1]"
    message: str
    line: int | None = None


class ManifestError(Exception):
    """Everything wrong with one manifest, reported at once."""

    def __init__(self, file: str | Path, problems: list[Problem]):
        self.file, self.problems = str(file), problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.file}: {len(self.problems)} problem(s); nothing was run"]
        for p in self.problems:
            where = f"{self.file}:{p.line}" if p.line else self.file
            lines.append(f"  {where}: {p.path}: {p.message}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its spec, its id, and the axis values that distinguish it."""

    spec: RunSpec
    run_id: str
    axes: tuple[tuple[str, Any], ...]  # (dotted key, value) for each grid axis, seed excluded

    @property
    def group(self) -> tuple[tuple[str, Any], ...]:
        """The cell's identity without its seed: the row it falls into in a table."""
        return self.axes


@dataclass(frozen=True)
class Grid:
    name: str
    file: str
    description: str
    axes: tuple[str, ...]
    cells: tuple[Cell, ...]


# --------------------------------------------------------------------------------------------------
def load(path: str | Path) -> Grid:
    """Read, validate and expand a manifest file. Raises ManifestError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ManifestError(path, [Problem("<file>", f"cannot read: {e.strerror or e}")]) from None
    return parse(text, path)


def parse(text: str, file: str | Path = "<manifest>") -> Grid:
    try:
        raw = yaml.safe_load(text)
        lines = _LineIndex(yaml.compose(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ManifestError(file, [Problem("<yaml>", f"YAML syntax error: {msg}", line)]) from None
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        valid = ", ".join(TOP_LEVEL)
        raise ManifestError(file, [Problem("<root>", f"a manifest is a mapping with keys: {valid}")])

    def bad(path: tuple, message: str) -> None:
        problems.append(Problem(_dotted(path), message, lines.line(path)))

    for key in raw:
        if key not in TOP_LEVEL:
            bad((key,), _unknown("top-level key", key, TOP_LEVEL))
    name = raw.get("name", Path(str(file)).stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        bad(("name",), f"{name!r} is not a valid grid name: letters, digits, '_', '.', '-' "
                       "(it names a folder)")
    defaults = _section_dicts(raw.get("defaults", {}), ("defaults",), bad)
    axes = _axes(raw.get("grid", {}) or {}, bad)
    seeds = raw.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                      and s >= 0 for s in seeds)):
        bad(("seeds",), f"{seeds!r}: seeds is a non-empty list of non-negative integers, e.g. [0, 1, 2]")
        seeds = []
    elif len(set(seeds)) != len(seeds):
        bad(("seeds",), f"{seeds!r} repeats a seed")
    if problems:
        raise ManifestError(file, problems)

    cells: dict[str, Cell] = {}
    seen: set[Problem] = set()
    combos = list(itertools.product(*[[(k, i, v) for i, v in enumerate(vals)] for k, vals in axes.items()]))
    for combo in combos:
        overrides = {k: (i, v) for k, i, v in combo}
        for seed in seeds:
            try:
                spec = _resolve(name, defaults, overrides, seed)
            except _CellError as e:
                for p in e.problems:
                    prob = Problem(p[0], p[1], lines.line(p[2]))
                    if prob not in seen:
                        seen.add(prob)
                        problems.append(prob)
                continue
            cell_axes = tuple((k, v) for k, _, v in combo)
            run_id = make_run_id(cell_axes, spec)
            cells.setdefault(run_id, Cell(spec, run_id, cell_axes))
    if problems:
        raise ManifestError(file, problems)
    if not cells:
        raise ManifestError(file, [Problem("grid", "the grid has no cells")])
    return Grid(name, str(file), str(raw.get("description", "")), tuple(axes), tuple(cells.values()))


def make_run_id(axes: tuple[tuple[str, Any], ...], spec: RunSpec) -> str:
    """A readable name from the axis values and seed, plus a short hash of the resolved spec."""
    parts = [f"{key.rsplit('.', 1)[-1]}-{_slug(value)}" for key, value in axes]
    if not parts:
        parts = [spec.model.preset or spec.model.mixer]
    readable = "_".join(parts)[:80]
    return f"{readable}_s{spec.seed}-{spec.digest()}"


# --------------------------------------------------------------------------------------------------
class _CellError(Exception):
    def __init__(self, problems: list[tuple[str, str, tuple]]):
        self.problems = problems  # (dotted path, message, yaml path for the line)


def _resolve(name: str, defaults: dict, overrides: dict[str, tuple[int, Any]], seed: int) -> RunSpec:
    """Merge defaults and one cell's axis values into a validated RunSpec."""
    sections = {s: dict(defaults.get(s, {})) for s in SECTIONS}
    origin: dict[tuple[str, str], tuple] = {}  # (section, field) -> yaml path of the value
    for s, fields in sections.items():
        for f in fields:
            origin[(s, f)] = ("defaults", s, f)
    for key, (i, value) in overrides.items():
        s, f = key.split(".", 1)
        sections[s][f] = value
        origin[(s, f)] = ("grid", key, i)

    problems: list[tuple[str, str, tuple]] = []
    model = sections["model"]
    resolved = dict(MODEL_DEFAULTS)
    dataset = sections["data"].get("dataset")
    if dataset in DATASETS:
        meta = DATASETS.entry(dataset).meta
        resolved.update(num_classes=meta["num_classes"], in_chans=meta["in_chans"])
    preset = model.get("preset")
    if preset is not None:
        if preset in PRESETS:
            resolved.update(PRESETS[preset]["args"])
        else:
            path = origin[("model", "preset")]
            problems.append((_dotted(path), str(UnknownNameError("preset", preset, list(PRESETS))), path))
    resolved.update(model)
    sections["model"] = resolved

    try:
        spec = RunSpec(grid=name, seed=seed, **sections)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(str(x) for x in err["loc"])
            section, field = loc[0], (loc[1] if len(loc) > 1 else None)
            path = origin.get((section, field), ("defaults",) + loc) if field else ("defaults", section)
            problems.append((_dotted(path), _explain(err, SECTIONS.get(section)), path))
    if problems:
        raise _CellError(problems)
    return spec


def _section_dicts(defaults: Any, path: tuple, bad) -> dict[str, dict]:
    if not isinstance(defaults, dict):
        bad(path, f"defaults is a mapping of sections ({', '.join(SECTIONS)})")
        return {}
    out = {}
    for section, fields in defaults.items():
        if section not in SECTIONS:
            bad(path + (section,), _unknown("section", section, SECTIONS))
        elif not isinstance(fields, dict):
            bad(path + (section,), f"{section} is a mapping of {section} options, got {fields!r}")
        else:
            out[section] = fields
    return out


def _axes(grid: Any, bad) -> dict[str, list]:
    if not isinstance(grid, dict):
        bad(("grid",), "grid is a mapping of dotted keys (e.g. model.head) to lists of values")
        return {}
    axes = {}
    for key, values in grid.items():
        section, _, field = str(key).partition(".")
        if section not in SECTIONS or not field:
            bad(("grid", key), f"grid keys are 'section.field' with section in {', '.join(SECTIONS)}")
            continue
        fields = SECTIONS[section].model_fields
        if field not in fields:
            bad(("grid", key), _unknown(f"{section} field", field, fields))
        elif not isinstance(values, list) or not values:
            bad(("grid", key), f"{values!r}: a grid axis is a non-empty list of values")
        else:
            axes[key] = values
    return axes


def _explain(err: dict, model: type | None) -> str:
    """One pydantic error as a sentence that says what would be valid."""
    field = str(err["loc"][-1]) if err["loc"] else ""
    if err["type"] == "extra_forbidden" and model is not None:
        return _unknown("option", field, model.model_fields)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return "required, but not given"
    return f"{msg} (got {err['input']!r})" if "input" in err and err["type"] != "value_error" else msg


def _unknown(what: str, name: Any, valid) -> str:
    valid = [str(v) for v in valid]
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {what} '{name}'{hint}; valid: {', '.join(valid)}"


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "", str(value).replace(" ", "")) or "x"


class _LineIndex:
    """Maps a key path to its line in the YAML source (1-based), from the composed node tree."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, path: tuple) -> int | None:
        node = self.root
        for key in path:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == str(key):
                        node = v
                        break
                else:
                    return node.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                break
        return node.start_mark.line + 1 if node is not None else None
