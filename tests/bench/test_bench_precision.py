"""vitstudy.bench.precision and vitstudy.bench.utilisation at tiny sizes: the autocast takes effect,
the derived figures follow from the measured ones, the FLOPs are the counted ones. Never asserts on
timings."""

import json
import statistics
from pathlib import Path

import pytest
import torch

from vitstudy.bench.common import BenchSize, tiny_spec
from vitstudy.bench.flops import model_step_flops
from vitstudy.bench.precision import bench_precision, format_precision
from vitstudy.bench.utilisation import bench_utilisation, format_utilisation, utilisation_models

ROOT = Path(__file__).resolve().parents[2]
SMALL = BenchSize(img_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2, batch_size=4)


def _roundtrip(result: dict) -> dict:
    return json.loads(json.dumps(result))


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
