"""The statistics of one column of a table (vitstudy.results.stats applied to its rows):

- every row against the baseline row: Δ with its 95% CI and p-value (paired by seed where both rows
  finished the same seeds, Welch otherwise), the p-values Holm-corrected across the column's rows, and
  for a Δ that is not significant what more seeds would buy (seeds for 80% power, or the smallest Δ
  detectable at the seeds it has);
- the best set: the top row (the best mean among rows with at least two finished seeds) and every row
  not significantly worse than it (the same tests against the top row, Holm-corrected across those
  comparisons). A row with one finished seed cannot be tested and is never in the set: no single
  winner is chosen on a difference inside the noise, nor on one seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitstudy.results.groups import Group
from vitstudy.results.stats import (
    ALPHA,
    MAX_SEEDS,
    POWER,
    Comparison,
    compare,
    detectable,
    holm,
    seeds_for_power,
)

# how a table's statistics were made, for its legend (TESTS_RULE.format(metric=..., base=...))
TESTS_RULE = (
    "Δ: the difference of {metric} to the baseline row ({base}) with its 95% CI, from two-sided t-tests: "
    "paired by seed where a row finished the same seeds as the baseline, Welch's otherwise. p (Holm): "
    f"p-values Holm-corrected across the rows; *: significant (p (Holm) < {ALPHA}). Seeds for "
    f"{POWER:.0%} power: for a Δ not significant, the seeds per row at which the same test "
    f"(α = {ALPHA}, before correction) detects it with {POWER:.0%} power; beyond {MAX_SEEDS}, the MDE: "
    "the smallest |Δ| it detects so at the seeds it has.")
BEST_RULE = ("Bold: per column, the best mean and every row not significantly worse than it (the same "
             "tests against it, Holm-corrected); a row with one finished seed cannot be tested, never bold.")


@dataclass
class RowStats:
    """One row of one column: its comparison with the baseline and whether it is in the best set."""

    vs_base: Comparison | None = None  # None: the baseline itself, or no test possible (n < 2)
    p_holm: float | None = None
    best: bool = False
    seeds: int | None = None  # seeds per row for 80% power, for a Δ that is not significant
    detectable: float | None = None  # the smallest |Δ| detected with 80% power at the seeds it has

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def column(groups: list[Group], baseline: Group | None, metric: str) -> list[RowStats]:
    """The statistics of `metric` for every row, in the rows' order."""
    out = [RowStats() for _ in groups]
    if baseline is not None:
        for stats, g in zip(out, groups, strict=True):
            if g is not baseline:
                stats.vs_base = compare(g.seeded(metric), baseline.seeded(metric))
    corrected = holm([None if s.vs_base is None else s.vs_base.p for s in out])
    for stats, p in zip(out, corrected, strict=True):
        stats.p_holm = p
        if stats.vs_base is not None and not stats.significant:
            stats.seeds = seeds_for_power(stats.vs_base)
            stats.detectable = detectable(stats.vs_base)
    for stats, best in zip(out, best_set(groups, metric), strict=True):
        stats.best = best
    return out


def best_set(groups: list[Group], metric: str) -> list[bool]:
    """Per row: whether it is the top row or not significantly worse than it (see the module doc)."""
    testable = [i for i, g in enumerate(groups) if len(g.values(metric)) >= 2]
    if not testable:
        return [False] * len(groups)
    sign = -1 if lower_is_better(metric) else 1
    top = max(testable, key=lambda i: sign * groups[i].mean(metric))  # the first of tied means
    others = [i for i in testable if i != top]
    ps = holm([compare(groups[i].seeded(metric), groups[top].seeded(metric)).p for i in others])
    best = {top} | {i for i, p in zip(others, ps, strict=True) if p >= ALPHA}
    return [i in best for i in range(len(groups))]
