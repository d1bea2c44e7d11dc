"""The paper manifests: each expands and validates, carries the published numbers, and its smoke
setting trains on a CPU."""

from pathlib import Path

import pytest

from vitstudy.cli import main
from vitstudy.config.manifest import load
from vitstudy.models.cost import model_cost
from vitstudy.runfolder import read_record

ABLATIONS = sorted((Path(__file__).resolve().parents[2] / "ablations").glob("*.yaml"))


def test_the_papers_manifests_exist():
    assert {p.stem for p in ABLATIONS} >= {"cmhsa", "ff_only", "softmax", "t2t_vit"}


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
@pytest.mark.parametrize("smoke", [False, True])
def test_manifest_expands_and_validates(path, smoke):
    grid = load(path, smoke=smoke)
    assert grid.cells
    assert len({c.run_id for c in grid.cells}) == len(grid.cells)


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_published_sizes_in_the_manifest_match_the_models(path):
    """Every `expect: params` is what our model has, to the paper's printed precision."""
    checked = 0
    for cell in load(path).cells:
        if "params" in cell.expect:
            printed = cell.expect["params"]
            unit = 0.1e6 if printed < 10e6 else 1e6
            assert abs(model_cost(cell.spec.model).params - printed) < unit, (cell.run_id, printed)
            checked += 1
    if path.stem == "ff_only":
        assert checked == 7


def test_ff_only_is_table_1():
    grid = load(Path(__file__).resolve().parents[2] / "ablations" / "ff_only.yaml")
    by_preset = {c.spec.model.preset: c for c in grid.cells}
    assert by_preset["ff_tiny"].expect["test/acc1"] == 61.4
    assert by_preset["ff_base"].spec.model.mixer == "patch_mlp"
    assert by_preset["ff_large"].spec.model.patch_size == 32
    assert by_preset["attn_only_tiny"].spec.train.epochs == 100
    assert by_preset["deit_tiny"].spec.train.epochs == 300
    assert all(c.spec.data.dataset == "imagenet" and c.spec.model.num_classes == 1000 for c in grid.cells)


def test_softmax_grid_varies_normalisers_only_where_there_is_attention():
    grid = load(Path(__file__).resolve().parents[2] / "ablations" / "softmax.yaml")
    combos = {(c.spec.model.mixer, c.spec.model.normalizer, bool(c.spec.model.rel_pos),
               c.spec.model.window) for c in grid.cells}
    attention = {(n, r) for m, n, r, _ in combos if m == "attention"}
    assert attention == {(n, r) for n in ("softmax", "relu", "layernorm", "sigmoid") for r in (False, True)}
    assert {(n, w) for m, n, _, w in combos if m == "dwsa"} == {(None, None), (None, 7)}


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_smoke_setting_trains_every_cell_on_a_cpu(path, tmp_path):
    assert main(["run-grid", str(path), "--smoke", "--out", str(tmp_path)]) == 0
    grid = load(path, smoke=True)
    for cell in grid.cells:
        record = read_record(grid.cell_dir(tmp_path, cell))
        assert record["status"] == "done", (cell.run_id, record.get("error"))
        assert record["spec"]["model"]["mixer"] == cell.spec.model.mixer
