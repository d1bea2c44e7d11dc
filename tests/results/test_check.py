"""`vitstudy check`, the gate for CI, on records written here (no training): each rule decides a case
both ways against scipy's interval, a constructed regression exits 1 and the grid as expected exits 0,
and the JUnit XML parses and names every expectation with the right failure counts."""

import json
import xml.etree.ElementTree as ET

import pytest
from scipy import stats

from vitstudy.cli import main
from vitstudy.config.manifest import parse
from vitstudy.results.check import check_runs, half_unit, judge
from vitstudy.results.groups import Group
from vitstudy.results.runs import Run

GATE = """
name: gate
defaults:
  model: {preset: vit_micro, embed_dim: 32, depth: 2, num_heads: 2}
  data: {dataset: digits}
grid:
  model.head: [cls, gap]
seeds: [0, 1, 2]
expect:
  - match: {model.head: cls}
    test/acc1: {value: 95.0, tolerance: 1.0}
  - match: {model.head: gap}
    test/acc1: 91.0
    params: 1.2e4
"""
ACC = {"cls": [95.5, 94.75, 95.25], "gap": [90.0, 91.5, 92.0]}  # cls: mean 95.17; gap: mean 91.17


def record(acc: float | None, status: str = "done", params: int = 12345, stage: str = "final",
           seed: int = 0) -> dict:
    return {"schema": 2, "status": status, "spec": {"seed": seed, "stage": stage},
            "metrics": {} if acc is None else {"test/acc1": acc, "test/loss": 0.2},
            "cost": {"params": params, "macs": 10 * params}}


def group(*accs: float, statuses: tuple[str, ...] = ()) -> Group:
    runs = [Run(record(a, seed=i)) for i, a in enumerate(accs)]
    runs += [Run(record(None, status=s)) for s in statuses]
    return Group({}, runs)


def verdict(g: Group, expected: float, tolerance: float | None = None, metric: str = "test/acc1"):
    return judge(g, "row", metric, expected, tolerance)


@pytest.mark.parametrize("values, expected, tolerance, passes", [
    ([95.0, 96.0], 95.0, 0.5, True),  # |Δ| = 0.5 = tolerance
    ([95.0, 96.0], 95.0, 0.4, False),
    ([97.7], 97.2, 0.5, True),  # one seed is enough with a tolerance; 97.7 − 97.2 is 0.50000000000001
    ([97.7], 97.2, 0.49, False),
    ([80.0, 80.0], 80.0, 0.0, True),
])
def test_the_tolerance_rule(values, expected, tolerance, passes):
    v = verdict(group(*values), expected, tolerance)
    assert v.passed is passes and v.measured == pytest.approx(sum(values) / len(values))
    assert ("≤" if passes else ">") in v.rule


def test_the_ci_rule_uses_scipys_t_interval_widened_by_the_expected_values_rounding():
    values = [90.0, 91.0, 92.0]
    lo, hi = stats.t.interval(0.95, df=2, loc=91.0, scale=stats.sem(values))  # 88.52 .. 93.48
    cases = {93.4: True, 93.5: True,  # 93.5 lies above hi, but a printed 93.5 stands for 93.45..93.55
             93.6: False, 88.5: True, 88.4: False, 88.52: True, 88.51: False, 91.0: True}
    for expected, passes in cases.items():
        half = half_unit(expected)
        assert bool(lo - half <= expected <= hi + half) is passes, expected  # the cases are what they claim
        v = verdict(group(*values), expected)
        assert v.passed is passes, (expected, v.rule)
        assert f"CI [{lo:.4g}, {hi:.4g}]" in v.rule and "n=3)" in v.rule


@pytest.mark.parametrize("metric, values, expected, passes", [
    ("test/acc1", [97.5, 97.5], 97.5, True),  # identical seeds: a CI of no width
    ("test/acc1", [97.5, 97.5], 97.52, False),  # ±0.005
    ("test/acc1", [97.5, 97.5], 97.6, False),  # ±0.05
    ("test/acc1", [97.5, 97.5], 97.0, True),  # ±0.5
    ("params", [1], 1.2e4, True),  # params 12345 against 1.2e4 ± 500
    ("params", [1], 1.23e4, True),  # ± 50
    ("params", [1], 1.24e4, False),
    ("params", [1], 12345, True),
    ("params", [1], 12346, False),
])
def test_values_without_spread_agree_at_the_expected_values_precision(metric, values, expected, passes):
    v = verdict(group(*values), expected, metric=metric)
    assert v.passed is passes, v.rule
    assert "precision" in v.rule


def test_half_a_unit_of_the_last_significant_digit():
    assert [half_unit(x) for x in (72.2, 5.7e6, 98, 0.25, 5717416)] == pytest.approx([0.05, 5e4, 0.5, 0.005, 0.5])


def test_what_cannot_be_checked_fails_with_the_reason():
    one = verdict(group(95.0, statuses=("diverged",)), 95.0)
    assert not one.passed and "one finished seed" in one.rule and "n=1 of 2" in one.rule
    none = verdict(group(statuses=("diverged", "pending")), 95.0)
    assert not none.passed and none.measured is None and "no finished seed (1 diverged, 1 pending)" in none.rule
    typo = verdict(group(95.0, 96.0), 95.0, metric="test/acc")
    assert not typo.passed and "no finished seed records test/acc" in typo.rule and "test/acc1" in typo.rule


def test_tuning_runs_are_not_rows():
    runs = [Run(record(90.0, seed=s), expect={"test/acc1": 90.0}, tolerance={"test/acc1": 0.5}) for s in (0, 1)]
    runs += [Run(record(10.0, seed=s, stage="tune"), expect={"test/acc1": 90.0}) for s in (0, 1)]
    check = check_runs(runs, "g")
    assert [(v.passed, v.measured) for v in check.verdicts] == [(True, 90.0)]


# --- the command, on records written into a results folder ------------------------------------------
def write_results(out, accs: dict[str, list[float]]) -> None:
    grid = parse(GATE)
    for cell in grid.cells:
        d = grid.cell_dir(out, cell)
        d.mkdir(parents=True)
        rec = record(accs[cell.spec.model.head][cell.spec.seed], seed=cell.spec.seed)
        rec["spec"] = cell.spec.model_dump(mode="json")
        (d / "metrics.json").write_text(json.dumps(rec))


def test_check_exits_0_when_every_expectation_holds(write_manifest, tmp_path, capsys):
    write_results(tmp_path / "out", ACC)
    junit = tmp_path / "report.xml"
    code = main(["check", str(write_manifest(GATE)), "--out", str(tmp_path / "out"), "--junit", str(junit)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    lines = [line for line in printed.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[:3] for line in lines] == [["PASS", "head=cls:", "test/acc1"],
                                                    ["PASS", "head=gap:", "test/acc1"],
                                                    ["PASS", "head=gap:", "params"]]
    assert "check 'gate': 3 of 3 expectations pass" in printed
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "0") and suite.find(".//failure") is None


def test_check_exits_1_on_a_regression_and_junit_names_each_expectation(write_manifest, tmp_path, capsys):
    regressed = {"cls": [93.5, 93.75, 94.0], "gap": ACC["gap"]}  # cls: mean 93.75, 1.25 below 95 ± 1
    write_results(tmp_path / "out", regressed)
    junit = tmp_path / "ci" / "report.xml"
    code = main(["check", str(write_manifest(GATE)), "--out", str(tmp_path / "out"), "--junit", str(junit)])
    printed = capsys.readouterr().out
    assert code == 1
    assert any(line.startswith("FAIL  head=cls: test/acc1") and "93.75" in line and "|Δ| 1.25 > 1" in line
               for line in printed.splitlines()), printed
    assert "2 of 3 expectations pass, 1 fail" in printed
    root = ET.parse(junit).getroot()
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "3", "1")
    suite = root.find("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("gate", "3", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"head=cls: test/acc1", "head=gap: test/acc1", "head=gap: params"}
    assert {c.get("classname") for c in cases.values()} == {"gate"}
    failures = [(name, c.find("failure")) for name, c in cases.items() if c.find("failure") is not None]
    assert [name for name, _ in failures] == ["head=cls: test/acc1"]
    assert "measured 93.75, expected 95 ± 1" in failures[0][1].get("message")


def test_a_manifest_without_expectations_has_nothing_to_check(write_manifest, tmp_path, capsys):
    path = write_manifest(GATE.split("expect:")[0])
    assert main(["check", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nothing to check" in err and "Traceback" not in err
