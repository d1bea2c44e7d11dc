"""`vitstudy bench pack` at toy size: both modes run the real grid, the figures are computed from them."""

import textwrap

import pytest
import yaml

from vitstudy.bench.pack import LR_SEEDS, LRS, bench_pack, format_pack, grid_texts
from vitstudy.config.manifest import parse

GRID = """
name: toy
defaults:
  model: {preset: vit_micro, embed_dim: 16, depth: 1, num_heads: 1, head: gap}
  data: {dataset: digits, batch_size: 256, train_subset: 512}
  train: {epochs: 4, warmup_epochs: 1, lr: 3.0e-3, accelerator: cpu}
  log: {progress_bar: false}
grid:
  - {model.mixer: [attention], model.normalizer: [softmax, relu]}
  - {model.mixer: [conv]}
seeds: [0, 1, 2]
smoke: {seeds: [0]}
"""


def test_the_lr_grid_is_the_first_variant_at_four_rates_and_three_seeds(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(textwrap.dedent(GRID))
    texts = grid_texts(path, epochs=2, seeds=2)
    grid, lr = texts["grid"], texts["lr x seed"]
    assert grid["seeds"] == [0, 1] and grid["defaults"]["train"]["epochs"] == 2
    assert grid["defaults"]["train"]["warmup_epochs"] == 1 and "smoke" not in grid
    cells = parse(yaml.safe_dump(lr), tmp_path / "lr.yaml").cells
    assert sorted((c.spec.train.lr, c.spec.seed) for c in cells) == sorted((r, s) for r in LRS for s in LR_SEEDS)
    assert {(c.spec.model.mixer, c.spec.model.normalizer) for c in cells} == {("attention", "softmax")}


def test_bench_pack_runs_both_modes_and_reports_their_ratio(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(textwrap.dedent(GRID))
    result = bench_pack(path, epochs=1, seeds=2, cases=("grid",))
    r = result["cases"]["grid"]
    assert r["cells"] == 6 and r["variants"] == 3 and r["packs"] == 3  # 3 variants, their 2 seeds packed
    assert r["speedup"] == pytest.approx(r["off_s"] / r["auto_s"])
    assert r["variants_within_noise"] == 3  # a packed member trains as it would alone
    assert all(abs(row["delta"]) < 0.3 for row in r["rows"])
    text = format_pack(result)
    assert f"{r['speedup']:.2f}×" in text and "3 of 3" in text
