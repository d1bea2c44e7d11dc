"""What a cell costs besides training, kept once per process: the model's cost (params, MACs) per model
spec, a dataset's splits per dataset, the git state. Each cache returns what the uncached code would, is
keyed so that two different specs or datasets never share an entry, and leaves a cell's results as they
were: a cell trained with every cache warm ends with the metrics and weights of one trained cold."""

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from vitstudy.config.manifest import parse
from vitstudy.data import base
from vitstudy.data.base import build_datamodule
from vitstudy.models import cost
from vitstudy.models.build import resolve_model
from vitstudy.models.cost import cached_cost, model_cost
from vitstudy.training import provenance
from vitstudy.training.run import _model_cost, run_cell

MICRO = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.fixture
def cold():
    """Every process-wide cache of a cell emptied, before and after the test."""

    def clear():
        cost._COSTS.clear()
        base._LOADED.clear()
        provenance._git_state.cache_clear()

    clear()
    yield
    clear()


# --- the model's cost ----------------------------------------------------------------------------------
def test_cached_cost_is_model_cost_counted_once_per_spec(cold):
    a, same = resolve_model("vit_micro", **MICRO), resolve_model("vit_micro", **MICRO)
    deeper = resolve_model("vit_micro", **{**MICRO, "depth": 3})
    first = cached_cost(a)
    assert first == model_cost(a)  # what counting afresh gives
    assert cached_cost(same) is first  # an equal spec built anew: the kept Cost, not a second count
    assert len(cost._COSTS) == 1
    other = cached_cost(deeper)  # another spec: its own entry, its own (larger) cost
    assert other == model_cost(deeper) and other.params > first.params and other.macs > first.macs
    assert len(cost._COSTS) == 2 and cached_cost(a) is first


def test_cost_of_a_spec_that_cannot_be_built_is_not_kept(cold):
    # past validation (model_copy does not validate): 3 heads do not divide 32 channels
    bad = resolve_model("vit_micro", **MICRO).model_copy(update={"num_heads": 3})
    for _ in range(2):
        with pytest.raises(ValueError, match="does not divide"):
            cached_cost(bad)
    assert cost._COSTS == {}


# --- the dataset -----------------------------------------------------------------------------------------
def test_digits_are_loaded_once_and_setup_leaves_them_untouched(cold):
    a = build_datamodule("digits", img_size=16, batch_size=64, train_subset=100)
    a.setup()
    (kept,) = base._LOADED.values()
    before = {k: (x.clone(), y.clone()) for k, (x, y) in kept.items()}
    b = build_datamodule("digits", img_size=8, batch_size=64, seed=3)  # another size, seed and subset
    b.setup()
    (again,) = base._LOADED.values()
    assert again is kept  # not loaded a second time
    fresh = b.load()
    for name in ("train", "val", "test"):
        torch.testing.assert_close(kept[name][0], before[name][0], rtol=0, atol=0)  # setup wrote nothing
        torch.testing.assert_close(kept[name][0], fresh[name][0], rtol=0, atol=0)
        assert kept[name][1].tolist() == fresh[name][1].tolist()
    assert a.split_sizes() == {"train": 100, "val": 180, "test": 360}
    assert b.split_sizes() == {"train": 1257, "val": 180, "test": 360}
    assert a.splits["val"].tensors[0].shape[-1] == 16 and b.splits["val"].tensors[0].shape[-1] == 8
    # normalised with the statistics of each module's own training split, as without the cache
    x = fresh["train"][0]
    torch.testing.assert_close(b.splits["train"].tensors[0], (x - x.mean()) / x.std())


def test_datasets_with_different_load_keys_do_not_share(cold):
    small = build_datamodule("synthetic", img_size=8, batch_size=16)
    large = build_datamodule("synthetic", img_size=12, batch_size=16)
    small.setup()
    large.setup()  # replaces the kept dataset (one is kept): another image size is another dataset
    assert small.splits["train"].tensors[0].shape[-1] == 8 and large.splits["train"].tensors[0].shape[-1] == 12
    assert len(base._LOADED) == 1
    five = build_datamodule("synthetic", img_size=12, batch_size=16, num_classes=5)
    five.setup()
    assert int(five.splits["train"].tensors[1].max()) < 5 <= int(large.splits["train"].tensors[1].max()) + 1
    assert not torch.equal(five.splits["test"].tensors[0], large.splits["test"].tensors[0])
    digits = build_datamodule("digits", img_size=8, batch_size=16)
    digits.setup()
    (key,) = base._LOADED
    assert key[0] is type(digits)


# --- the git state ---------------------------------------------------------------------------------------
def test_git_state_is_asked_once_and_handed_out_as_a_copy(cold):
    first = provenance.git_state()
    first["commit"] = "edited by a caller"
    second = provenance.git_state()
    assert second["commit"] != "edited by a caller" and set(second) == {"commit", "dirty"}
    assert provenance._git_state.cache_info().misses == 1


# --- a cell, cold and warm -------------------------------------------------------------------------------
@pytest.fixture
def deterministic(tiny_grid) -> str:
    """The tiny grid (conftest) for 3 epochs, deterministic on the CPU."""
    return tiny_grid.replace("train: {epochs: 2, lr: 3.0e-3}",
                             "train: {epochs: 3, lr: 3.0e-3, deterministic: true, accelerator: cpu}")

MEASURED = ("wall_time_s", "started_at", "finished_at", "env")  # and cost's timings and memory


class SpoilLastEpoch(Callback):
    """Zeroes the classifier before the last validation: that epoch scores at chance, so the best epoch
    is an earlier one and its checkpoint gets a test of its own (the `best` part of the record)."""

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == trainer.max_epochs - 1:
            with torch.no_grad():
                for p in pl_module.model.head.parameters():
                    p.zero_()


def _result(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in MEASURED}
    out["cost"] = {k: record["cost"][k] for k in ("params", "macs", "infer_batch_size")}
    return out


def _checkpoint(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _throughput(ckpt: dict) -> float | None:
    m = ckpt["callbacks"]["RunMonitor"]
    return m["train_images"] / m["train_seconds"] if m["train_seconds"] else None


def test_a_second_cell_reuses_what_the_first_built_and_ends_the_same(cold, deterministic, tmp_path):
    cell = parse(deterministic).cells[0]
    first = run_cell(cell.spec, tmp_path / "cold" / cell.run_id, callbacks=(SpoilLastEpoch(),), progress=False)
    assert first["status"] == "done", first.get("error")
    kept_data, kept_cost = dict(base._LOADED), dict(cost._COSTS)
    git_asked = provenance._git_state.cache_info().misses
    second = run_cell(cell.spec, tmp_path / "warm" / cell.run_id, callbacks=(SpoilLastEpoch(),), progress=False)
    assert second["status"] == "done", second.get("error")

    # nothing counted, loaded or asked again: the same objects are kept
    assert base._LOADED == kept_data and all(base._LOADED[k] is v for k, v in kept_data.items())
    assert cost._COSTS.keys() == kept_cost.keys() and all(cost._COSTS[k] is v for k, v in kept_cost.items())
    assert provenance._git_state.cache_info().misses == git_asked == 1
    # ... and the results are those of a cold cell: metrics, best epoch and its test, record, weights
    assert _result(second) == _result(first)
    assert first["best"]["epoch"] < 2 and first["best"]["test/acc1"] > first["metrics"]["test/acc1"]
    assert first["cost"]["params"] == model_cost(cell.spec.model).params
    assert _model_cost(cell.spec) == model_cost(cell.spec.model).as_dict()
    for name in ("last.ckpt", "best.ckpt"):
        cold_w = _checkpoint(tmp_path / "cold" / cell.run_id / name)["state_dict"]
        warm_w = _checkpoint(tmp_path / "warm" / cell.run_id / name)["state_dict"]
        assert cold_w.keys() == warm_w.keys()
        for k in cold_w:
            torch.testing.assert_close(warm_w[k], cold_w[k], rtol=0, atol=0)
    written = json.loads((tmp_path / "warm" / cell.run_id / "metrics.json").read_text())
    assert _result(written) == _result(second)


def test_training_throughput_is_the_whole_runs_when_best_ckpt_is_tested(cold, deterministic, tmp_path):
    """Testing best.ckpt restores the callbacks' state of the best epoch; the record's train_img_s is
    still that of every timed epoch (last.ckpt's monitor), not of the epochs up to the best."""
    cell = parse(deterministic).cells[1]
    run_dir = tmp_path / cell.run_id
    record = run_cell(cell.spec, run_dir, callbacks=(SpoilLastEpoch(),), progress=False)
    assert record["status"] == "done", record.get("error")
    assert record["best"]["epoch"] < 2  # best.ckpt was tested
    last, best = _checkpoint(run_dir / "last.ckpt"), _checkpoint(run_dir / "best.ckpt")
    assert last["callbacks"]["RunMonitor"]["train_images"] > best["callbacks"]["RunMonitor"]["train_images"]
    assert record["cost"]["train_img_s"] == _throughput(last) != _throughput(best)
