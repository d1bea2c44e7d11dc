"""The gate for CI (`vitstudy check`, `run-grid --check`): every `expect:` value of a manifest checked
against what its row measured on disk, one verdict each, and the JUnit XML that CI systems display.

A row is one cell's seeds (vitstudy.results.groups); tuning runs (stage "tune") are not rows. The
measured value is the mean over the row's finished seeds; params and MACs, which no seed changes, are
the row's cost. An expectation passes
- with a tolerance, iff |mean − expected| ≤ tolerance;
- without one, iff the expected value lies in the 95% t-based confidence interval of the mean
  (vitstudy.results.stats.mean_ci, n ≥ 2) widened by half a unit of the expected value's last
  significant digit (72.2: ±0.05; 5.7e6: ±0.05e6), since a printed number stands for everything that
  rounds to it. Where the interval has no width (params, identical seeds) that is agreement at the
  expected value's precision. One seed without a tolerance, or no finished seed, fails with the reason.
"""

from __future__ import annotations

import math
import statistics
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from vitstudy import runfolder
from vitstudy.results.groups import Group, axis_value, group_runs, short_axis
from vitstudy.results.runs import Run, runs_from_manifest
from vitstudy.results.stats import mean_ci

LEVEL = 0.95
STATIC = ("params", "macs")  # the same for every seed and known before training: the row's cost


class NothingToCheck(ValueError):
    """A manifest without `expect:` values."""


@dataclass(frozen=True)
class Verdict:
    """One expectation of one row, checked."""

    row: str  # the row's axis values, "head=cls, position=none"
    metric: str
    expected: float
    tolerance: float | None
    measured: float | None
    passed: bool
    rule: str  # why it passed or failed

    @property
    def name(self) -> str:
        return f"{self.row}: {self.metric}"

    def describe(self) -> str:
        """'measured 95.17, expected 95 ± 1: |Δ| 0.167 ≤ 1 (n=3)'."""
        measured = "none" if self.measured is None else _show(self.measured)
        expected = f"{self.expected:g}" + ("" if self.tolerance is None else f" ± {self.tolerance:g}")
        return f"measured {measured}, expected {expected}: {self.rule}"


@dataclass(frozen=True)
class Check:
    """The verdicts of one grid (`grid`: its results folder's name)."""

    grid: str
    verdicts: tuple[Verdict, ...]

    @property
    def failures(self) -> int:
        return sum(not v.passed for v in self.verdicts)

    def summary(self) -> str:
        n, failed = len(self.verdicts), self.failures
        return (f"check '{self.grid}': {n - failed} of {n} expectations pass"
                + (f", {failed} fail" if failed else ""))


def check_manifest(manifest: Path, root: Path, smoke: bool = False) -> Check:
    """Check a manifest's expectations against its cells' records under the results root `root`."""
    runs, _, grid = runs_from_manifest(manifest, root, smoke=smoke)
    if not any(r.expect for r in runs):
        raise NothingToCheck(f"{manifest}: no cell has an expect: value, so there is nothing to check "
                             "(e.g. expect: [{test/acc1: {value: 95.0, tolerance: 1.0}}])")
    return check_runs(runs, grid)


def check_runs(runs: list[Run], grid: str) -> Check:
    """One verdict per row and expected metric, rows in the order of the runs; tuning runs are no row."""
    axes, groups = group_runs([r for r in runs if r.stage != "tune"])
    verdicts = []
    for g in groups:
        ref = next((r for r in g.runs if r.expect), None)
        if ref is None:
            continue
        row = ", ".join(f"{short_axis(a)}={axis_value(g.label.get(a))}" for a in axes) or grid
        for metric, expected in ref.expect.items():
            verdicts.append(judge(g, row, metric, expected, ref.tolerance.get(metric)))
    return Check(grid, tuple(verdicts))


def judge(group: Group, row: str, metric: str, expected: float, tolerance: float | None) -> Verdict:
    """The verdict on one expected value of one row (the rules: this module's docstring)."""
    def verdict(measured: float | None, passed: bool, rule: str) -> Verdict:
        return Verdict(row, metric, expected, tolerance, measured, passed, rule)

    values, seeds = _measured(group, metric)
    if not values:
        return verdict(None, False, _missing(group, metric))
    mean = statistics.fmean(values)
    slack = 8 * math.ulp(max(abs(mean), abs(expected)))  # rounding in the mean and the difference
    if tolerance is not None:
        off = abs(mean - expected)
        passed = off <= tolerance + slack
        return verdict(mean, passed, f"|Δ| {off:.3g} {'≤' if passed else '>'} {tolerance:g}"
                                     + (f" ({seeds})" if seeds else ""))
    half = half_unit(expected)
    if metric not in STATIC and len(values) < 2:
        return verdict(mean, False, f"one finished seed ({seeds}): no confidence interval without two; "
                                    "give the value a tolerance, {value: …, tolerance: …}")
    lo, hi = (mean, mean) if metric in STATIC else mean_ci(values, level=LEVEL)
    passed = lo - half - slack <= expected <= hi + half + slack
    where = "agrees" if passed else "disagrees"
    if lo == hi:
        same = "" if metric in STATIC else f", all {len(values)} seeds equal"
        return verdict(mean, passed, f"{where} to the expected value's precision ±{half:g}{same}")
    inside = "inside" if passed else "outside"
    return verdict(mean, passed, f"{inside} the {LEVEL:.0%} CI [{_show(lo)}, {_show(hi)}] "
                                 f"(±{half:g} for the value's last digit; {seeds})")


def _measured(group: Group, metric: str) -> tuple[list[float], str]:
    """A row's values of a metric (for params and MACs: the row's cost alone) and its seeds, 'n=2 of 3'."""
    if metric in STATIC:
        value = group.cost(metric)
        return ([] if value is None else [value]), ""
    values = group.values(metric)
    return values, f"n={len(values)}" + (f" of {len(group.runs)}" if len(values) < len(group.runs) else "")


def half_unit(value: float) -> float:
    """Half a unit of the last significant digit of a number: 72.2 → 0.05, 5.7e6 → 5e4, 98 → 0.5."""
    exponent = Decimal(repr(float(value))).normalize().as_tuple().exponent
    return 0.5 * 10.0 ** exponent


def _missing(group: Group, metric: str) -> str:
    """Why a row has no value for a metric."""
    done = [r for r in group.runs if r.status == "done"]
    if metric in STATIC:
        return f"the row's {metric} is unknown"
    if not done:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(group.counts.items()))
        return f"no finished seed ({counts})"
    recorded = ", ".join(sorted(done[0].record.get("metrics") or {})) or "none"
    return f"no finished seed records {metric} (metrics recorded: {recorded})"


def _show(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def render(check: Check) -> str:
    """One line per expectation (PASS/FAIL, row, metric, measured, expected, rule), then the summary."""
    width = max((len(v.name) for v in check.verdicts), default=0)
    lines = [f"{'PASS' if v.passed else 'FAIL'}  {v.name:{width}s}  {v.describe()}" for v in check.verdicts]
    return "\n".join([*lines, check.summary()])


def junit_xml(check: Check) -> str:
    """JUnit XML: one testsuite (the grid), one testcase per expectation, a <failure> for each failed."""
    counts = {"tests": str(len(check.verdicts)), "failures": str(check.failures), "errors": "0"}
    suites = ET.Element("testsuites", name="vitstudy check", **counts)
    suite = ET.SubElement(suites, "testsuite", name=check.grid, skipped="0", **counts)
    for v in check.verdicts:
        case = ET.SubElement(suite, "testcase", classname=check.grid, name=v.name)
        if v.passed:
            ET.SubElement(case, "system-out").text = v.describe()
        else:
            ET.SubElement(case, "failure", message=v.describe(), type="expectation").text = v.describe()
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: str | Path, check: Check) -> None:
    """The JUnit XML of a check, written atomically (vitstudy.runfolder)."""
    runfolder.write_text(path, junit_xml(check))
