"""Manifest expansion, run identity, and errors that name the file, line and key path."""

import subprocess
import sys

import pytest

from vitstudy.config.manifest import ManifestError, parse

BASE = """
name: g
defaults:
  model: {preset: vit_micro}
  data: {dataset: digits}
  train: {epochs: 3}
grid:
  model.head: [cls, gap]
  model.position: [learned, sinusoid, none]
seeds: [0, 1]
"""


def test_grid_is_the_product_of_axes_times_seeds():
    grid = parse(BASE)
    assert len(grid.cells) == 2 * 3 * 2
    assert grid.axes == ("model.head", "model.position")
    assert len({c.run_id for c in grid.cells}) == len(grid.cells)
    combos = {(c.spec.model.head, c.spec.model.position, c.spec.seed) for c in grid.cells}
    assert len(combos) == 12


def test_preset_and_dataset_are_resolved_into_the_spec():
    spec = parse(BASE).cells[0].spec
    assert (spec.model.embed_dim, spec.model.depth, spec.model.patch_size) == (64, 4, 4)
    assert (spec.model.num_classes, spec.model.in_chans) == (10, 1)  # from the digits dataset
    assert spec.train.epochs == 3


def test_run_ids_are_readable_and_stable():
    a = parse(BASE).cells
    b = parse(BASE.replace("model: {preset: vit_micro}", "model:\n    preset: vit_micro")).cells
    assert [c.run_id for c in a] == [c.run_id for c in b]
    assert a[0].run_id.startswith("head-cls_position-learned_s0-")
    # the same spec hashes the same in a fresh process (no per-process hash salt)
    code = ("from vitstudy.config.manifest import parse; import sys; "
            "print(parse(sys.stdin.read()).cells[0].run_id)")
    out = subprocess.run([sys.executable, "-c", code], input=BASE, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == a[0].run_id


def test_semantic_change_changes_the_id_and_cosmetic_change_does_not():
    base = parse(BASE).cells[0].run_id
    lr = parse(BASE.replace("epochs: 3", "epochs: 3, lr: 0.002")).cells[0].run_id
    log = parse(BASE.replace("train: {epochs: 3}", "train: {epochs: 3}\n  log: {every_n_steps: 3}"))
    renamed = parse(BASE.replace("name: g", "name: other")).cells[0].run_id
    assert lr != base
    assert log.cells[0].run_id == base and renamed == base


def test_explicit_default_equals_implicit_default():
    explicit = parse(BASE.replace("epochs: 3}", "epochs: 3, weight_decay: 0.05}")).cells[0].run_id
    assert explicit == parse(BASE).cells[0].run_id


def test_all_problems_are_reported_together_with_lines():
    text = "name: g\ndefaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\ngrid:\n  model.mixer: [foo]\n  model.head: [bar]\n"
    with pytest.raises(ManifestError) as info:
        parse(text, "x.yaml")
    paths = {(p.path, p.line) for p in info.value.problems}
    assert ("grid.model.mixer[0]", 6) in paths and ("grid.model.head[0]", 7) in paths


def test_yaml_syntax_error_has_a_line():
    with pytest.raises(ManifestError) as info:
        parse("name: g\ngrid: [unclosed\n", "s.yaml")
    assert info.value.problems[0].line is not None and "YAML syntax" in info.value.render()


def test_manifest_layer_imports_no_torch():
    code = ("import sys; from vitstudy.config.manifest import parse; import vitstudy.config.spec, vitstudy.registry; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_exits_2_with_message_and_no_traceback(tmp_path, write_manifest):
    path = write_manifest("defaults:\n  model: {preset: vit_micro, mixer: atention}\n  data: {dataset: digits}\n")
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "vitstudy.cli", "run-grid", str(path), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and "defaults.model.mixer" in proc.stderr
    assert "did you mean 'attention'" in proc.stderr
    assert not out.exists()  # nothing written before validation passed
