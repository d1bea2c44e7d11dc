"""Matched budgets: every variant of a grid brought to one cost (params or MACs) by adjusting one model
option, solved when the manifest is read, without training (its syntax: vitstudy.config.manifest).

A variant that wins by being bigger says nothing about its part: in the default grid patch_mlp has 37K
parameters where attention has 59K. With `budget:` each variant (combination of grid values) gets the
value of `adjust` (model.embed_dim or model.depth) whose cost is closest to the reference, and a value
that misses it by more than the tolerance is a manifest error naming the variant, the reference and the
closest reachable cost. The reference variant keeps its own value. Only values that validate as a
ModelSpec are candidates (embed_dim: multiples of num_heads where the mixer splits heads).

Cost is non-decreasing in embed_dim and in depth, so the search brackets the reference between a value
that costs less and one that costs more, guessing from a power law through the points seen (cost ≈
k·vᵖ, p fitted in log-log; bisecting after three guesses that did not halve the bracket), until the two
values are neighbours: a handful of cost evaluations per variant, each distinct model evaluated once.
The cost function is injected (config imports no torch): vitstudy.models.cost.model_cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional

from pydantic import ValidationError

from vitstudy.config.errors import Bad, CellError, shown
from vitstudy.config.manifest_grid import Option
from vitstudy.config.manifest_resolve import resolve
from vitstudy.config.manifest_rules import finite_number, matches
from vitstudy.config.model_spec import ModelSpec
from vitstudy.registry import unknown_name

KEYS = ("cost", "adjust", "reference", "tolerance")
COSTS = ("params", "macs")
# the adjustable keys, the largest value searched (ViT-22B: width 6144, 48 blocks) and how a ViT's cost
# grows with each (∝ depth · embed_dim²): the power of the first guess
LIMITS = {"model.embed_dim": 8192, "model.depth": 128}
POWERS = {"model.embed_dim": 2.0, "model.depth": 1.0}
DEFAULT_TOLERANCE = 0.05
SCAN = 1024  # how far from a guess the search looks for a value that validates

CostFn = Callable[[ModelSpec], Any]  # a model's cost: an object with .params and .macs
Variant = tuple[tuple[tuple[str, Any], ...], ModelSpec]  # a combination's (key, value) axes and its model


@dataclass(frozen=True)
class Budget:
    cost: str  # params or macs
    adjust: str  # a key of LIMITS
    reference: Any  # "baseline", a number, or a mapping of grid keys naming a variant
    tolerance: float  # relative


@dataclass(frozen=True)
class Matched:
    """One variant's solved value and what it costs next to the reference."""

    adjust: str
    value: int
    cost: str
    achieved: float
    reference: float
    tolerance: float
    label: str  # where the reference comes from, e.g. "the first variant, model.mixer=attention"

    @property
    def deviation(self) -> float:
        return self.achieved / self.reference - 1


def read(value: Any, *, axes: list[str], smoke: dict, phases: list[dict], excludes: list[dict],
         bad: Bad) -> Optional[Budget]:
    """`budget:` checked, or None (absent, or bad: then reported). The adjusted key may be set by the
    defaults or a preset (the solve overrides them) but not by a grid axis, the smoke overrides, a phase
    rule or an exclude rule's match: nothing else may fix it for a variant."""
    if value is None:
        return None
    if not isinstance(value, dict):
        bad(("budget",), "budget is a mapping: cost (params or macs), adjust (model.embed_dim or "
                         "model.depth), reference (baseline, a number or {grid key: value}), tolerance")
        return None
    unknown = [key for key in value if key not in KEYS]
    for key in unknown:
        bad(("budget", key), unknown_name("budget key", key, KEYS))
    cost, adjust = value.get("cost"), value.get("adjust")
    if cost not in COSTS:
        bad(("budget", "cost"), f"{shown(cost)}: cost is one of {', '.join(COSTS)}")
    if not isinstance(adjust, str) or adjust not in LIMITS:  # (a list is not hashable)
        bad(("budget", "adjust"), f"{shown(adjust)}: adjust is one of {', '.join(LIMITS)}")
        adjust = None
    reference = _reference(value.get("reference", "baseline"), axes, bad)
    tolerance = _positive(value.get("tolerance", DEFAULT_TOLERANCE))
    if tolerance is None or tolerance >= 1:
        bad(("budget", "tolerance"), f"{shown(value.get('tolerance'))}: tolerance is a relative deviation "
                                     "above 0 and below 1, e.g. 0.05")
        tolerance = None
    fixed = adjust in LIMITS and _fixed_elsewhere(adjust, axes, smoke, phases, excludes, bad)
    valid = cost in COSTS and adjust in LIMITS and reference is not None and tolerance is not None
    return Budget(cost, adjust, reference, tolerance) if valid and not (unknown or fixed) else None


def _reference(value: Any, axes: list[str], bad: Bad) -> Any:
    if value == "baseline":
        return value
    if isinstance(value, dict) and value:
        unknown = [k for k in value if k not in axes]
        for key in unknown:
            bad(("budget", "reference", key), unknown_name("grid key", key, axes))
        return None if unknown else value
    number = _positive(value)
    if number is None:
        bad(("budget", "reference"), f"{shown(value)}: reference is `baseline` (the first variant), a cost "
                                     "(e.g. 5.7e6) or a mapping of grid keys to values naming one variant")
    return number


def _positive(value: Any) -> Optional[float]:
    """A positive finite number (manifest_rules.finite_number), else None."""
    x = finite_number(value)
    return x if x is not None and x > 0 else None


def _fixed_elsewhere(adjust: str, axes: list[str], smoke: dict, phases: list[dict], excludes: list[dict],
                     bad: Bad) -> bool:
    """Whether something besides the defaults sets (or matches on) the adjusted key, reporting each."""
    section, fld = adjust.split(".")
    places = [(("budget", "adjust"), "a grid axis")] if adjust in axes else []
    places += [(("smoke", section, fld), "the smoke overrides")] if fld in smoke.get(section, {}) else []
    places += [(("phases", i, section, fld), "a phase rule") for i, rule in enumerate(phases)
               if fld in rule["sections"].get(section, {})]
    places += [(("exclude", i, adjust), "an exclude rule") for i, rule in enumerate(excludes)
               if adjust in rule["match"]]
    for path, where in places:
        bad(path, f"{adjust} is solved per variant by budget:, so {where} cannot set it; a preset or "
                  "the defaults may (the solve overrides them)")
    return bool(places)


# --------------------------------------------------------------------------------------------------
def variant(name: str, defaults: dict, combo: Option, seeds: list[int],
            excludes: list[dict]) -> Optional[Variant]:
    """A combination's axis values and its model before the solve (no smoke overrides); None when an
    exclude rule drops it for every seed, or when it is invalid (its cells report why)."""
    overrides = {key: (value, path) for key, value, path in combo}
    try:
        spec = resolve(name, defaults, overrides, seeds[0], {})
    except CellError:
        return None
    semantic = spec.model_dump(mode="json")
    if all(any(matches(rule["match"], {**semantic, "seed": seed}) for rule in excludes) for seed in seeds):
        return None
    return tuple((key, value) for key, value, _ in combo), spec.model


def solve(budget: Budget, variants: list[Optional[Variant]], cost: Optional[CostFn],
          bad: Bad) -> list[Optional[Matched]]:
    """Each variant's solved value (None where a variant is None: excluded or invalid); a variant that
    cannot come within the tolerance is reported at `budget`."""
    if cost is None:
        raise TypeError("a manifest with budget: needs a cost function: load(..., cost=...) or "
                        "parse(..., cost=...) with vitstudy.models.cost.model_cost (config imports no torch)")
    if not variants:
        bad(("budget",), "this manifest has no grid of its own to match (it only includes others); "
                         "give each included manifest its own budget:")
        return []
    measure = lru_cache(maxsize=None)(lambda model: float(getattr(cost(model), budget.cost)))
    if isinstance(budget.reference, float):
        index, reference, label = None, budget.reference, "given as a number"
    elif (named := _reference_variant(budget.reference, variants, bad)) is None:
        return [None] * len(variants)
    else:
        index, label = named
        reference = measure(variants[index][1])
    out: list[Optional[Matched]] = []
    for i, variant in enumerate(variants):
        matched = variant and _match(budget, variant[1], reference, label, i == index, measure)
        if matched is not None and abs(matched.deviation) > budget.tolerance:
            bad(("budget",), _unreachable(variant[0], matched))
        out.append(matched)
    return out


def _match(budget: Budget, model: ModelSpec, reference: float, label: str, is_reference: bool,
           measure: Callable[[ModelSpec], float]) -> Matched:
    """A variant's value: the reference variant's own, else the one whose cost is closest to the reference."""
    fld = budget.adjust.split(".")[1]
    own = getattr(model, fld)
    value, achieved = (own, reference) if is_reference else _closest(
        _Line(model, fld, measure), reference, own, LIMITS[budget.adjust], POWERS[budget.adjust])
    return Matched(budget.adjust, value, budget.cost, achieved, reference, budget.tolerance, label)


def _unreachable(axes: tuple[tuple[str, Any], ...], m: Matched) -> str:
    return (f"variant {_described(axes)}: no value of {m.adjust} (1 to {LIMITS[m.adjust]}) brings {m.cost} "
            f"within {percent(m.tolerance)} of the reference {count(m.reference)} ({m.label}); the closest "
            f"reachable is {count(m.achieved)} ({m.deviation:+.1%}) at {m.adjust}={m.value}")


def count(x: float) -> str:
    """A cost as a message prints it: 5,717,416; beyond what any model reaches, 1e+300."""
    return f"{x:,.0f}" if x < 1e15 else f"{x:.3g}"


def percent(fraction: float) -> str:
    """0.05 -> '5%', 0.025 -> '2.5%'."""
    return f"{fraction * 100:g}%"


def _reference_variant(reference: Any, variants: list[Optional[Variant]],
                       bad: Bad) -> Optional[tuple[int, str]]:
    """The index of the variant `baseline` or a mapping names, and a label; None when there is none
    (every variant is excluded or invalid, said elsewhere) or a mapping names several (reported)."""
    if reference == "baseline":
        index = next((i for i, v in enumerate(variants) if v is not None), None)
        return None if index is None else (index, f"the first variant, {_described(variants[index][0])}")
    named = [i for i, v in enumerate(variants)
             if v is not None and all((k, want) in v[0] for k, want in reference.items())]
    if len(named) != 1:
        which = "; ".join(_described(variants[i][0]) for i in named) or "none"
        bad(("budget", "reference"), f"{shown(reference)} names {len(named)} variants ({which}); it must "
                                     "name exactly one (give more grid keys)")
        return None
    return named[0], f"the variant {_described(variants[named[0]][0])}"


def _described(axes: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in axes) or "the only variant"


class _Line:
    """One variant's cost as a function of the adjusted value; `model(v)` is None where v is invalid."""

    def __init__(self, model: ModelSpec, fld: str, measure: Callable[[ModelSpec], float]):
        self.data, self.fld, self.measure = model.model_dump(), fld, measure
        self.models: dict[int, Optional[ModelSpec]] = {}

    def model(self, value: int) -> Optional[ModelSpec]:
        if value not in self.models:
            try:
                self.models[value] = ModelSpec.model_validate({**self.data, self.fld: value})
            except ValidationError:
                self.models[value] = None
        return self.models[value]

    def cost(self, value: int) -> float:
        return self.measure(self.model(value))

    def valid_near(self, guess: int, lo: int, hi: int) -> Optional[int]:
        """The valid value strictly between lo and hi nearest to `guess` (within SCAN of it), or None."""
        guess = min(max(guess, lo + 1), hi - 1)
        for step in range(SCAN):
            for v in (guess - step, guess + step) if step else (guess,):
                if lo < v < hi and self.model(v) is not None:
                    return v
        return None


Point = tuple[int, float]  # (value, cost)


def _closest(line: _Line, target: float, start: int, limit: int, power: float) -> Point:
    """The valid value in [1, limit] whose cost is closest to `target`, and that cost: the bracket (lo,
    hi) around the target, narrowed to neighbours (the sentinels 0 and limit + 1: none seen yet).
    Bisects after three guesses in a row that did not halve the bracket."""
    lo, hi = (0, 0.0), (limit + 1, math.inf)
    previous: Optional[Point] = None
    slow = 0
    v = line.valid_near(start, 0, limit + 1)
    while v is not None:
        point = (v, line.cost(v))
        if point[1] == target:
            return point
        width = hi[0] - lo[0]
        lo, hi = (point, hi) if point[1] < target else (lo, point)
        bracketed = 0 < lo[0] and hi[0] <= limit
        slow = slow + 1 if bracketed and hi[0] - lo[0] > width / 2 else 0
        through = (lo, hi) if bracketed else (previous, point)  # interpolate, else extrapolate
        guess = (lo[0] + hi[0]) // 2 if slow >= 3 else _guess(*through, target, power)
        previous, v = point, line.valid_near(guess, lo[0], hi[0])
    return min((p for p in (lo, hi) if 0 < p[0] <= limit), key=lambda p: (abs(p[1] - target), p[0]))


def _guess(a: Optional[Point], b: Point, target: float, power: float) -> int:
    """Where the cost reaches `target` on the power law c = k·vᵖ through a and b (through b with p =
    `power` when a is None: the first point)."""
    p = power
    if a is not None and a[0] != b[0] and a[1] > 0 and b[1] > 0 and a[1] != b[1]:
        p = max(math.log(b[1] / a[1]) / math.log(b[0] / a[0]), 0.25)
    return round(b[0] * math.exp(min(math.log(target / b[1]) / p, 40.0)))  # at most e⁴⁰ times b
