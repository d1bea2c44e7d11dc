"""A tuned grid's final cell picks its values from its tuning cells' records (vitstudy.training.tune):
the best validation score, losses minimised, failed candidates worst, ties to the first candidate,
`edge` at the range's ends. Records are written by hand here: each case has a known answer."""

import json
from pathlib import Path

import pytest

from vitstudy.config.manifest import parse
from vitstudy.training.tune import TuneError, apply_tuning

TINY = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()  # 2 cells, 2 epochs

# the variants' own lr is 3e-3 (tests/manifests/tiny.yaml): no candidate's
TUNED = TINY + "tune:\n  train.lr: [1.0e-3, 2.0e-3, 1.0e-2]\n  seeds: [100, 101]\n"


def _grid(text: str = TUNED):
    grid = parse(text)
    final = next(c for c in grid.cells if c.stage == "final")
    by_id = {c.run_id: c for c in grid.cells}
    return final, [by_id[r] for r in final.spec.train.tune_from]


def _write(tmp_path, cell, status: str = "done", **metrics) -> None:
    """A tuning cell's record: its spec, status, final val metrics and those at the best epoch."""
    d = tmp_path / cell.run_id
    d.mkdir(exist_ok=True)
    record = {"status": status, "run_id": cell.run_id, "spec": cell.spec.model_dump(mode="json"),
              "metrics": {k: v for k, v in metrics.items() if not k.startswith("best_")},
              "best": {k[5:].replace("_", "/", 1): v for k, v in metrics.items() if k.startswith("best_")}}
    (d / "metrics.json").write_text(json.dumps(record))


def _scores(tmp_path, tuning, accs, statuses=None) -> None:
    for cell, acc, status in zip(tuning, accs, statuses or ["done"] * len(accs), strict=True):
        _write(tmp_path, cell, status, **({"val/acc1": acc} if status == "done" else {}))


def test_the_best_validation_score_wins_and_the_record_says_why(tmp_path):
    final, tuning = _grid()  # lr 1e-3 (seeds 100, 101), 2e-3 (100, 101), 1e-2 (100, 101)
    _scores(tmp_path, tuning, [80.0, 82.0, 90.0, 92.0, 85.0, 86.0])
    spec, extra = apply_tuning(final.spec, tmp_path / final.run_id)
    assert spec.train.lr == 2e-3
    assert spec.train.tune_from == final.spec.train.tune_from and spec.seed == final.spec.seed
    tuned = extra["tuned"]
    assert tuned["keys"] == {"train.lr": 2e-3} and (tuned["metric"], tuned["mode"]) == ("val/acc1", "max")
    assert [(c["values"], c["score"], c["n"], c["statuses"]) for c in tuned["candidates"]] == [
        ({"train.lr": 1e-3}, 81.0, 2, {"done": 2}), ({"train.lr": 2e-3}, 91.0, 2, {"done": 2}),
        ({"train.lr": 1e-2}, 85.5, 2, {"done": 2})]
    assert tuned["candidates"][1]["runs"] == [tuning[2].run_id, tuning[3].run_id]
    assert tuned["edge"] == []
    json.dumps(extra)  # goes into metrics.json as it is


def test_a_candidate_that_failed_on_any_seed_scores_worst(tmp_path):
    final, tuning = _grid()
    # 1e-2 scores best on seed 100 but diverges on seed 101; 1e-3 beats 2e-3
    _scores(tmp_path, tuning, [70.0, 71.0, 60.0, 61.0, 99.0, None], ["done"] * 5 + ["diverged"])
    spec, extra = apply_tuning(final.spec, tmp_path / final.run_id)
    assert spec.train.lr == 1e-3 and extra["tuned"]["edge"] == ["train.lr"]  # the smallest candidate won
    failed = extra["tuned"]["candidates"][2]
    assert failed["score"] is None and failed["n"] == 1 and failed["statuses"] == {"done": 1, "diverged": 1}


def test_a_loss_is_minimised_and_ties_go_to_the_first_candidate(tmp_path):
    final, tuning = _grid(TUNED.replace("seeds: [100, 101]", "seeds: [100]\n  metric: best:val/loss"))
    for cell, loss in zip(tuning, [0.5, 0.2, 0.2], strict=True):
        _write(tmp_path, cell, best_val_loss=loss, **{"val/loss": 9.0})  # the final loss is not the metric
    spec, extra = apply_tuning(final.spec, tmp_path / final.run_id)
    assert spec.train.lr == 2e-3 and extra["tuned"]["mode"] == "min"
    assert [c["score"] for c in extra["tuned"]["candidates"]] == [0.5, 0.2, 0.2]


def test_edge_names_a_key_whose_best_value_is_the_largest(tmp_path):
    text = TUNED.replace("seeds: [100, 101]", "train.weight_decay: [0.0, 0.05, 0.1]\n  seeds: [100]")
    final, tuning = _grid(text)  # (lr, wd) in manifest order: lr-major
    accs = [50.0] * 9
    accs[2 * 3 + 1] = 95.0  # lr 1e-2 (the largest), wd 0.05 (the middle one)
    _scores(tmp_path, tuning, accs)
    spec, extra = apply_tuning(final.spec, tmp_path / final.run_id)
    assert (spec.train.lr, spec.train.weight_decay) == (1e-2, 0.05)
    assert extra["tuned"]["keys"] == {"train.lr": 1e-2, "train.weight_decay": 0.05}
    assert extra["tuned"]["edge"] == ["train.lr"]


def test_every_candidate_failed_or_unfinished_is_the_cells_failure(tmp_path):
    final, tuning = _grid()
    _scores(tmp_path, tuning, [None] * 6, ["diverged", "failed"] * 3)
    with pytest.raises(TuneError, match="every tuning candidate failed: train.lr=0.001 1 diverged, 1 failed"):
        apply_tuning(final.spec, tmp_path / final.run_id)
    (tmp_path / tuning[3].run_id / "metrics.json").unlink()
    with pytest.raises(TuneError, match=f"1 tuning cell\\(s\\) not finished: {tuning[3].run_id} \\(pending\\)"):
        apply_tuning(final.spec, tmp_path / final.run_id)


def test_an_untuned_cell_is_left_as_it_is(tmp_path):
    cell = parse(TINY).cells[0]
    assert apply_tuning(cell.spec, tmp_path / cell.run_id) == (cell.spec, {})
