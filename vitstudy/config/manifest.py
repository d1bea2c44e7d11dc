"""Experiment manifests: YAML → validated, expanded grid of run specs. No torch import.

    name: softmax                 # results go to <out>/<name>/<run id>/
    description: free text
    include: [other.yaml, ablations/*.yaml]   # cells of other manifests (paths relative to this file,
                                  # globs allowed); each keeps its own name, folder and ids
    defaults:                     # one value for every section field, for every cell
      model: {preset: vit_micro}  # sections: model, data, train, log
      data: {dataset: digits}
      train: {epochs: 30}
    grid:                         # dotted key → list of values; cells are their product
      model.head: [cls, gap]
      zip:                        # keys that vary together: the i-th values form one axis value
        model.embed_dim: [64, 128]  # (several groups: `zip: [{...}, {...}]`)
        model.num_heads: [2, 4]
    # ... or a list of sub-grids, whose cells are unioned (each sub-grid is a mapping as above):
    # grid:
    #   - {model.mixer: [attention], model.normalizer: [softmax, relu]}
    #   - {model.mixer: [pool, identity]}
    exclude:                      # drop every cell whose resolved spec matches all keys of a rule;
      - {model.head: cls, model.position: none}   # a list value matches any of its items
    seeds: [0, 1, 2]              # the replicate axis (match/exclude may use the key `seed`)
    expect:                       # reference values (the paper's numbers), attached to matching cells
      - match: {model.preset: deit_tiny}   # keys of the resolved spec; no `match`: every cell
        test/acc1: 72.2           # metric name → number (any name: test/acc1, params, macs, ...)
        params: 5.7e6
        source: "Touvron et al. 2021, Table 1"  # optional citation string
    phases:                       # cells that go on in a second phase (Li et al. 2021's CMHSA)
      - match: {model.mixer: conv}  # which cells are phase 1 (keys of the resolved spec, as in expect)
        transfer: conv_to_attention # how phase 1's final weights start phase 2 (vitstudy.config.phases)
        train: {epochs: 300}      # phase 2's own overrides (sections as in defaults)
    smoke:                        # overrides applied with `--smoke`, before validation and hashing
      data: {train_subset: 256}   # (sections as in defaults, plus `seeds`); they win over defaults
      train: {epochs: 1}          # and grid values; smoke cells get their own ids and go to
      seeds: [0]                  # <out>/<name>-smoke/

Semantics: cell = defaults ⊕ one combination of grid values ⊕ (smoke overrides), validated into a RunSpec;
`exclude` and `expect` rules match the resolved spec *without* the smoke overrides, so a smoke run carries
the same reference values. Cells with the same resolved spec collapse to one; a grid with no cells is an
error, and so are an exclude/expect rule that matches no cell, a zip group of unequal lengths, a key on
two axes, an include cycle.

Phases: a cell matched by a `phases` rule (the first that matches) gets the axis `phase: 1` and a phase-2
cell, axis `phase: 2`: phase 1's resolved spec with the transfer's model (vitstudy.config.phases), the rule's
sections over it, then the smoke data/train/log overrides, and `train.init_from` = phase 1's run id (so
phase 2's id includes phase 1's). Exclude rules apply to phase 1 only; expect rules to both. Phase-2
cells come after every phase-1 cell; the executor runs a phase-2 cell once its phase 1 is done.

Objects: `Grid.cells` is a tuple of `Cell`; `cell.spec` (RunSpec), `cell.run_id`, `cell.grid` (the name of
the manifest that owns it: its folder), `cell.axes` ((dotted key, value) pairs that distinguish it),
`cell.expect` (a plain dict metric → float, {} when none), `cell.expect_source` (str or None).
`Grid.cell_dir(root, cell)` is where a cell writes, always inside `root`.

Every cell is validated before anything runs, and every problem of every cell is reported together,
each naming the file, the line where known, the dotted key path, the bad value and what is valid.
Only this layer reads YAML (`yaml.safe_load`: a manifest can never import or run code).
"""

from __future__ import annotations

import difflib
import glob
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vitstudy.config.presets import MODEL_DEFAULTS, PRESETS
from vitstudy.config.recipes import apply_recipe
from vitstudy.config.spec import DataSpec, LogSpec, ModelSpec, RunSpec, TrainSpec
from vitstudy.registry import DATASETS, UnknownNameError

SECTIONS: dict[str, type] = {"model": ModelSpec, "data": DataSpec, "train": TrainSpec, "log": LogSpec}
TOP_LEVEL = ("name", "description", "include", "defaults", "grid", "exclude", "seeds", "expect", "smoke",
             "phases")
SMOKE_SUFFIX = "-smoke"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Problem:
    path: str  # dotted key path in the manifest, e.g. "grid.model.head[1]"
    message: str
    line: int | None = None
    file: str | None = None  # set when the problem is in an included manifest


class ManifestError(Exception):
    """Everything wrong with one manifest, reported at once."""

    def __init__(self, file: str | Path, problems: list[Problem]):
        self.file, self.problems = str(file), problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.file}: {len(self.problems)} problem(s); nothing was run"]
        for p in self.problems:
            file = p.file or self.file
            where = f"{file}:{p.line}" if p.line else file
            lines.append(f"  {where}: {p.path}: {p.message}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its spec, its id, the axis values that distinguish it, reference values."""

    spec: RunSpec
    run_id: str
    axes: tuple[tuple[str, Any], ...]  # (dotted key, value) for each grid axis, seed excluded
    expect: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    expect_source: str | None = field(default=None, compare=False)

    @property
    def group(self) -> tuple[tuple[str, Any], ...]:
        """The cell's identity without its seed: the row it falls into in a table."""
        return self.axes

    @property
    def grid(self) -> str:
        """The name of the manifest that owns this cell, i.e. its results folder."""
        return self.spec.grid


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


# --------------------------------------------------------------------------------------------------
def load(path: str | Path, smoke: bool = False) -> Grid:
    """Read, validate and expand a manifest file. Raises ManifestError listing every problem."""
    return _load(Path(path), smoke, ())


def parse(text: str, file: str | Path = "<manifest>", smoke: bool = False) -> Grid:
    """Validate and expand manifest text (`file` names it in errors and anchors relative includes)."""
    return _parse(text, file, smoke, ())


def _load(path: Path, smoke: bool, stack: tuple[Path, ...]) -> Grid:
    try:
        text = path.read_text()
    except OSError as e:
        raise ManifestError(path, [Problem("<file>", f"cannot read: {e.strerror or e}")]) from None
    return _parse(text, path, smoke, stack)


def _parse(text: str, file: str | Path, smoke: bool, stack: tuple[Path, ...]) -> Grid:
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
        prob = Problem(_dotted(path), message, lines.line(path))
        if prob not in problems:
            problems.append(prob)

    for key in raw:
        if key not in TOP_LEVEL:
            bad((key,), _unknown("top-level key", key, TOP_LEVEL))
    name = raw.get("name", Path(str(file)).stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        bad(("name",), f"{name!r} is not a valid grid name: letters, digits, '_', '.', '-' "
                       "(it names a folder)")
        name = "invalid"
    included = _includes(raw.get("include"), file, smoke, stack, bad, problems)
    own_cells_wanted = not included or any(k in raw for k in ("defaults", "grid", "seeds"))
    defaults = _section_dicts(raw.get("defaults", {}), ("defaults",), bad, "defaults")
    subgrids = _subgrids(raw.get("grid", {}), bad)
    seeds = _seeds(raw.get("seeds", [0]), ("seeds",), bad)
    excludes = _rules(raw.get("exclude", []), "exclude", bad)
    expects = _rules(raw.get("expect", []), "expect", bad)
    smoke_sections, smoke_seeds = _smoke(raw.get("smoke"), bad)
    phase_rules = _phase_rules(raw.get("phases"), bad)
    if smoke and smoke_seeds is not None:
        seeds = smoke_seeds
    if problems:
        raise ManifestError(file, problems)

    cell_name = name + SMOKE_SUFFIX if smoke and "smoke" in raw else name
    cells: dict[str, Cell] = {}  # digest (with grid name) -> first cell with that spec
    used_excludes, used_expects, used_phases = set(), set(), set()
    second: dict[str, Cell] = {}  # phase-2 cells, after every phase-1 cell
    for combo in (itertools.chain.from_iterable(_combos(s) for s in subgrids) if own_cells_wanted else []):
        overrides = {key: (value, path) for key, value, path in combo}
        for seed in seeds:
            try:
                spec = _resolve(name, defaults, overrides, seed, {})
                semantic = spec.model_dump(mode="json")
                if smoke and "smoke" in raw:
                    spec = _resolve(cell_name, defaults, overrides, seed, smoke_sections)
            except _CellError as e:
                for path, message in e.problems:
                    bad(path, message)
                continue
            hit = [i for i, rule in enumerate(excludes) if _matches(rule["match"], semantic)]
            used_excludes.update(hit)
            if hit:
                continue
            expect, source = _expected(expects, semantic, used_expects)
            cell_axes = tuple((k, v) for k, v, _ in combo)
            phased = next((i for i, r in enumerate(phase_rules) if _matches(r["match"], semantic)), None)
            if phased is not None:
                used_phases.add(phased)
                cell_axes += (("phase", 1),)
            cell = Cell(spec, make_run_id(cell_axes, spec), cell_axes, expect, source)
            cells.setdefault(f"{spec.grid}/{spec.digest()}", cell)
            if phased is not None:
                rule, smoke2 = phase_rules[phased], smoke_sections if smoke and "smoke" in raw else {}
                try:
                    semantic2 = _next_phase(semantic, cell.run_id, rule, {}, phased).model_dump(mode="json")
                    spec2 = _next_phase(spec.model_dump(mode="json"), cell.run_id, rule, smoke2, phased)
                except _CellError as e:
                    for path, message in e.problems:
                        bad(path, message)
                    continue
                axes2 = cell_axes[:-1] + (("phase", 2),)
                expect2, source2 = _expected(expects, semantic2, used_expects)
                second.setdefault(f"{spec2.grid}/{spec2.digest()}",
                                  Cell(spec2, make_run_id(axes2, spec2), axes2, expect2, source2))
    for key, cell in second.items():
        cells.setdefault(key, cell)
    for kind, rules, used in (("exclude", excludes, used_excludes), ("expect", expects, used_expects),
                              ("phases", phase_rules, used_phases)):
        for i, rule in enumerate(rules):
            if own_cells_wanted and i not in used and not problems:
                where = (kind, i) if kind == "exclude" else (kind, i, "match")
                bad(where, f"{rule['match']!r} matches no cell of the grid; "
                           "check the keys and values against the grid's axes")
    if problems:
        raise ManifestError(file, problems)
    for sub in included:
        for cell in sub.cells:
            cells.setdefault(f"{cell.grid}/{cell.spec.digest()}", cell)
    if not cells:
        raise ManifestError(file, [Problem("grid", "the grid has no cells (every cell was excluded?)",
                                           lines.line(("grid",)))])
    axes = list(dict.fromkeys(k for sub in subgrids for factor in sub for opt in factor for k, _, _ in opt))
    axes += ["phase"] if used_phases else []
    for sub in included:
        axes += [a for a in sub.axes if a not in axes]
    return Grid(name, str(file), str(raw.get("description", "")), tuple(axes), tuple(cells.values()),
                smoke, cell_name)


def make_run_id(axes: tuple[tuple[str, Any], ...], spec: RunSpec) -> str:
    """A readable name from the axis values and seed, plus a short hash of the resolved spec."""
    parts = [f"{key.rsplit('.', 1)[-1]}-{_slug(value)}" for key, value in axes]
    if not parts:
        parts = [spec.model.preset or spec.model.mixer]
    readable = "_".join(parts)[:80]
    return f"{readable}_s{spec.seed}-{spec.digest()}"


# --------------------------------------------------------------------------------------------------
class _CellError(Exception):
    def __init__(self, problems: list[tuple[tuple, str]]):
        self.problems = problems  # (yaml path, message)


def _resolve(name: str, defaults: dict, overrides: dict[str, tuple[Any, tuple]], seed: int,
             smoke: dict) -> RunSpec:
    """Merge defaults, one cell's axis values and the smoke overrides into a validated RunSpec."""
    sections = {s: dict(defaults.get(s, {})) for s in SECTIONS}
    origin: dict[tuple[str, str], tuple] = {}  # (section, field) -> yaml path of the value
    for s, fields in sections.items():
        for f in fields:
            origin[(s, f)] = ("defaults", s, f)
    for key, (value, path) in overrides.items():
        s, f = key.split(".", 1)
        sections[s][f] = value
        origin[(s, f)] = path
    for s, fields in smoke.items():
        for f, value in fields.items():
            sections[s][f] = value
            origin[(s, f)] = ("smoke", s, f)
    # a named recipe fills what the manifest leaves unset (vitstudy.config.recipes); explicit values win
    for key in apply_recipe(sections, {s: set(fields) for s, fields in sections.items()}):
        origin[key] = origin[("train", "recipe")]

    problems: list[tuple[tuple, str]] = []
    model = sections["model"]
    resolved = dict(MODEL_DEFAULTS)
    dataset = sections["data"].get("dataset")
    if isinstance(dataset, str) and dataset in DATASETS:
        meta = DATASETS.entry(dataset).meta
        resolved.update(num_classes=meta["num_classes"], in_chans=meta["in_chans"])
    preset = model.get("preset")
    if preset is not None:
        if isinstance(preset, str) and preset in PRESETS:
            resolved.update(PRESETS[preset]["args"])
        else:
            path = origin[("model", "preset")]
            problems.append((path, str(UnknownNameError("preset", preset, list(PRESETS)))))
    resolved.update(model)
    sections["model"] = resolved
    classes_unknown = resolved.get("num_classes", 0) is None  # e.g. imagefolder: its folders fix them
    if classes_unknown:
        problems.append((origin.get(("data", "dataset"), ("defaults", "data", "dataset")),
                         f"dataset '{dataset}' takes its classes from its folders: set model.num_classes"))

    try:
        spec = RunSpec(grid=name, seed=seed, **sections)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(str(x) for x in err["loc"])
            if classes_unknown and loc[:2] == ("model", "num_classes"):
                continue  # said above, with what to do
            section, fld = loc[0], (loc[1] if len(loc) > 1 else None)
            path = origin.get((section, fld), ("defaults",) + loc) if fld else ("defaults", section)
            problems.append((path, _explain(err, SECTIONS.get(section))))
    if problems:
        raise _CellError(problems)
    return spec


def _includes(value: Any, file: str | Path, smoke: bool, stack: tuple[Path, ...], bad,
              problems: list[Problem]) -> list[Grid]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        bad(("include",), f"{value!r}: include is a manifest path or a list of them (globs allowed), "
                          "relative to this file")
        return []
    here = Path(str(file)).resolve()
    base = here.parent if Path(str(file)).name != "<manifest>" else Path.cwd()
    grids = []
    for i, pattern in enumerate(items):
        path = ("include", i) if isinstance(value, list) else ("include",)
        matches = sorted(glob.glob(str(base / pattern))) if glob.has_magic(pattern) else [str(base / pattern)]
        if not matches:
            bad(path, f"{pattern!r} matches no file (paths are relative to {base})")
        for m in matches:
            target = Path(m).resolve()
            if target == here or target in stack:
                bad(path, f"{pattern!r} includes itself (include cycle: "
                          f"{' -> '.join(p.name for p in (*stack, here, target))})")
                continue
            if not target.is_file():
                bad(path, f"{pattern!r}: no such manifest file {target}")
                continue
            try:
                grids.append(_load(target, smoke, (*stack, here)))
            except ManifestError as e:
                problems.extend(Problem(p.path, p.message, p.line, p.file or e.file) for p in e.problems)
    return grids


def _section_dicts(defaults: Any, path: tuple, bad, what: str) -> dict[str, dict]:
    if defaults is None:
        return {}
    if not isinstance(defaults, dict):
        bad(path, f"{what} is a mapping of sections ({', '.join(SECTIONS)})")
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


def _seeds(seeds: Any, path: tuple, bad) -> list[int]:
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                      and s >= 0 for s in seeds)):
        bad(path, f"{seeds!r}: seeds is a non-empty list of non-negative integers, e.g. [0, 1, 2]")
        return []
    if len(set(seeds)) != len(seeds):
        bad(path, f"{seeds!r} repeats a seed")
    return seeds


def _expected(expects: list[dict], semantic: dict, used: set) -> tuple[dict[str, float], str | None]:
    """The reference values (and their source) of every expect rule matching a resolved spec."""
    expect: dict[str, float] = {}
    source = None
    for i, rule in enumerate(expects):
        if _matches(rule["match"], semantic):
            used.add(i)
            expect.update(rule["values"])
            source = rule["source"] or source
    return expect, source


def _phase_rules(rules: Any, bad) -> list[dict]:
    """phases: [{match: {key: value}, transfer: name, <section>: {...}}] (see the module docstring)."""
    from vitstudy.config.phases import TRANSFERS

    if rules is None:
        return []
    if not isinstance(rules, list):
        bad(("phases",), "phases is a list of rules, e.g. [{match: {model.mixer: conv}, "
                         "transfer: conv_to_attention, train: {epochs: 300}}]")
        return []
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or rule.get("transfer") not in TRANSFERS:
            got = rule.get("transfer") if isinstance(rule, dict) else rule
            bad(("phases", i) + (("transfer",) if isinstance(rule, dict) else ()),
                f"{got!r}: a phase rule is a mapping with `transfer` (one of {', '.join(TRANSFERS)}), "
                "optionally `match` and phase-2 sections")
            continue
        match = rule.get("match", {})
        checked = _rules([{"match": match, "phase": 2}], "expect",
                         lambda p, m, i=i: bad(("phases", i) + p[2:], m))
        rest = {k: v for k, v in rule.items() if k not in ("match", "transfer")}
        sections = _section_dicts(rest, ("phases", i), bad, "a phase rule")
        for section, fields in sections.items():
            for f in fields:
                if f not in SECTIONS[section].model_fields or (section, f) in (("train", "init_from"),
                                                                               ("train", "transfer")):
                    valid = SECTIONS[section].model_fields
                    bad(("phases", i, section, f), _unknown(f"{section} option", f, valid))
        if checked:
            out.append({"match": match, "transfer": rule["transfer"], "sections": sections})
    return out


def _next_phase(first: dict, run_id: str, rule: dict, smoke: dict, index: int) -> RunSpec:
    """Phase 2's spec from phase 1's resolved spec (JSON data), its run id and the phase rule."""
    from vitstudy.config.phases import transferred_model

    sections = {s: dict(first.get(s, {})) for s in SECTIONS}
    try:
        sections["model"] = transferred_model(sections["model"], rule["transfer"])
    except ValueError as e:
        raise _CellError([(("phases", index, "transfer"), str(e))]) from None
    for s, fields in rule["sections"].items():
        sections[s].update(fields)
    sections["train"].update(init_from=run_id, transfer=rule["transfer"])
    for s, fields in smoke.items():
        if s != "model":  # phase 1's model already has the smoke overrides; the transfer derives from it
            sections[s].update(fields)
    try:
        return RunSpec(grid=first["grid"], seed=first["seed"], **sections)
    except ValidationError as e:
        raise _CellError([(("phases", index) + tuple(str(x) for x in err["loc"][:2]),
                           "phase 2: " + _explain(err, SECTIONS.get(str(err["loc"][0]))))
                          for err in e.errors()]) from None


def _smoke(smoke: Any, bad) -> tuple[dict[str, dict], list[int] | None]:
    if smoke is None:
        return {}, None
    if not isinstance(smoke, dict):
        bad(("smoke",), f"smoke is a mapping of sections ({', '.join(SECTIONS)}) and/or seeds")
        return {}, None
    seeds = _seeds(smoke["seeds"], ("smoke", "seeds"), bad) if "seeds" in smoke else None
    rest = {k: v for k, v in smoke.items() if k != "seeds"}
    sections = _section_dicts(rest, ("smoke",), bad, "smoke")
    for section, fields in sections.items():
        for f in fields:
            if f not in SECTIONS[section].model_fields:
                bad(("smoke", section, f), _unknown(f"{section} option", f, SECTIONS[section].model_fields))
    return sections, seeds


Option = tuple[tuple[str, Any, tuple], ...]  # the (key, value, yaml path) triples set together


def _subgrids(grid: Any, bad) -> list[list[list[Option]]]:
    """The grid as a list of sub-grids; each sub-grid a list of factors (their product is its cells);
    each factor a list of options."""
    if grid is None or grid == {}:
        return [[]]
    if isinstance(grid, list):
        if not grid:
            bad(("grid",), "an empty list of sub-grids has no cells; give at least one mapping")
            return []
        return [_factors(sub, ("grid", i), bad) for i, sub in enumerate(grid)]
    return [_factors(grid, ("grid",), bad)]


def _factors(grid: Any, path: tuple, bad) -> list[list[Option]]:
    if not isinstance(grid, dict):
        bad(path, "a grid is a mapping of dotted keys (e.g. model.head) to lists of values, "
                  "or a list of such mappings (sub-grids whose cells are unioned)")
        return []
    factors: list[list[Option]] = []
    seen: dict[str, tuple] = {}

    def check_key(key: Any, kpath: tuple) -> bool:
        section, _, fld = str(key).partition(".")
        if section not in SECTIONS or not fld:
            bad(kpath, f"grid keys are 'section.field' with section in {', '.join(SECTIONS)}"
                       " (or `zip`)")
            return False
        if fld not in SECTIONS[section].model_fields:
            bad(kpath, _unknown(f"{section} field", fld, SECTIONS[section].model_fields))
            return False
        if key in seen:
            bad(kpath, f"{key} is already an axis at {_dotted(seen[key])}; a key varies in one place")
            return False
        seen[key] = kpath
        return True

    def check_values(values: Any, kpath: tuple) -> bool:
        if not isinstance(values, list) or not values:
            bad(kpath, f"{values!r}: a grid axis is a non-empty list of values")
            return False
        return True

    for key, values in grid.items():
        if key == "zip":
            groups = values if isinstance(values, list) else [values]
            for gi, group in enumerate(groups):
                gpath = path + (("zip", gi) if isinstance(values, list) else ("zip",))
                if not isinstance(group, dict) or not group:
                    bad(gpath, "zip is a mapping of dotted keys to lists of equal length "
                               "(or a list of such mappings)")
                    continue
                ok = {k: v for k, v in group.items()
                      if check_key(k, gpath + (k,)) & check_values(v, gpath + (k,))}
                lengths = {k: len(v) for k, v in group.items() if isinstance(v, list)}
                if len(set(lengths.values())) > 1:
                    bad(gpath, f"zipped lists differ in length ({lengths}); their i-th values go "
                               "together, so they must be equally long")
                    continue
                if ok and len(ok) == len(group):
                    n = len(next(iter(ok.values())))
                    factors.append([tuple((k, v[i], gpath + (k, i)) for k, v in ok.items())
                                    for i in range(n)])
        elif check_key(key, path + (key,)) and check_values(values, path + (key,)):
            factors.append([((key, v, path + (key, i)),) for i, v in enumerate(values)])
    return factors


def _combos(factors: list[list[Option]]):
    for options in itertools.product(*factors):
        yield tuple(triple for option in options for triple in option)


def _rules(rules: Any, kind: str, bad) -> list[dict]:
    """exclude: [{key: value, ...}]; expect: [{match: {key: value}, metric: number, source: str}]."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        example = ("[{model.head: cls, model.position: none}]" if kind == "exclude"
                   else "[{match: {model.preset: deit_tiny}, test/acc1: 72.2}]")
        bad((kind,), f"{kind} is a list of rules, e.g. {example}")
        return []
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or (kind == "exclude" and not rule):
            bad((kind, i), f"{rule!r}: a rule is a mapping" + (
                " of spec keys to values" if kind == "exclude" else " with `match` and metric values"))
            continue
        match = rule if kind == "exclude" else rule.get("match", {})
        mpath = (kind, i) if kind == "exclude" else (kind, i, "match")
        if not isinstance(match, dict):
            bad(mpath, f"{match!r}: match is a mapping of spec keys (e.g. model.preset) to values")
            continue
        good = True
        for key in match:
            section, _, fld = str(key).partition(".")
            if key == "seed":
                continue
            if section not in SECTIONS or not fld:
                bad(mpath + (key,), f"keys are 'section.field' (section in {', '.join(SECTIONS)}) or 'seed'")
                good = False
            elif fld not in SECTIONS[section].model_fields:
                bad(mpath + (key,), _unknown(f"{section} field", fld, SECTIONS[section].model_fields))
                good = False
        values, source = {}, None
        if kind == "expect":
            for key, value in rule.items():
                if key == "match":
                    continue
                if key == "source":
                    if not isinstance(value, str):
                        bad((kind, i, key), f"{value!r}: source is a string (a citation)")
                    source = str(value)
                    continue
                number = _number(value)  # YAML 1.1 reads 5.7e6 (no sign in the exponent) as a string
                if number is None:
                    bad((kind, i, key), f"{value!r}: an expected value is a finite number "
                                        "(e.g. test/acc1: 72.2, params: 5.7e6)")
                    good = False
                else:
                    values[str(key)] = number
            if not values:
                bad((kind, i), "an expect rule gives at least one metric value, e.g. test/acc1: 72.2")
                good = False
        if good:
            out.append({"match": match, "values": values, "source": source})
    return out


def _number(value: Any) -> float | None:
    """A finite number from an int, a float or a numeric string ("5.7e6"), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _matches(match: dict, spec: dict) -> bool:
    """Whether a resolved spec (as JSON data) has every key's value; a list value means any of."""
    for key, want in match.items():
        section, _, fld = key.partition(".")
        have = _hashable(spec["seed"] if key == "seed" else spec.get(section, {}).get(fld))
        if not any(have == _hashable(w) for w in (want if isinstance(want, list) else [want])):
            return False
    return True


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _explain(err: dict, model: type | None) -> str:
    """One pydantic error as a sentence that says what would be valid."""
    field_name = str(err["loc"][-1]) if err["loc"] else ""
    if err["type"] == "extra_forbidden" and model is not None:
        return _unknown("option", field_name, model.model_fields)
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
