"""The statistics behind a comparison table, computed with scipy.stats so that every number a report
prints equals scipy's on the same values. Grids have few seeds, so every interval and test is t-based.

- `mean_ci`: the confidence interval of a mean (Student's t);
- `compare`: a row's difference to a reference row, with its 95% CI and two-sided p-value: paired by
  seed (`ttest_rel`) where both rows finished the same seeds (n ≥ 2), Welch's unequal-variance test
  (`ttest_ind(equal_var=False)`) otherwise (n ≥ 2 each); None where no test is possible;
- `holm`: Holm's step-down correction of the p-values of one table's comparisons;
- `seeds_for_power` and `detectable`: what more seeds would buy. The seeds per row at which the same
  test (two-sided, α = 0.05) detects the observed Δ with 80% power (noncentral t), or the smallest Δ it
  detects with 80% power at the seeds it has.

Degenerate cases. Identical values (zero spread, Δ = 0): scipy's t is 0/0 (nan); we report Δ 0, the CI
[0, 0] and p = 1: no difference. A difference that is the same non-zero value for every seed (zero
spread, Δ ≠ 0): scipy's t is infinite, p = 0 and the CI [Δ, Δ]. We keep scipy's answer (nothing in the
data varies, so nothing suggests noise) and mark it `constant`, so a table can say that more seeds may
show a spread the few did not. Power needs a spread: with none, `seeds_for_power` and `detectable` are
None.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

from scipy import optimize, stats

ALPHA = 0.05  # two-sided significance level, after Holm's correction in a table
POWER = 0.8
MAX_SEEDS = 1000  # beyond this a seed count is no advice: report the detectable difference instead

Sample = Sequence[tuple[Any, float]]  # (seed, value) of each finished run; seed None where unknown


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The t-based confidence interval of the mean of `values`; None for fewer than two."""
    if len(values) < 2:
        return None
    with warnings.catch_warnings():  # scipy warns on constant input; its interval is then [mean, mean]
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_1samp(values, 0.0).confidence_interval(level)
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Comparison:
    """A row against a reference row: Δ = mean(row) − mean(reference), its CI and p-value."""

    test: str  # "paired" | "welch"
    delta: float
    lo: float
    hi: float
    p: float
    sds: tuple[float, ...]  # paired: (sd of the differences,); welch: (sd of the row, sd of the reference)
    ns: tuple[int, ...]  # paired: (pairs,); welch: (n of the row, n of the reference)

    @property
    def constant(self) -> bool:
        """A non-zero difference without any spread (scipy: t infinite, p = 0)."""
        return self.delta != 0 and not any(self.sds)


def paired(row: Sample, ref: Sample) -> bool:
    """Whether two rows can be paired by seed: known, distinct seeds, the same set, at least two."""
    seeds, ref_seeds = [s for s, _ in row], [s for s, _ in ref]
    return (len(seeds) >= 2 and None not in seeds and set(seeds) == set(ref_seeds)
            and len(set(seeds)) == len(seeds) == len(ref_seeds))


def compare(row: Sample, ref: Sample, level: float = 0.95) -> Comparison | None:
    """The row against the reference: paired by seed where `paired`, Welch where each has n ≥ 2."""
    if paired(row, ref):
        by_seed = dict(ref)
        x = [v for _, v in row]
        y = [by_seed[s] for s, _ in row]
        diffs = [a - b for a, b in zip(x, y, strict=True)]
        with warnings.catch_warnings():  # scipy warns on (near-)constant input; handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ttest_rel(x, y)
        return _comparison("paired", res, statistics.fmean(diffs), level, (statistics.stdev(diffs),),
                           (len(diffs),))
    x, y = [v for _, v in row], [v for _, v in ref]
    if len(x) < 2 or len(y) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(x, y, equal_var=False)
    return _comparison("welch", res, statistics.fmean(x) - statistics.fmean(y), level,
                       (statistics.stdev(x), statistics.stdev(y)), (len(x), len(y)))


def _comparison(test: str, res, delta: float, level: float, sds: tuple, ns: tuple) -> Comparison:
    if math.isnan(res.statistic):  # identical values: 0/0
        return Comparison(test, 0.0, 0.0, 0.0, 1.0, sds, ns)
    ci = res.confidence_interval(level)
    return Comparison(test, delta, float(ci.low), float(ci.high), float(res.pvalue), sds, ns)


def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): the i-th smallest of m times (m − i + 1),
    made monotone by a running maximum, capped at 1."""
    order = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    out: list[float | None] = [None] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        out[i] = running
    return out


def _se_df(c: Comparison, n: int | None) -> tuple[float, float]:
    """The standard error of Δ and the test's degrees of freedom with n seeds per row (None: c's own)."""
    if c.test == "paired":
        pairs = n or c.ns[0]
        return c.sds[0] / math.sqrt(pairs), pairs - 1
    ns = (n, n) if n else c.ns
    v = [s * s / k for s, k in zip(c.sds, ns, strict=True)]
    df = sum(v) ** 2 / sum(vi * vi / (k - 1) for vi, k in zip(v, ns, strict=True))
    return math.sqrt(sum(v)), df


def _power_at(ncp: float, df: float) -> float:
    """The power of a two-sided t-test at ALPHA with noncentrality `ncp` (noncentral t). The lower tail
    P(T < −crit) is taken as P(T' > crit) with −ncp (symmetry): nct.cdf far in the tail returns nan."""
    crit = stats.t.ppf(1 - ALPHA / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.sf(crit, df, -ncp))


def power(c: Comparison, n: int | None = None) -> float | None:
    """The power to detect c's Δ with n seeds per row (None: the seeds c has); None without a spread."""
    if not any(c.sds):
        return None
    se, df = _se_df(c, n)
    return _power_at(abs(c.delta) / se, df)


def seeds_for_power(c: Comparison) -> int | None:
    """The fewest seeds per row (≥ 2) at which c's Δ is detected with POWER; None beyond MAX_SEEDS or
    without a spread. Power grows with n, so a bisection finds it."""
    if not any(c.sds) or power(c, MAX_SEEDS) < POWER:
        return None
    lo, hi = 1, MAX_SEEDS  # power(lo) < POWER (one seed tests nothing) <= power(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power(c, mid) >= POWER else (mid, hi)
    return hi


def detectable(c: Comparison) -> float | None:
    """The smallest |Δ| that c's test detects with POWER at the seeds it has; None without a spread."""
    if not any(c.sds):
        return None
    se, df = _se_df(c, None)
    ncp = optimize.brentq(lambda x: _power_at(x, df) - POWER, 0.0, 200.0)  # df = 1 needs ncp ≈ 18
    return ncp * se
