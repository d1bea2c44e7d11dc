"""A manifest's checked parts expanded into cells: every combination of grid values × seed, through the
budget (vitstudy.config.budget), exclude rules, tuning (vitstudy.config.tune) and phases
(vitstudy.config.phases), with the expect rules attached; and the check that every rule matched a cell.
vitstudy.config.manifest reads a manifest into these parts. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from vitstudy.config import budget, manifest_grid, manifest_rules, tune
from vitstudy.config.budget import CostFn, Matched
from vitstudy.config.cells import Cell, make_run_id
from vitstudy.config.errors import Bad, CellError, Problems, shown
from vitstudy.config.manifest_resolve import next_phase, resolve
from vitstudy.config.spec import RunSpec


@dataclass
class Parts:
    """A manifest's checked parts, ready to expand."""

    name: str
    folder: str  # the cells' grid name: `name`, plus "-smoke" when smoke overrides apply
    defaults: dict[str, dict]
    subgrids: list[list[manifest_grid.Factor]]
    seeds: list[int]
    excludes: list[dict]
    expects: list[dict]
    expect_at: tuple[str, ...]  # where those rules are: ("expect",), or ("smoke", "expect") in a smoke run
    phases: list[dict]
    smoke: dict[str, dict] | None  # the smoke overrides in a smoke run of a manifest with `smoke:`
    own_cells: bool  # False for a manifest that only includes others
    tune: tune.TuneRule | None = None  # `tune:`, checked (vitstudy.config.tune)
    budget: budget.Budget | None = None  # `budget:`, checked (vitstudy.config.budget)

    def combos(self) -> Iterator[manifest_grid.Option]:
        for sub in self.subgrids if self.own_cells else []:
            yield from manifest_grid.combos(sub)


Used = dict[str, set[int]]  # "exclude" / "expect" / "phases" -> indices of the rules that matched a cell


def expand(m: Parts, problems: Problems, cost: CostFn | None) -> tuple[dict[str, Cell], Used]:
    """The manifest's own cells by "<grid>/<spec digest>" (the first of equal specs wins), every phase-2
    cell after every phase-1 cell, every tuning cell first; and which rules matched. A cell's problems go
    into `problems`."""
    used: Used = {"exclude": set(), "expect": set(), "phases": set()}
    tuning: dict[str, Cell] = {}
    first: dict[str, Cell] = {}
    second: dict[str, Cell] = {}
    combos = list(m.combos())
    solved: list[Matched | None] = [None] * len(combos)
    if m.budget:  # each combination's value of the budget's option (vitstudy.config.budget)
        variants = [budget.variant(m.name, m.defaults, c, m.seeds, m.excludes) for c in combos]
        solved = budget.solve(m.budget, variants, cost, problems.bad)
    for combo, matched in zip(combos, solved, strict=True):
        for seed in m.seeds:
            try:
                phase_cells = _cells_of(m, combo, matched, seed, used, tuning)
            except CellError as e:
                problems.cell(e)
                continue
            for cell, into in zip(phase_cells, (first, second), strict=False):  # phase 1, phase 2
                into.setdefault(f"{cell.grid}/{cell.spec.digest()}", cell)
    for key, cell in second.items():
        first.setdefault(key, cell)
    return {**tuning, **first}, used


def _cells_of(m: Parts, combo: manifest_grid.Option, matched: Matched | None, seed: int, used: Used,
              tuning: dict[str, Cell]) -> tuple[Cell, ...]:
    """The cells of one combination of axis values and one seed: none when an exclude rule matches;
    else its cell, and its phase-2 cell when a phases rule matches (the first that does). In a tuned
    grid the cell is a final cell, and the variant's tuning cells go into `tuning`. A budget's solved
    value (`matched`) is set as an axis value would be."""
    overrides = {key: (value, path) for key, value, path in combo}
    if matched is not None:
        overrides[matched.adjust] = (matched.value, ("budget",))
    spec = resolve(m.name, m.defaults, overrides, seed, {})
    semantic = spec.model_dump(mode="json")  # rules match the spec without the smoke overrides
    if m.smoke is not None:
        spec = resolve(m.folder, m.defaults, overrides, seed, m.smoke)
    excluded = {i for i, rule in enumerate(m.excludes) if manifest_rules.matches(rule["match"], semantic)}
    used["exclude"] |= excluded
    if excluded:
        return ()
    axes = tuple((k, v) for k, v, _ in combo)
    if m.tune is not None:
        spec = tune.final_spec(spec, _tuning_cells(m.tune, spec, axes, tuning, matched), m.tune.metric)
    phased = next((i for i, r in enumerate(m.phases) if manifest_rules.matches(r["match"], semantic)), None)
    if phased is None:
        return (_cell(spec, axes, semantic, m.expects, used, matched),)
    used["phases"].add(phased)
    cell = _cell(spec, axes + (("phase", 1),), semantic, m.expects, used, matched)
    rule = m.phases[phased]
    semantic2 = next_phase(semantic, cell.run_id, rule, {}, phased).model_dump(mode="json")
    spec2 = next_phase(spec.model_dump(mode="json"), cell.run_id, rule, m.smoke or {}, phased)
    return cell, _cell(spec2, axes + (("phase", 2),), semantic2, m.expects, used)


def _tuning_cells(rule: tune.TuneRule, variant: RunSpec, axes: tuple, into: dict[str, Cell],
                  matched: Matched | None) -> tuple[str, ...]:
    """Add a variant's tuning cells to `into` (an equal cell there already keeps its id); their run ids,
    candidate by candidate in manifest order, each candidate's seeds in order."""
    ids = []
    for candidate in rule.candidates:
        tuned_axes = axes + tuple((key, value) for key, value, _ in candidate)
        for seed in rule.seeds:
            spec = tune.tuning_spec(variant, candidate, seed, rule.metric)
            cell = Cell(spec, make_run_id(tuned_axes, spec), tuned_axes, budget=matched)
            ids.append(into.setdefault(f"{cell.grid}/{spec.digest()}", cell).run_id)
    return tuple(ids)


def _cell(spec: RunSpec, axes: tuple, semantic: dict, expects: list[dict], used: Used,
          matched: Matched | None = None) -> Cell:
    expect, tolerance, source = manifest_rules.expected(expects, semantic, used["expect"])
    return Cell(spec, make_run_id(axes, spec), axes, expect, source, tolerance=tolerance, budget=matched)


def check_rules_used(m: Parts, used: Used, bad: Bad) -> None:
    """Every exclude, expect and phases rule must match some cell of the manifest's own grid."""
    if not m.own_cells:
        return
    for kind, rules in (("exclude", m.excludes), ("expect", m.expects), ("phases", m.phases)):
        at = m.expect_at if kind == "expect" else (kind,)
        for i, rule in enumerate(rules):
            if i not in used[kind]:
                bad(at + (i,) if kind == "exclude" else at + (i, "match"),
                    f"{shown(rule['match'])} matches no cell of the grid; check the keys and values against "
                    "the grid's axes")
