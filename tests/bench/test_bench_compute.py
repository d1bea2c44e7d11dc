"""vitstudy.bench.compute at tiny sizes: FLOP counts against hand counts, fitted exponents of the FLOP
counts, internal consistency of the derived figures, JSON, tables and plots. Never asserts on timings."""

import json
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from vitstudy.bench.compute import (
    SCALING_MIXERS,
    bench_precision,
    bench_scaling,
    bench_utilisation,
    format_precision,
    format_scaling,
    format_utilisation,
    model_step_flops,
    plot_scaling,
    step_flops,
    tiny_spec,
    utilisation_models,
)
from vitstudy.bench.mixers import BenchSize
from vitstudy.models.build import resolve_model
from vitstudy.models.cost import model_cost

ROOT = Path(__file__).resolve().parents[2]
SMALL = BenchSize(img_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2, batch_size=4)


def _roundtrip(result: dict) -> dict:
    return json.loads(json.dumps(result))


def test_step_flops_match_a_hand_count():
    B, a, b, c = 5, 7, 11, 3
    model = nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c))
    flops = step_flops(model, torch.randn(B, a), torch.randint(c, (B,)))
    # forward: two matmuls; backward: both weight gradients, and the input gradient of the second
    # layer only (the images need none)
    assert flops == {"forward": 2 * B * (a * b + b * c), "backward": 2 * B * (a * b + b * c) + 2 * B * b * c}


def test_step_flops_count_a_grouped_convolution_gradient_once():
    B, C, H, k = 2, 6, 5, 3
    model = nn.Sequential(nn.Conv2d(C, C, 3, padding=1, groups=C), nn.Flatten(), nn.Linear(C * H * H, k))
    flops = step_flops(model, torch.randn(B, C, H, H), torch.randint(k, (B,)))
    conv, linear = 2 * B * H * H * C * 9, 2 * B * C * H * H * k
    # backward: the conv's weight gradient (no input gradient), the linear layer's weight and input ones
    assert flops == {"forward": conv + linear, "backward": conv + 2 * linear}


@pytest.mark.parametrize("mixer", ["attention", "dwsa", "conv"])
def test_model_step_flops_forward_is_profile_macs(mixer):
    spec = resolve_model("vit_micro", embed_dim=24, depth=2, num_heads=2, mixer=mixer, head="gap",
                         num_classes=10, in_chans=1)
    flops = model_step_flops(spec, 3)
    assert flops["forward"] == 2 * 3 * model_cost(spec).macs
    # every layer's weight gradient costs its forward again, every input gradient but the patch
    # embedding's (the images need none) once more
    assert flops["forward"] < flops["backward"] < 2 * flops["forward"]


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


def test_precision_runs_both_paths_and_is_consistent():
    result = _roundtrip(bench_precision(SMALL, rounds=3, min_time=0))
    assert result["attention_path"] == {"fp32": ["fused"], "bf16": ["explicit"]}  # autocast took effect
    for p in ("fp32", "bf16"):
        assert result["img_per_s"][p] == pytest.approx(1000 * SMALL.batch_size / result["step_ms"][p])
    assert len(result["bf16_over_fp32_per_round"]) == 3
    assert result["bf16_over_fp32"] == statistics.median(result["bf16_over_fp32_per_round"])
    assert result["meets_required"] == (result["bf16_over_fp32"] >= 1.8)
    assert result["size"]["embed_dim"] == 12 and result["threads"] == torch.get_num_threads()
    table = format_precision(result)
    assert "| fp32 | fused |" in table and "| bf16 | explicit |" in table


def test_utilisation_is_achieved_over_peak():
    spec = tiny_spec(SMALL)
    result = _roundtrip(bench_utilisation({"small": (spec, 4)}, rounds=2, min_time=0, peak_n=64))
    flops = sum(model_step_flops(spec, 4).values())
    assert [(r["model"], r["precision"]) for r in result["rows"]] == [("small", "fp32"), ("small", "bf16")]
    for r in result["rows"]:
        assert r["flops_per_step"] == flops == r["flops_forward"] + r["flops_backward"]
        assert r["achieved_flop_s"] == pytest.approx(1000 * flops / r["step_ms"])
        assert r["peak_flop_s"] == result["peak_flop_s"][r["precision"]]
        assert r["utilisation"] == pytest.approx(r["achieved_flop_s"] / r["peak_flop_s"])
    assert result["specs"]["small"]["embed_dim"] == 12
    assert format_utilisation(result).count("| small |") == 2


def test_utilisation_models_are_the_default_grid_and_vit_tiny():
    models = utilisation_models(manifest=ROOT / "experiments.yaml")
    (grid, grid_batch), (tiny, tiny_batch) = models.values()
    assert (grid.embed_dim, grid.depth, grid.num_heads, grid.head, grid.img_size, grid_batch) == (48, 3, 3, "gap", 16, 64)
    assert (tiny.embed_dim, tiny.depth, tiny.num_heads, tiny.img_size, tiny.patch_size, tiny_batch) == (192, 12, 3, 32, 4, 64)
