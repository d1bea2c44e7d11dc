"""Experiment manifests: YAML → validated, expanded grid of run specs. No torch import.

    name: softmax                 # results go to <out>/<name>/<run id>/
    description: free text
    include: [other.yaml, ablations/*.yaml]   # cells of other manifests (paths relative to this file,
                                  # globs allowed, inside the project: the folder of the manifest
                                  # loaded, unless include_root or $VITSTUDY_INCLUDE_ROOT allows
                                  # another); each keeps its own name, folder and ids
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
        test/acc1: 72.2           # metric name → number (any name: test/acc1, params, macs, ...),
                                  # or {value: 72.2, tolerance: 0.5} for `vitstudy check`
        params: 5.7e6
        source: "Touvron et al. 2021, Table 1"  # optional citation string
    phases:                       # cells that go on in a second phase (Li et al. 2021's CMHSA)
      - match: {model.mixer: conv}  # which cells are phase 1 (keys of the resolved spec, as in expect)
        transfer: conv_to_attention # how phase 1's final weights start phase 2 (vitstudy.config.phases)
        train: {epochs: 300}      # phase 2's own overrides (sections as in defaults)
    tune:                         # per-variant tuning: every variant (a combination of grid values) first
      train.lr: [1.0e-3, 3.0e-3, 1.0e-2]  # trains each candidate (the product of these lists) on
      train.weight_decay: [0.0, 0.05]     # `seeds`, then the manifest's seeds run at the candidate with
      seeds: [100]                # the best validation score (default seeds: [0])
      metric: val/acc1            # default; a val/* or best:val/* metric; */loss is minimised; never test/*
    budget:                       # match every variant's cost to a reference by adjusting one option
      cost: params                # or macs
      adjust: model.embed_dim     # or model.depth; embed_dim moves in steps that keep num_heads dividing it
      reference: baseline         # default: the first variant (at its own options); or a number (5.7e6),
                                  # or a mapping of grid keys naming the reference variant {model.mixer: conv}
      tolerance: 0.05             # relative; default 0.05
    smoke:                        # overrides applied with `--smoke`, before validation and hashing
      data: {train_subset: 256}   # (sections as in defaults, plus `seeds`); they win over defaults
      train: {epochs: 1}          # and grid values; smoke cells get their own ids and go to
      seeds: [0]                  # <out>/<name>-smoke/
      expect: [...]               # the smoke run's own expect rules (a CI gate), instead of the manifest's

Semantics: cell = defaults ⊕ one combination of grid values ⊕ (smoke overrides), validated into a RunSpec;
`exclude` and `expect` rules match the resolved spec *without* the smoke overrides, so a smoke run carries
the same reference values, unless `smoke:` has expect rules of its own, which then replace them. Cells
with the same resolved spec collapse to one; a grid with no cells is an error, and so are an
exclude/expect rule that matches no cell, a zip group of unequal lengths, a key on two axes, an include
cycle. An option a cell's axis values set that none of its components reads (a pool
mixer's num_heads) keeps the value it has without them, so such cells collapse too
(vitstudy.config.manifest_resolve).

Budget (vitstudy.config.budget): each variant (a combination of grid values, before the smoke overrides)
gets the value of `adjust` whose cost (from the `cost=` function load/parse are given) is closest to the
reference, as an axis value would set it (so it is in the run id); the reference variant keeps its own.
A variant that cannot come within the tolerance is an error naming it and the closest reachable cost.
`adjust` may come from a preset or the defaults, never from a grid axis, smoke, a phase rule or an exclude
rule. Each variant must be valid at its own value, where the search starts.

Phases: a cell matched by a `phases` rule (the first that matches) gets the axis `phase: 1` and a phase-2
cell, axis `phase: 2`: phase 1's resolved spec with the transfer's model (vitstudy.config.phases), the rule's
sections over it, then the smoke data/train/log overrides, and `train.init_from` = phase 1's run id (so
phase 2's id includes phase 1's). Exclude rules apply to phase 1 only; expect rules to both. Phase-2
cells come after every phase-1 cell; the executor runs a phase-2 cell once its phase 1 is done.

Tuning (vitstudy.config.tune): each variant's tuning cells (`stage: "tune"`, axes: the variant's plus the
tuned keys) and its final cells, one per seed, whose `train.tune_from` lists the tuning cells' run ids; a
final cell starts once they ended and trains at the best candidate's values (vitstudy.training.tune).
Tuned keys are train options other than epochs, not grid axes; tune cannot go with phases.

Objects: `Grid.cells` is a tuple of `Cell`; `cell.spec` (RunSpec), `cell.run_id`, `cell.grid` (the name of
the manifest that owns it: its folder), `cell.axes` ((dotted key, value) pairs that distinguish it),
`cell.expect` (a plain dict metric → float, {} when none), `cell.expect_source` (str or None),
`cell.tolerance` (metric → float, for the expected values given one), `cell.budget` (its solved
vitstudy.config.budget.Matched: value, cost, reference; None without a budget or for a phase-2 cell).
`Grid.cell_dir(root, cell)` is where a cell writes, always inside `root`.

Every cell is validated before anything runs, and every problem of every cell is reported together,
each naming the file, the line where known, the dotted key path, the bad value and what is valid
(vitstudy.config.errors). Only this layer reads YAML (vitstudy.config.yaml_lines), bounded: a regular
file of UTF-8 text of at most 1 MiB, parsed once, at most 10,000 values counting what aliases repeat, no
key twice in a mapping. This module reads a manifest into its parts; the grid's axes are
vitstudy.config.manifest_grid, its includes vitstudy.config.manifest_include, the other parts
vitstudy.config.manifest_rules, their expansion into cells
vitstudy.config.manifest_expand, one cell's spec vitstudy.config.manifest_resolve, and Cell, Grid and
run ids vitstudy.config.cells.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vitstudy.config import budget, manifest_grid, manifest_rules, tune
from vitstudy.config.budget import CostFn
from vitstudy.config.cells import Cell, Grid, make_run_id
from vitstudy.config.errors import Bad, ManifestError, Problem, Problems, shown
from vitstudy.config.manifest_expand import Parts, check_rules_used, expand
from vitstudy.config.manifest_include import INCLUDE_ROOT_ENV, include_base, includes
from vitstudy.config.yaml_lines import read_file, read_yaml
from vitstudy.registry import unknown_name

TOP_LEVEL = ("name", "description", "include", "defaults", "grid", "exclude", "seeds", "expect", "smoke",
             "phases", "tune", "budget")
SMOKE_SUFFIX = "-smoke"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # whole names only (fullmatch): it names a folder
__all__ = ["Cell", "Grid", "ManifestError", "load", "make_run_id", "parse"]  # what other layers use


def load(path: str | Path, smoke: bool = False, cost: CostFn | None = None,
         include_root: str | Path | None = None) -> Grid:
    """Read, validate and expand a manifest file. Raises ManifestError listing every problem. `cost`
    (vitstudy.models.cost.model_cost) is needed by a manifest with `budget:`. Includes come from the
    manifest's folder and below (its project), or from `include_root` (folders separated by os.pathsep;
    default: the environment variable VITSTUDY_INCLUDE_ROOT)."""
    path = Path(path)
    text = read_file(path)
    return _parse(text, path, _Reading(smoke, cost, _roots(path, include_root)), ())


def parse(text: str, file: str | Path = "<manifest>", smoke: bool = False, cost: CostFn | None = None,
          include_root: str | Path | None = None) -> Grid:
    """Validate and expand manifest text (`file` names it in errors and anchors relative includes; its
    folder, or the current one, is the project includes stay inside, as in `load`)."""
    return _parse(text, file, _Reading(smoke, cost, _roots(file, include_root)), ())


# --------------------------------------------------------------------------------------------------
@dataclass
class _Reading:
    """What every manifest of one `load` is read with, and each included file read so far (a file two
    manifests include is read once)."""

    smoke: bool
    cost: CostFn | None
    roots: tuple[Path, ...]  # the folders includes may come from: the project, then those allowed
    read: dict[Path, Grid | ManifestError] = field(default_factory=dict)


def _roots(file: str | Path, include_root: str | Path | None) -> tuple[Path, ...]:
    allowed = os.environ.get(INCLUDE_ROOT_ENV, "") if include_root is None else str(include_root)
    return (include_base(file), *(Path(p).resolve() for p in allowed.split(os.pathsep) if p))


def _load(path: Path, reading: _Reading, stack: tuple[Path, ...]) -> Grid:
    """An included manifest (its resolved path), read once per `load`."""
    if path not in reading.read:
        try:
            reading.read[path] = _parse(read_file(path), path, reading, stack)
        except ManifestError as e:
            reading.read[path] = e
    got = reading.read[path]
    if isinstance(got, ManifestError):
        raise got
    return got


def _parse(text: str, file: str | Path, reading: _Reading, stack: tuple[Path, ...]) -> Grid:
    raw, lines = read_yaml(text, file)
    if not isinstance(raw, dict):
        valid = ", ".join(TOP_LEVEL)
        raise ManifestError(file, [Problem("<root>", f"a manifest is a mapping with keys: {valid}")])
    problems = Problems(file, lines.line)
    name = _name(raw, file, problems.bad)
    description = _description(raw.get("description"), problems.bad)
    included = includes(raw.get("include"), file, stack, problems,
                        lambda path, inside: _load(path, reading, inside), reading.roots)
    m = _read_parts(raw, name, reading.smoke, bool(included), problems.bad)
    problems.check()
    cells, used = expand(m, problems, reading.cost)
    check_rules_used(m, used, problems.bad)
    problems.check()
    for sub in included:
        for cell in sub.cells:
            cells.setdefault(f"{cell.grid}/{cell.spec.digest()}", cell)
    if not cells:
        raise ManifestError(file, [Problem("grid", "the grid has no cells (every cell was excluded?)",
                                           lines.line(("grid",)))])
    axes = manifest_grid.axes_of(m.subgrids) + (["phase"] if used["phases"] else []) + list(
        m.tune.keys if m.tune else [])
    for sub in included:
        axes += [a for a in sub.axes if a not in axes]
    return Grid(m.name, str(file), description, tuple(axes), tuple(cells.values()), reading.smoke, m.folder)


def _name(raw: dict, file: str | Path, bad: Bad) -> str:
    """The grid's name (its results folder; default: the file's stem), after checking the top-level keys."""
    for key in raw:
        if key not in TOP_LEVEL:
            bad((key,), unknown_name("top-level key", key, TOP_LEVEL))
    name = raw.get("name", Path(str(file)).stem)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        given = "" if "name" in raw else " (the file's name; give `name:`)"
        bad(("name",), f"{shown(name)}{given} is not a valid grid name: 1 to 100 letters, digits, '_', '.', "
                       "'-', starting with a letter or digit (it names a folder)")
        return "invalid"
    return name


def _description(value: object, bad: Bad) -> str:
    """The grid's description: text (none: empty)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        bad(("description",), f"{shown(value)}: a description is text; quote it if it looks like another "
                              "value (description: \"...\")")
        return ""
    return value


def _read_parts(raw: dict, name: str, smoke: bool, includes_others: bool, bad: Bad) -> Parts:
    defaults = manifest_rules.section_dicts(raw.get("defaults", {}), ("defaults",), bad, "defaults")
    subgrids = manifest_grid.subgrids(raw.get("grid", {}), bad)
    seeds = manifest_rules.seeds(raw.get("seeds", [0]), ("seeds",), bad)
    excludes = manifest_rules.rules(raw.get("exclude", []), "exclude", bad)
    expects = manifest_rules.rules(raw.get("expect", []), "expect", bad)
    smoke_sections, smoke_seeds, smoke_expects = manifest_rules.smoke(raw.get("smoke"), bad)
    phases = manifest_rules.phase_rules(raw.get("phases"), bad)
    tune_rule = tune.read(raw.get("tune"), manifest_grid.axes_of(subgrids), bool(raw.get("phases")), bad)
    budget_rule = budget.read(raw.get("budget"), axes=manifest_grid.axes_of(subgrids), smoke=smoke_sections,
                              phases=phases, excludes=excludes, bad=bad)
    applies = smoke and "smoke" in raw
    return Parts(
        name=name, folder=name + SMOKE_SUFFIX if applies else name, defaults=defaults, subgrids=subgrids,
        seeds=smoke_seeds if smoke and smoke_seeds is not None else seeds, excludes=excludes,
        expects=smoke_expects if applies and smoke_expects is not None else expects, phases=phases,
        expect_at=("smoke", "expect") if applies and smoke_expects is not None else ("expect",),
        smoke=smoke_sections if applies else None,
        own_cells=not includes_others or any(k in raw for k in ("defaults", "grid", "seeds")), tune=tune_rule,
        budget=budget_rule)


