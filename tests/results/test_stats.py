"""The statistics every report carries: Δ, its CI and p equal scipy.stats' (paired and Welch), Holm's
correction, the best set, what more seeds would buy (noncentral t), the test split's size and the
one-image note; results built where the answer is known give it."""

import csv
import io
import math
import re

import pytest
from scipy import stats

from vitstudy.results import stats as vs
from vitstudy.results.render import render
from vitstudy.results.runs import Run
from vitstudy.results.table import summarize


def run(mixer, seed, acc, test_size=None, status="done", **extra):
    record = {"schema": 2, "run_id": f"{mixer}_s{seed}", "status": status,
              "spec": {"grid": "g", "seed": seed, "model": {"mixer": mixer}},
              "metrics": {"test/acc1": acc, "test/loss": 1.0 - acc / 100}, **extra}
    if test_size:
        record["split_sizes"] = {"train": 1000, "val": 100, "test": test_size}
    return Run(record, axes=(("model.mixer", mixer),))


def rows(values: dict[str, list[float]], seeds: dict[str, list[int]] | None = None, **kw) -> list[Run]:
    """Runs of rows {mixer: [acc per seed]}; seeds 0, 1, ... unless given."""
    seeds = seeds or {}
    return [run(m, s, v, **kw) for m, vals in values.items()
            for s, v in zip(seeds.get(m, range(len(vals))), vals, strict=True)]


def table(report):
    return {r["mixer"]: r for r in csv.DictReader(io.StringIO(render(report, "csv")))}


def md_row(md, name):
    return next(line for line in md.splitlines() if line.startswith(f"| {name} |"))


BASE = [96.0, 95.5, 97.25, 96.5]
PAIRED = [97.0, 97.25, 98.0, 97.75]  # same seeds as the baseline
WELCH = [98.5, 97.0, 99.0]  # seeds 10, 11, 12: none shared
ONE = [80.0]


def test_delta_ci_and_p_equal_scipy_paired_and_welch():
    report = summarize(rows({"base": BASE, "paired": PAIRED, "welch": WELCH, "one": ONE},
                            seeds={"welch": [10, 11, 12]}))
    csv_rows, md = table(report), render(report, "md")
    rel = stats.ttest_rel(PAIRED, BASE)
    ind = stats.ttest_ind(WELCH, BASE, equal_var=False)
    for name, res, test, delta in (("paired", rel, "paired", sum(PAIRED) / 4 - sum(BASE) / 4),
                                   ("welch", ind, "welch", sum(WELCH) / 3 - sum(BASE) / 4)):
        row, ci = csv_rows[name], res.confidence_interval()
        assert row["test/acc1_test"] == test
        assert float(row["test/acc1_delta"]) == pytest.approx(delta, abs=1e-6)
        assert float(row["test/acc1_delta_lo"]) == pytest.approx(ci.low, abs=1e-6)
        assert float(row["test/acc1_delta_hi"]) == pytest.approx(ci.high, abs=1e-6)
        assert float(row["test/acc1_p"]) == pytest.approx(res.pvalue, rel=1e-5)
        assert f"| {delta:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]" in md_row(md, name)
    # Holm over the two tested rows (the one-seed row cannot be tested): the smaller p doubled, then monotone
    small, large = sorted([rel.pvalue, ind.pvalue])
    holm = {small: min(1, 2 * small), large: min(1, max(2 * small, large))}
    assert float(csv_rows["paired"]["test/acc1_p_holm"]) == pytest.approx(holm[rel.pvalue], rel=1e-5)
    assert float(csv_rows["welch"]["test/acc1_p_holm"]) == pytest.approx(holm[ind.pvalue], rel=1e-5)
    # one seed: the difference of means, untested, never in the best set
    one = csv_rows["one"]
    assert float(one["test/acc1_delta"]) == pytest.approx(80.0 - sum(BASE) / 4, abs=1e-6)
    assert (one["test/acc1_p"], one["test/acc1_test"], one["test/acc1_best"]) == ("", "", "0")
    assert "| 80.00 | 1 | -16.31 | – | – |" in md_row(md, "one")
    assert "Welch's t-test: this row and the baseline did not finish the same seeds" in md
    assert "paired by seed where a row finished the same seeds as the baseline, Welch's otherwise" in md


def test_a_seed_that_failed_makes_the_comparison_welch():
    """Paired needs the same finished seeds: a diverged seed on one side leaves Welch."""
    runs = rows({"base": BASE, "other": PAIRED})
    runs[-1] = run("other", 3, 0.0, status="diverged")
    row = table(summarize(runs))["other"]
    res = stats.ttest_ind(PAIRED[:3], BASE, equal_var=False)
    assert row["test/acc1_test"] == "welch"
    assert float(row["test/acc1_p"]) == pytest.approx(res.pvalue, rel=1e-5)


def test_identical_seeds_are_not_significant_and_both_best():
    report = summarize(rows({"base": BASE, "same": list(BASE), "worse": [v - 5 for v in BASE]}))
    same = table(report)["same"]
    assert (same["test/acc1_delta"], same["test/acc1_delta_lo"], same["test/acc1_delta_hi"]) == ("0", "0", "0")
    assert (same["test/acc1_p"], same["test/acc1_significant"], same["test/acc1_best"]) == ("1", "0", "1")
    assert table(report)["base"]["test/acc1_best"] == "1"
    assert same["test/acc1_seeds_for_power"] == same["test/acc1_detectable_delta"] == ""  # no spread
    assert "| +0.00 [+0.00, +0.00] | 1.000 | – |" in md_row(render(report, "md"), "same")


def test_a_large_delta_with_small_spread_is_significant_and_not_best():
    better = [v + 5 + d for v, d in zip(BASE, (0.1, -0.1, 0.05, 0.0), strict=True)]
    report = summarize(rows({"base": BASE, "better": better}))
    row = table(report)["better"]
    assert float(row["test/acc1_p"]) == pytest.approx(stats.ttest_rel(better, BASE).pvalue, rel=1e-5)
    assert float(row["test/acc1_p_holm"]) < 0.001 and row["test/acc1_significant"] == "1"
    assert row["test/acc1_seeds_for_power"] == ""  # significant: nothing to buy
    md = render(report, "md")
    assert "]* | <0.001 | – |" in md_row(md, "better")
    assert "**" in md_row(md, "better") and "**" not in md_row(md, "base")  # base is significantly worse


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy on constant input
def test_a_constant_difference_follows_scipy_and_says_so():
    """No spread at all in a non-zero Δ: scipy's t is infinite, p = 0; the table keeps that and notes it."""
    shifted = [v + 1.0 for v in BASE]
    res = stats.ttest_rel(shifted, BASE)
    assert math.isinf(res.statistic) and res.pvalue == 0.0
    report = summarize(rows({"base": BASE, "shifted": shifted}))
    row = table(report)["shifted"]
    assert (row["test/acc1_p"], row["test/acc1_significant"]) == ("0", "1")
    assert float(row["test/acc1_delta_lo"]) == pytest.approx(1.0) == float(row["test/acc1_delta_hi"])
    assert "the same Δ for every seed (no spread): t is infinite and p = 0" in render(report, "md")


def test_the_best_set_holds_every_tied_row():
    tied = {"a": [97.0, 98.0, 97.5], "b": [97.0, 98.0, 97.5], "c": [98.0, 97.0, 97.5], "low": [90.0, 91.5, 90.0]}
    report = summarize(rows({"base": [90.0, 90.5, 91.0], **tied}))
    best = {name: row["test/acc1_best"] for name, row in table(report).items()}
    assert best == {"base": "0", "a": "1", "b": "1", "c": "1", "low": "0"}
    md = render(report, "md")
    for name in tied:
        assert ("**97.50 ± 0.50**" in md_row(md, name)) == (name != "low")
    # per column of the pivoted table: the same rule within each column
    runs = [run(m, s, v) for m, vals in tied.items() for s, v in enumerate(vals)]
    for r in runs:
        r.axes = (("model.mixer", r.record["spec"]["model"]["mixer"]), ("data.dataset", "digits"))
    pivot = render(summarize(runs, cols=["dataset"]), "md")
    assert [("**" in md_row(pivot, name)) for name in tied] == [True, True, True, False]


def test_loss_is_best_when_lowest():
    report = summarize(rows({"base": BASE, "worse": [v - 5 for v in BASE]}), metrics=["test/loss"])
    assert {n: r["test/loss_best"] for n, r in table(report).items()} == {"base": "1", "worse": "0"}


def test_holm_against_a_hand_computed_example():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone: 0.06
    assert vs.holm([0.01, 0.04, None, 0.03, 0.005]) == pytest.approx([0.03, 0.06, None, 0.06, 0.02])
    assert vs.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, then monotone
    assert vs.holm([]) == [] and vs.holm([None]) == [None]


def nct_power(delta, se, df):
    crit = stats.t.ppf(0.975, df)
    ncp = abs(delta) / se
    return stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)


def test_seeds_for_power_reach_80_percent_and_one_fewer_does_not():
    noisy = [v + 0.5 + d for v, d in zip(BASE, (1.0, -0.8, 0.6, -0.9), strict=True)]
    report = summarize(rows({"base": BASE, "paired": noisy, "welch": WELCH[:2] + [96.0]},
                            seeds={"welch": [10, 11, 12]}))
    csv_rows = table(report)
    # paired: the sd of the differences over √n, n − 1 degrees of freedom
    diffs = [a - b for a, b in zip(noisy, BASE, strict=True)]
    delta, sd = sum(diffs) / 4, stats.tstd(diffs)
    n = int(csv_rows["paired"]["test/acc1_seeds_for_power"])
    assert csv_rows["paired"]["test/acc1_significant"] == "0" and n > 4
    assert nct_power(delta, sd / math.sqrt(n), n - 1) >= 0.8 > nct_power(delta, sd / math.sqrt(n - 1), n - 2)
    # Welch: both rows at n seeds, Welch–Satterthwaite degrees of freedom
    welch = WELCH[:2] + [96.0]
    s1, s2 = stats.tstd(welch), stats.tstd(BASE)
    delta = sum(welch) / 3 - sum(BASE) / 4

    def welch_power(k):
        v1, v2 = s1**2 / k, s2**2 / k
        return nct_power(delta, math.sqrt(v1 + v2), (v1 + v2) ** 2 / (v1**2 / (k - 1) + v2**2 / (k - 1)))

    n = int(csv_rows["welch"]["test/acc1_seeds_for_power"])
    assert welch_power(n) >= 0.8 > welch_power(n - 1)
    assert f"| {n} |" in md_row(render(report, "md"), "welch")


def test_a_delta_near_zero_reports_the_detectable_difference():
    near = [v + d for v, d in zip(BASE, (0.5, -0.5, 0.49, -0.5), strict=True)]  # Δ ≈ 0: n would be absurd
    report = summarize(rows({"base": BASE, "near": near}))
    row = table(report)["near"]
    assert row["test/acc1_seeds_for_power"] == ""
    mde = float(row["test/acc1_detectable_delta"])
    sd = stats.tstd([a - b for a, b in zip(near, BASE, strict=True)])
    assert nct_power(mde, sd / 2, 3) == pytest.approx(0.8, abs=1e-4)  # n = 4 pairs
    assert f"| >1000; MDE {mde:.2f} |" in md_row(render(report, "md"), "near")


def test_mean_ci_equals_scipy():
    values = [96.0, 95.5, 97.25]
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert vs.mean_ci(values) == pytest.approx((ci.low, ci.high))
    assert vs.mean_ci([1.0]) is None and vs.mean_ci([2.0, 2.0]) == (2.0, 2.0)


def test_the_test_split_size_and_the_one_image_note():
    report = summarize(rows({"base": BASE, "close": [v + 0.2 for v in BASE[:3]] + [96.4],
                             "far": [v + 3 for v in BASE]}, test_size=360))
    md = render(report, "md")
    assert "Test split: 360 images (one image = 0.28 points)." in md
    number = re.search(r"\[(\d+)\] \|Δ\| is smaller than one test image \(0\.28 points\)", md).group(1)
    assert f"[{number}]" in md_row(md, "close") and f"[{number}]" not in md_row(md, "far")
    assert table(report)["close"]["test_size"] == "360"
    # older records without split sizes: no legend line, no note
    old = render(summarize(rows({"base": BASE, "close": [v + 0.2 for v in BASE]})), "md")
    assert "Test split" not in old and "one test image" not in old


def test_a_delta_that_rounds_to_zero_never_prints_as_negative_zero():
    from vitstudy.results.format import signed

    assert [signed(x) for x in (-1e-9, -0.004, 0.004, -0.006, 1.389, None)] == \
        ["+0.00", "+0.00", "+0.00", "-0.01", "+1.39", "–"]
