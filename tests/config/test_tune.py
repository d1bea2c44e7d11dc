
"""`tune:` in a manifest: every variant's tuning cells and its final cells, their ids, axes, stages and
links (vitstudy.config.tune); and the errors a `tune:` section can get (exit 2, file, line, key path)."""

import re
from pathlib import Path

import pytest

from vitstudy.cli import main
from vitstudy.config.manifest import ManifestError, parse

TINY = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()  # 2 cells, 2 epochs

TUNED = TINY.replace("seeds: [0]", "seeds: [0, 1]") + """\
tune:
  train.lr: [1.0e-3, 3.0e-3, 1.0e-2]
  seeds: [100]
smoke:
  train: {epochs: 1}
"""


def test_every_variant_gets_its_tuning_cells_then_its_final_cells():
    grid = parse(TUNED)
    tuning = [c for c in grid.cells if c.stage == "tune"]
    final = [c for c in grid.cells if c.stage == "final"]
    assert len(tuning) == 2 * 3 and len(final) == 2 * 2  # 2 variants × 3 candidates × 1 seed; × 2 seeds
    assert grid.cells[:6] == tuple(tuning)  # every tuning cell first
    assert grid.axes == ("model.head", "train.lr")

    cls_tuning = [c for c in tuning if dict(c.axes)["model.head"] == "cls"]
    assert [c.axes for c in cls_tuning] == [(("model.head", "cls"), ("train.lr", lr)) for lr in (1e-3, 3e-3, 1e-2)]
    assert [(c.spec.seed, c.spec.train.lr, c.spec.stage) for c in cls_tuning] == [
        (100, 1e-3, "tune"), (100, 3e-3, "tune"), (100, 1e-2, "tune")]
    assert cls_tuning[0].run_id.startswith("head-cls_lr-0.001_s100-")
    assert not cls_tuning[0].expect

    for cell in final:
        variant = dict(cell.axes)["model.head"]
        mine = [c.run_id for c in tuning if dict(c.axes)["model.head"] == variant]
        assert cell.axes == (("model.head", variant),) and cell.spec.seed in (0, 1)
        assert cell.spec.train.tune_from == tuple(mine)  # manifest order: ties go to the first candidate
        assert cell.spec.train.tune_metric == "val/acc1" and cell.spec.train.lr == 3e-3  # the variant's own
        assert cell.spec.depends_on() == tuple(mine)
    ids = {c.run_id for c in grid.cells}
    assert len(ids) == len(grid.cells)


def test_tuning_changes_no_untuned_id_and_follows_the_smoke_overrides():
    plain = parse(TINY)
    assert "stage" not in plain.cells[0].spec.semantic()  # a new field at its default: old ids stay
    assert plain.cells[0].spec.depends_on() == ()
    tuned_ids = {c.run_id for c in parse(TUNED).cells}
    assert not tuned_ids & {c.run_id for c in plain.cells}  # a tuned final cell is not an untuned run

    smoke = parse(TUNED, smoke=True)
    assert {c.spec.train.epochs for c in smoke.cells} == {1} and {c.grid for c in smoke.cells} == {"tiny-smoke"}
    final = next(c for c in smoke.cells if c.stage == "final")
    assert set(final.spec.train.tune_from) <= {c.run_id for c in smoke.cells if c.stage == "tune"}


def test_variants_that_collapse_share_their_tuning_cells():
    # a pool mixer reads no num_heads: its two num_heads values are one variant, tuned once
    text = TUNED.replace("model.head: [cls, gap]", "model.head: [gap]\n  model.num_heads: [2, 4]").replace(
        "depth: 2, num_heads: 2}", "depth: 2, num_heads: 2, mixer: pool}")
    grid = parse(text)
    assert len([c for c in grid.cells if c.stage == "tune"]) == 3
    assert len([c for c in grid.cells if c.stage == "final"]) == 2
    ids = {c.run_id for c in grid.cells}
    assert all(set(c.spec.train.tune_from) <= ids for c in grid.cells if c.stage == "final")


def test_several_keys_tune_their_product_on_several_seeds():
    text = TUNED.replace("  seeds: [100]\n", "  train.weight_decay: [0.0, 0.05]\n  seeds: [100, 101]\n"
                         "  metric: best:val/loss\n")
    grid = parse(text)
    final = next(c for c in grid.cells if c.stage == "final")
    tuning = {c.run_id: c for c in grid.cells if c.stage == "tune"}
    assert len(tuning) == 2 * 3 * 2 * 2 and len(final.spec.train.tune_from) == 3 * 2 * 2
    first = [tuning[r] for r in final.spec.train.tune_from[:4]]  # lr 1e-3: wd 0.0 (seeds 100, 101), wd 0.05
    assert [(c.spec.train.lr, c.spec.train.weight_decay, c.spec.seed) for c in first] == [
        (1e-3, 0.0, 100), (1e-3, 0.0, 101), (1e-3, 0.05, 100), (1e-3, 0.05, 101)]
    assert final.spec.train.tune_metric == "best:val/loss"


BAD_TUNE = {  # name: (tune section, key path named, hint)
    "test metric": ("  train.lr: [1.0e-3]\n  metric: test/acc1\n", "tune.metric", "the test split never picks"),
    "best test metric": ("  train.lr: [1.0e-3]\n  metric: best:test/acc1\n", "tune.metric", "never picks"),
    "unknown metric": ("  train.lr: [1.0e-3]\n  metric: val/los\n", "tune.metric", "did you mean 'val/loss'"),
    "unknown key": ("  train.lrr: [1.0e-3]\n", "tune.train.lrr", "did you mean 'lr'"),
    "model key": ("  model.depth: [1, 2]\n", "tune.model.depth", "tuned keys are train options"),
    "epochs": ("  train.epochs: [1, 2]\n", "tune.train.epochs", "cannot be tuned"),
    "not a list": ("  train.lr: 1.0e-3\n", "tune.train.lr", "non-empty list"),
    "repeated candidate": ("  train.lr: [1.0e-3, 0.001]\n", "tune.train.lr", "repeats a candidate"),
    "bad candidate": ("  train.lr: [1.0e-3, -1.0]\n", "tune.train.lr[1]", "greater than 0"),
    "bad seeds": ("  train.lr: [1.0e-3]\n  seeds: [-1]\n", "tune.seeds", "non-negative"),
    "no key": ("  seeds: [100]\n", "tune", "at least one train option"),
    "ema metric without ema": ("  train.lr: [1.0e-3]\n  metric: val/ema_acc1\n", "tune.metric", "ema_decay"),
}


@pytest.mark.parametrize("case", BAD_TUNE)
def test_a_bad_tune_section_exits_2_naming_file_line_and_key(case, tmp_path, capsys):
    section, key, hint = BAD_TUNE[case]
    path = tmp_path / "m.yaml"
    path.write_text(TINY + "tune:\n" + section)
    assert main(["plan", str(path), "--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{path}:\d+: {re.escape(key)}: ", err) and hint in err, err  # file:line: key path
    assert "Traceback" not in err and not (tmp_path / "results").exists()


def test_a_tuned_grid_axis_is_an_error_on_its_line():
    text = TINY.replace("model.head: [cls, gap]", "model.head: [cls, gap]\n  train.lr: [1.0e-3]")
    with pytest.raises(ManifestError) as info:
        parse(text + "tune:\n  train.lr: [3.0e-3, 1.0e-2]\n", "m.yaml")
    line = text.count("\n") + 2  # the line of `train.lr:` under `tune:`
    assert f"m.yaml:{line}: tune.train.lr: train.lr is a grid axis" in info.value.render()


def test_tune_with_phases_is_not_supported():
    text = TINY + ("phases:\n  - match: {model.head: gap}\n    transfer: copy\n"
                                    "tune:\n  train.lr: [1.0e-3]\n")
    with pytest.raises(ManifestError, match=r"m.yaml:\d+: tune: tune together with phases is not supported"):
        parse(text, "m.yaml")


def test_tune_from_and_tune_metric_go_together():
    from pydantic import ValidationError

    final = next(c for c in parse(TUNED).cells if c.stage == "final")
    data = final.spec.model_dump(mode="json")
    data["train"]["tune_metric"] = None
    with pytest.raises(ValidationError, match="tune_from and tune_metric go together"):
        type(final.spec)(**data)
