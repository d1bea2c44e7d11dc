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
    assert {p.stem for p in ABLATIONS} >= {"cmhsa", "ff_only", "softmax", "t2t_vit", "cmhsa_small",
                                           "ff_only_small", "softmax_small", "t2t_small"}


SMALL = [p for p in ABLATIONS if p.stem.endswith("_small")]


@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.stem)
def test_small_manifests_train_fashion_mnist_on_five_seeds_and_smoke_without_it(path):
    grid = load(path, cost=model_cost)
    assert {c.spec.data.dataset for c in grid.cells} == {"fashion_mnist"}
    assert {c.spec.seed for c in grid.cells if c.spec.stage == "final"} == {0, 1, 2, 3, 4}
    assert {c.spec.data.dataset for c in load(path, smoke=True, cost=model_cost).cells} == {"synthetic"}


def _small(name: str):
    return load(Path(__file__).resolve().parents[2] / "ablations" / f"{name}_small.yaml", cost=model_cost)


def test_ff_only_small_tunes_each_block_design_at_one_depth_and_width():
    grid = _small("ff_only")
    final = [c.spec for c in grid.cells if c.spec.stage == "final"]
    designs = {(m.model.mixer, m.model.block_order, m.model.channel_mixer) for m in final}
    assert designs == {("attention", "mixer_first", "mlp"), ("patch_mlp", "mlp_first", "mlp"),
                       ("attention", "mixer_first", "attention")}
    assert {(m.model.depth, m.model.embed_dim) for m in final} == {(4, 32)}
    tuning = [c.spec for c in grid.cells if c.spec.stage == "tune"]
    assert sorted({t.train.lr for t in tuning}) == [1e-3, 3e-3, 6e-3] and len(tuning) == 9


def test_t2t_small_matches_params_and_tokens_of_the_reference():
    cells = [c for c in _small("t2t").cells if c.spec.seed == 0]
    params = {(c.spec.model.tokenizer, c.spec.model.depth): model_cost(c.spec.model).params for c in cells}
    reference = params[("patch", 6)]
    assert set(params) == {("patch", 6), ("t2t", 6), ("patch", 12), ("patch", 3)}
    assert all(abs(p / reference - 1) <= 0.06 for p in params.values()), params
    t2t = next(c.spec.model for c in cells if c.spec.model.tokenizer == "t2t")
    from vitstudy.config.soft_split import soft_split_sides

    assert soft_split_sides(32, t2t.t2t_kernels, t2t.t2t_strides, t2t.t2t_paddings)[-1] == 32 // 8  # 4×4


def test_cmhsa_small_gives_every_variant_the_same_total_epochs():
    cells = [c.spec for c in _small("cmhsa").cells if c.spec.seed == 0]
    two_phase = [s for s in cells if s.train.init_from or (s.model.mixer == "conv" and s.train.epochs == 10)]
    assert sum(s.train.epochs for s in two_phase) == 20 and len(two_phase) == 2
    assert all(s.train.epochs == 20 for s in cells if s not in two_phase)
    assert {s.data.train_subset for s in cells} == {3000}


def test_softmax_small_crosses_normalisers_with_relative_position():
    from vitstudy.registry import MIXERS

    def rel_pos(m):  # None: the mixer's default (dwsa's is on)
        return bool(MIXERS.entry(m.mixer).meta.get("rel_pos") if m.rel_pos is None else m.rel_pos)

    combos = {(c.spec.model.mixer, c.spec.model.normalizer, rel_pos(c.spec.model)) for c in _small("softmax").cells}
    assert combos == {("attention", n, r) for n in ("softmax", "relu", "layernorm") for r in (False, True)} | \
        {("dwsa", None, True)}


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
@pytest.mark.parametrize("smoke", [False, True])
def test_manifest_expands_and_validates(path, smoke):
    grid = load(path, smoke=smoke, cost=model_cost)
    assert grid.cells
    assert len({c.run_id for c in grid.cells}) == len(grid.cells)


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_published_sizes_in_the_manifest_match_the_models(path):
    """Every `expect: params` is what our model has, to the paper's printed precision."""
    checked = 0
    for cell in load(path, cost=model_cost).cells:
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
    grid = load(path, smoke=True, cost=model_cost)
    for cell in grid.cells:
        record = read_record(grid.cell_dir(tmp_path, cell))
        assert record["status"] == "done", (cell.run_id, record.get("error"))
        assert record["spec"]["model"]["mixer"] == cell.spec.model.mixer
