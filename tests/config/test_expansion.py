"""Grid expansion properties and run identity: products, zips, sub-grids, stable ids; exclude, expect,
smoke and include."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitstudy.config.manifest import Cell, load, parse

ROOT = Path(__file__).resolve().parents[2]
HEAD = "defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n"
TINY_GRID = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()


# --- expansion properties ------------------------------------------------------------------------
AXES = {  # dotted key -> strategy for a list of distinct valid values
    "model.head": st.lists(st.sampled_from(["cls", "gap"]), min_size=1, max_size=2, unique=True),
    "model.position": st.lists(st.sampled_from(["learned", "none", "sinusoid"]), min_size=1, max_size=3,
                               unique=True),
    "data.batch_size": st.lists(st.integers(1, 512), min_size=1, max_size=3, unique=True),
    "train.epochs": st.lists(st.integers(1, 100), min_size=1, max_size=3, unique=True),
    "train.lr": st.lists(st.sampled_from([1e-4, 3e-4, 1e-3, 3e-3, 0.01]), min_size=1, max_size=3, unique=True),
}
BASE = {"name": "p", "defaults": {"model": {"preset": "vit_micro"}, "data": {"dataset": "digits"}}}


@st.composite
def grids(draw):
    keys = draw(st.lists(st.sampled_from(sorted(AXES)), min_size=1, max_size=4, unique=True))
    axes = {k: draw(AXES[k]) for k in keys}
    seeds = draw(st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True))
    return axes, seeds


def _dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _values(cell: Cell) -> tuple:
    spec = cell.spec.model_dump(mode="json")
    return tuple(spec[k.split(".")[0]][k.split(".")[1]] for k in sorted(AXES)) + (cell.spec.seed,)


FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(grids())
def test_product_count_and_unique_ids(g):
    axes, seeds = g
    grid = parse(_dump({**BASE, "grid": axes, "seeds": seeds}))
    assert len(grid.cells) == math.prod(len(v) for v in axes.values()) * len(seeds)
    assert len({c.run_id for c in grid.cells}) == len(grid.cells)
    assert len({c.spec.digest() for c in grid.cells}) == len(grid.cells)


@FAST
@given(grids(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_zip_varies_keys_together(g, n, rnd):
    axes, seeds = g
    widths = [16, 32, 48, 64][:n]
    zipped = {"model.embed_dim": widths, "model.num_heads": [w // 16 for w in widths]}
    grid = parse(_dump({**BASE, "grid": {**axes, "zip": zipped}, "seeds": seeds}))
    assert len(grid.cells) == math.prod(len(v) for v in axes.values()) * n * len(seeds)
    assert {(c.spec.model.embed_dim, c.spec.model.num_heads) for c in grid.cells} == \
        {(w, w // 16) for w in widths}


@FAST
@given(grids(), grids())
def test_union_of_subgrids_counts_distinct_cells(a, b):
    (axes_a, seeds), (axes_b, _) = a, b
    union = parse(_dump({**BASE, "grid": [axes_a, axes_b], "seeds": seeds}))
    parts = [parse(_dump({**BASE, "grid": ax, "seeds": seeds})) for ax in (axes_a, axes_b)]
    expected = {_values(c) for p in parts for c in p.cells}
    assert len(union.cells) == len(expected)  # duplicates collapse to one
    assert {_values(c) for c in union.cells} == expected
    assert len({c.run_id for c in union.cells}) == len(union.cells)


@FAST
@given(grids(), st.randoms(use_true_random=False))
def test_ids_do_not_depend_on_key_order(g, rnd):
    axes, seeds = g
    keys = list(axes)
    rnd.shuffle(keys)
    defaults = dict(reversed(list(BASE["defaults"].items())))
    a = parse(_dump({**BASE, "grid": axes, "seeds": seeds}))
    b = parse(_dump({"seeds": seeds, "grid": {k: axes[k] for k in keys}, "defaults": defaults, "name": "p"}))
    by_values = {_values(c): c.spec.digest() for c in a.cells}
    assert by_values == {_values(c): c.spec.digest() for c in b.cells}


@FAST
@given(grids(), st.sampled_from(["train.weight_decay", "train.label_smoothing", "model.drop_path",
                                 "data.shift", "train.min_lr"]))
def test_a_semantic_change_changes_every_id_a_cosmetic_one_none(g, key):
    axes, seeds = g
    doc = {**BASE, "grid": axes, "seeds": seeds}
    ids = [c.run_id for c in parse(_dump(doc)).cells]
    section, fld = key.split(".")
    changed = {**doc, "defaults": {**doc["defaults"], section: {**doc["defaults"].get(section, {}), fld: 0.2
                                                                  if fld != "shift" else 2}}}
    new = [c.run_id for c in parse(_dump(changed)).cells]
    assert not set(ids) & set(new)
    cosmetic = {**doc, "name": "other", "defaults": {**doc["defaults"], "log": {"every_n_steps": 7}}}
    assert [c.run_id for c in parse(_dump(cosmetic)).cells] == ids


def test_ids_are_stable_across_processes():
    text = _dump({**BASE, "grid": {"model.head": ["cls", "gap"], "train.lr": [1e-3, 3e-3]}, "seeds": [0, 1]})
    here = [c.run_id for c in parse(text).cells]
    code = "import sys; from vitstudy.config.manifest import parse; print(*[c.run_id for c in parse(sys.stdin.read()).cells])"
    for hashseed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hashseed}).stdout.split()
        assert out == here


def test_existing_manifest_ids_are_unchanged():
    FOUNDATION = (ROOT / "tests" / "manifests" / "foundation.yaml").read_text()

    # as printed by the foundation's manifest.py, before zip, sub-grids, exclude, expect and smoke
    ids = [c.run_id for c in parse(FOUNDATION).cells]
    assert ids[:3] == ["head-cls_position-learned_s0-8943eb79", "head-cls_position-learned_s1-f0ea2e2f",
                       "head-cls_position-sinusoid_s0-5d3693dd"]


# --- exclude, expect, smoke, include --------------------------------------------------------------
FEATURES = HEAD + """grid:
  - model.head: [cls, gap]
    model.position: [learned, none]
  - model.head: [gap]
    zip: {model.embed_dim: [32, 64], model.num_heads: [2, 4]}
exclude:
  - {model.head: cls, model.position: none}
expect:
  - match: {model.head: gap}
    test/acc1: 99.0
    source: "made up for the test"
  - match: {model.head: gap, model.position: none}
    test/acc1: 92.5
    params: 1.2e5
smoke:
  train: {epochs: 1}
  data: {train_subset: 64}
  seeds: [0]
seeds: [0, 1]
"""


def test_exclude_union_and_duplicates_collapse():
    grid = parse(FEATURES, "f.yaml")
    combos = [(c.spec.model.head, c.spec.model.position, c.spec.model.embed_dim, c.spec.seed) for c in grid.cells]
    # 4 head×position minus 1 excluded, + 2 zipped widths of which 64 (the preset's) equals (gap, learned)
    assert len(combos) == len(set(combos)) == (3 + 1) * 2
    assert ("cls", "none", 64, 0) not in combos
    assert ("gap", "learned", 32, 0) in combos


def test_expect_attaches_plain_dicts_later_rules_win():
    grid = parse(FEATURES, "f.yaml")
    by = {(c.spec.model.head, c.spec.model.position, c.spec.model.embed_dim): c for c in grid.cells}
    assert by[("gap", "none", 64)].expect == {"test/acc1": 92.5, "params": 1.2e5}
    assert by[("gap", "learned", 64)].expect == {"test/acc1": 99.0}
    assert by[("gap", "learned", 64)].expect_source == "made up for the test"
    assert by[("cls", "learned", 64)].expect == {} and by[("cls", "learned", 64)].expect_source is None


def test_smoke_overrides_apply_before_hashing():
    full, smoke = parse(FEATURES, "f.yaml"), parse(FEATURES, "f.yaml", smoke=True)
    assert len(smoke.cells) == len(full.cells) // 2  # smoke seeds: [0]
    assert {c.spec.train.epochs for c in smoke.cells} == {1}
    assert {c.spec.data.train_subset for c in smoke.cells} == {64}
    assert not {c.run_id for c in smoke.cells} & {c.run_id for c in full.cells}
    assert smoke.folder == "f-smoke" and full.folder == "f" and smoke.cells[0].grid == "f-smoke"
    # expect rules match the spec without the smoke overrides: smoke cells keep the paper's numbers
    assert sorted(c.expect.get("test/acc1", 0) for c in smoke.cells) == \
        sorted(c.expect.get("test/acc1", 0) for c in full.cells if c.spec.seed == 0)


def test_include_keeps_each_manifests_folder(tmp_path):
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "heads.yaml").write_text("name: heads\n" + HEAD + "grid:\n  model.head: [cls, gap]\n")
    (tmp_path / "ablations" / "pos.yaml").write_text("name: pos\n" + HEAD + "grid:\n  model.position: [none]\n")
    (tmp_path / "all.yaml").write_text("name: all\ninclude: ablations/*.yaml\n")
    grid = load(tmp_path / "all.yaml")
    assert [c.grid for c in grid.cells] == ["heads", "heads", "pos"]
    assert grid.cell_dir(tmp_path / "out", grid.cells[2]) == tmp_path / "out" / "pos" / grid.cells[2].run_id
    alone = load(tmp_path / "ablations" / "heads.yaml")
    assert [c.run_id for c in alone.cells] == [c.run_id for c in grid.cells[:2]]  # shared results


def test_results_never_escape_the_root(tmp_path):
    cell = parse(TINY_GRID).cells[0]
    grid = parse(TINY_GRID)
    evil = Cell(cell.spec, "../../etc", cell.axes)
    with pytest.raises(ValueError, match="escapes"):
        grid.cell_dir(tmp_path, evil)
    assert grid.cell_dir(tmp_path, cell).parent.parent == tmp_path


