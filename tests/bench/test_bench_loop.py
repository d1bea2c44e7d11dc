"""The loop and data-pipeline benchmarks compare like with like, and their figures follow from the
epoch times they record (no timings asserted: machines are noisy); `run_parts` prints and writes the
parts asked for."""

import json
import math
import statistics
import time

import pytest
import torch

from vitstudy.bench import run_parts
from vitstudy.bench.data import bench_data, format_data
from vitstudy.bench.loop import _bare_fit, _lightning_fit, format_loop
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
STEPS_PER_EPOCH = math.ceil(1257 / 256)  # digits' training split in batches of 256
LOOPS = ("bare", "lightning_loop", "lightning_run_grid")


def test_bare_loop_and_lightning_train_the_same_model_to_the_same_weights(write_manifest):
    """Same initial weights, batches, augmentation draws, optimizer and schedule: the benchmark's loops
    end bit-for-bit close, so its ratios measure the loop and nothing else."""
    spec = load(write_manifest(TINY)).cells[0].spec
    bare = _bare_fit(spec, 2)
    fits = [_lightning_fit(spec, 2, as_run_grid=False), _lightning_fit(spec, 2, as_run_grid=True)]
    for fit in (bare, *fits):
        assert len(fit.epochs) == 2 and fit.steps == 2 * STEPS_PER_EPOCH
    for fit in fits:
        assert bare.state.keys() == fit.state.keys()
        for key, value in bare.state.items():
            torch.testing.assert_close(fit.state[key], value, atol=1e-6, rtol=1e-5, msg=key)
    init = _bare_fit(spec, 1).state  # and training did move them
    assert not torch.allclose(init["head.weight"], bare.state["head.weight"])


def test_loop_part_writes_figures_that_follow_from_the_recorded_epoch_times(write_manifest, tmp_path, capsys):
    start = time.perf_counter()
    results = run_parts(["loop"], precisions=["fp32"], rounds=2, only=None, manifest=write_manifest(TINY),
                        device="cpu", out=tmp_path / "bench")
    wall = time.perf_counter() - start
    result = json.loads((tmp_path / "bench" / "loop.json").read_text())
    assert result == json.loads(json.dumps(results["loop"])) and list(results) == ["loop"]
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == ["loop.json"]
    assert capsys.readouterr().out == format_loop(result) + "\n"
    assert (result["steps"], result["epochs"], result["rounds"]) == (2 * STEPS_PER_EPOCH, 2, 2)
    fits = result["fits"]
    assert set(fits) == set(LOOPS) and set(result["overhead"]) == set(LOOPS[1:])
    # every fit recorded two epochs inside its total, and all fits together inside the call's own time
    for key in LOOPS:
        assert [len(f["epoch_s"]) for f in fits[key]] == [2, 2]
        assert all(0 < sum(f["epoch_s"]) < f["total_s"] for f in fits[key])
    assert sum(f["total_s"] for runs in fits.values() for f in runs) < wall
    # the reported figures are those epoch times: the fastest epoch, the median fixed cost
    for key in LOOPS:
        epoch = min(t for f in fits[key] for t in f["epoch_s"])
        fixed = statistics.median(f["total_s"] - sum(f["epoch_s"]) for f in fits[key])
        assert result["epoch_s"][key] == epoch and result["fixed_s"][key] == pytest.approx(fixed)
        assert result["ms_per_step"][key] == pytest.approx(1000 * epoch / STEPS_PER_EPOCH)
        assert result["fit_s"][key] == pytest.approx(2 * epoch + fixed)
        assert result["median_total_s"][key] == statistics.median(f["total_s"] for f in fits[key])
    for key in LOOPS[1:]:
        assert result["overhead"][key] == pytest.approx(result["fit_s"][key] / result["fit_s"]["bare"] - 1)
        per_epoch = result["epoch_s"][key] / result["epoch_s"]["bare"] - 1
        assert result["overhead_per_epoch"][key] == pytest.approx(per_epoch)
    assert f"| bare PyTorch | {1000 * result['epoch_s']['bare']:.1f} | " in format_loop(result)


def test_data_benchmark_times_both_pipelines_over_whole_epochs():
    result = bench_data(n=500, batch_size=64, workers=0, rounds=1)
    assert result["samples_per_epoch"] == {"device_resident": 500, "per_sample_dataloader": 500}
    rates = result["samples_per_s"]
    assert result["ratio"] == rates["device_resident"] / rates["per_sample_dataloader"]  # one round
    table = format_data(result)
    assert f"| device-resident batches | {rates['device_resident']:,.0f} |" in table
    assert f"| ratio | {result['ratio']:.1f}× |" in table


def test_run_parts_refuses_an_unknown_part(tmp_path):
    with pytest.raises(ValueError, match="unknown bench part 'loops'"):
        run_parts(["loops"], precisions=[], rounds=None, only=None, manifest="", device="cpu", out=tmp_path)
