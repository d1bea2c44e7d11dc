"""vitstudy.bench.scaling at tiny sizes: the FLOP counts against hand counts and their fitted exponents,
the step budget, the table and the plot. Never asserts on timings."""

import json

import pytest

from vitstudy.bench.scaling import SCALING_MIXERS, bench_scaling, format_scaling, plot_scaling


def _roundtrip(result: dict) -> dict:
    return json.loads(json.dumps(result))


def test_scaling_flop_exponents_tables_and_plot(tmp_path):
    sides, dim = (8, 16, 32), 4  # narrow: attention's N² products dominate its projections from N=64
    result = _roundtrip(bench_scaling(sides=sides, dim=dim, num_heads=1, batch_size=1, rounds=1, min_time=0,
                                      max_step_s=1e9, fit_min_tokens=64))
    mixers = result["mixers"]
    assert list(mixers) == list(SCALING_MIXERS)
    assert result["tokens"] == [64, 256, 1024]
    expected = {"attention": 2, "dwsa (window 7)": 1, "dwsa (global)": 2, "patch_mlp": 2, "conv": 1, "pool": 1}
    for label, exponent in expected.items():
        assert mixers[label]["flop_exponent"] == pytest.approx(exponent, abs=0.1), label
    assert mixers["identity"]["flops_per_image"] == [0, 0, 0]
    assert mixers["identity"]["flop_exponent"] is None
    n = result["tokens"]
    # pool 3×3: 9 adds per output, forward and backward; conv 3×3 full: forward, input and weight grads
    assert mixers["pool"]["flops_per_image"] == [2 * 9 * t * dim for t in n]
    assert mixers["conv"]["flops_per_image"] == [3 * 2 * 9 * t * dim * dim for t in n]
    for m in mixers.values():
        assert all(t is not None and t > 0 for t in m["step_ms"])
        assert m["time_exponent"] is not None
    table = format_scaling(result)
    for label in SCALING_MIXERS:
        assert f"| {label} |" in table
    paths = plot_scaling(result, tmp_path / "plots")
    assert sorted(p.suffix for p in paths) == [".png", ".svg"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_scaling_stops_timing_past_the_step_budget():
    result = bench_scaling(sides=(4, 8), dim=4, num_heads=1, batch_size=1, rounds=1, min_time=0,
                           max_step_s=0.0, mixers={"pool": SCALING_MIXERS["pool"]}, fit_min_tokens=1)
    pool = result["mixers"]["pool"]
    assert pool["step_ms"][0] > 0 and pool["step_ms"][1] is None
    assert pool["time_exponent"] is None and pool["flop_exponent"] == pytest.approx(1)
    assert "| pool | " in format_scaling(result) and " – |" in format_scaling(result)
