"""vitstudy.bench.mixers at a tiny size: the variants are the registry's, each ratio is timm's step time
over the variant's, and the table and plot show every variant. Never asserts on timings."""

import json

import pytest
import torch

from vitstudy.bench.common import BenchSize
from vitstudy.bench.mixers import bench_mixers, format_mixers, plot_mixers, variants
from vitstudy.models.build import build_model, resolve_model
from vitstudy.registry import MIXERS, NORMALIZERS

SMALL = BenchSize(img_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2, batch_size=4)


def test_variants_are_every_mixer_and_every_normaliser_of_attention():
    found = dict(variants())
    assert len(found) == len(MIXERS.names()) - 1 + len(NORMALIZERS.names())  # attention: one per normaliser
    assert found["attention+sigmoid"] == {"mixer": "attention", "normalizer": "sigmoid", "head": "cls"}
    assert found["pool"] == {"mixer": "pool", "normalizer": None, "head": "gap"}  # no class token to mix
    assert "pool+softmax" not in found and "attention" not in found
    for overrides in found.values():  # every variant is a valid model at the bench size
        model = build_model(resolve_model(None, img_size=8, patch_size=4, in_chans=3, num_classes=10,
                                          embed_dim=12, depth=1, num_heads=2, **overrides))
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_ratios_tables_and_plot_at_a_tiny_size(tmp_path):
    only = ["attention+softmax", "pool"]
    result = json.loads(json.dumps(bench_mixers(SMALL, rounds=1, steps=1, only=only)))
    assert list(result["ratio_vs_timm"]) == list(result["step_ms"]) == only
    for label in only:  # one round: the median of one ratio is timm's step time over the variant's
        assert result["ratio_vs_timm"][label] == pytest.approx(result["timm_step_ms"] / result["step_ms"][label])
    assert result["size"]["embed_dim"] == 12 and result["precision"] == "fp32"
    table = format_mixers(result)
    for label in only:
        assert f"| {label} | {result['step_ms'][label]:.1f} | {result['ratio_vs_timm'][label]:.2f} |" in table
    paths = plot_mixers({"fp32": result}, tmp_path)
    assert sorted(p.suffix for p in paths) == [".png", ".svg"] and all(p.stat().st_size > 0 for p in paths)
