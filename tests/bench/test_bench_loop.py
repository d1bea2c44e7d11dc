"""The loop and data-pipeline benchmarks compare like with like (no timings asserted: machines are noisy)."""

import json
import math

import torch

from vitstudy.bench.loop import _bare_fit, _lightning_fit, bench_data, bench_loop, format_data, format_loop
from vitstudy.config.manifest import load

TINY = """
name: loop
defaults:
  model: {preset: vit_micro, embed_dim: 16, depth: 1, num_heads: 2, head: gap}
  data: {dataset: digits, batch_size: 256, shift: 1}
  train: {epochs: 2, lr: 3.0e-3, warmup_epochs: 1, accelerator: cpu}
  log: {progress_bar: false}
seeds: [0]
"""


def test_bare_loop_and_lightning_train_the_same_model_to_the_same_weights(write_manifest):
    """Same initial weights, batches, augmentation draws, optimizer and schedule: the benchmark's two
    loops end bit-for-bit close, so its ratio measures the loop and nothing else."""
    spec = load(write_manifest(TINY)).cells[0].spec
    bare, lightning = _bare_fit(spec, 2), _lightning_fit(spec, 2, as_run_grid=False)
    assert len(bare.epochs) == len(lightning.epochs) == 2
    assert bare.state.keys() == lightning.state.keys()
    for key, value in bare.state.items():
        torch.testing.assert_close(lightning.state[key], value, atol=1e-6, rtol=1e-5, msg=key)
    init = _bare_fit(spec, 1).state  # and training did move them
    assert not torch.allclose(init["head.weight"], bare.state["head.weight"])


def test_loop_benchmark_reports_every_loop(write_manifest, tmp_path):
    result = bench_loop(write_manifest(TINY), epochs=1, rounds=1)
    assert result["steps"] == math.ceil(1257 / 256)
    assert set(result["overhead"]) == {"lightning_loop", "lightning_run_grid"}
    for key in ("bare", "lightning_loop", "lightning_run_grid"):
        assert result["epoch_s"][key] > 0
        assert result["fit_s"][key] == result["epochs"] * result["epoch_s"][key] + result["fixed_s"][key]
    for key, value in result["overhead"].items():
        assert value == result["fit_s"][key] / result["fit_s"]["bare"] - 1
    table = format_loop(json.loads(json.dumps(result)))
    assert "bare PyTorch" in table and "Lightning (loop only)" in table and "run-grid" in table


def test_data_benchmark_times_both_pipelines_over_whole_epochs():
    result = bench_data(n=500, batch_size=64, workers=0, rounds=1)
    assert result["samples_per_epoch"] == {"device_resident": 500, "per_sample_dataloader": 500}
    rates = result["samples_per_s"]
    assert rates["device_resident"] > 0 and rates["per_sample_dataloader"] > 0
    assert result["ratio"] == rates["device_resident"] / rates["per_sample_dataloader"]
    assert "device-resident" in format_data(result)


def test_bench_cli_writes_json_for_the_parts_asked(write_manifest, tmp_path):
    from vitstudy.cli import main

    assert main(["bench", "loop", "--rounds", "1", "--manifest", str(write_manifest(TINY)),
                 "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "loop.json").read_text())["epochs"] == 2
    assert not (tmp_path / "data.json").exists()
