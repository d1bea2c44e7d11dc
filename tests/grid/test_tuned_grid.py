"""A tuned grid through the local executor: tuning cells first, then each variant's final cells at the
learning rate that was best on validation, in a case built to have a known answer (one candidate too
small to learn, one diverging, one clearly best); a rerun trains nothing. Also when a waiting cell may
start (vitstudy.grid.depends)."""

import json
from pathlib import Path

import yaml

from vitstudy.cli import main
from vitstudy.config.manifest import load, parse
from vitstudy.grid.depends import unmet, waves

TINY = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()  # 2 cells, 2 epochs

# one 8×8 patch per digit: the model learns like an MLP, to ~95% in three epochs at lr 1e-2; at 1e-5
# it stays near chance (10%), at 1e4 its loss is NaN within the first epoch
TUNED = """
name: tuned
defaults:
  model: {img_size: 8, patch_size: 8, embed_dim: 32, depth: 1, num_heads: 2}
  data: {dataset: digits, batch_size: 64}
  train: {epochs: 3}
  log: {progress_bar: false}
grid:
  model.head: [cls, gap]
seeds: [0]
tune:
  train.lr: [1.0e-5, 1.0e-2, 1.0e+4]
  seeds: [100]
"""


def _record(grid, out, cell) -> dict:
    return json.loads((grid.cell_dir(out, cell) / "metrics.json").read_text())


def test_a_tuned_grid_trains_each_variant_at_its_best_validation_lr(tmp_path, write_manifest, capsys):
    manifest, out = write_manifest(TUNED), tmp_path / "results"
    # a candidate that diverges is tuning's answer (that lr loses), not a failure of the grid
    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 done, 2 diverged (tuning)" in printed
    grid = load(manifest)
    final = [c for c in grid.cells if c.stage == "final"]
    assert len(final) == 2
    for cell in final:
        record = _record(grid, out, cell)
        tuned = record["tuned"]
        assert record["status"] == "done" and record["run_id"] == cell.run_id
        assert tuned["keys"] == {"train.lr": 1e-2} and tuned["edge"] == []
        assert [c["statuses"] for c in tuned["candidates"]] == [{"done": 1}, {"done": 1}, {"diverged": 1}]
        low, best, diverged = (c["score"] for c in tuned["candidates"])
        assert best > 80 > 20 > low and diverged is None
        # trained at the chosen lr: spec.yaml and the record hold it, the manifest's spec does not
        assert cell.spec.train.lr == 1e-3 and record["spec"]["train"]["lr"] == 1e-2
        assert yaml.safe_load((grid.cell_dir(out, cell) / "spec.yaml").read_text())["train"]["lr"] == 1e-2
        assert record["metrics"]["test/acc1"] > 80
        # it started after every one of its tuning cells had ended
        for run_id in cell.spec.train.tune_from:
            assert record["started_at"] >= _record(grid, out, next(c for c in grid.cells if c.run_id == run_id)
                                                   )["finished_at"]
        assert f"✓ {cell.run_id}: test/acc1" in printed and "at lr=0.01" in printed
    table = (out / "tuned" / "table.md").read_text()  # the report's rows are the final cells, with their lr
    rows = [line for line in table.splitlines() if line.startswith(("| cls |", "| gap |"))]
    assert len(rows) == 2 and all("| 0.01 |" in row for row in rows), table

    # a rerun trains nothing: every cell is skipped or failed before
    before = {c.run_id: _record(grid, out, c)["finished_at"] for c in grid.cells}
    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "→ " not in printed and "6 skipped (done before), 2 diverged (tuning)" in printed
    assert {c.run_id: _record(grid, out, c)["finished_at"] for c in grid.cells} == before

    # plan lists the tuning cells as cells of their own, and says which cells pick from them
    assert main(["plan", str(manifest), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.endswith("  tuning") for line in lines) == 6
    assert sum("tuned on val/acc1 over 3 tuning cells" in line for line in lines) == 2


def test_cells_wait_in_waves_for_the_cells_they_depend_on():
    tuned = parse(TUNED)
    first, second = waves(list(tuned.cells))
    assert {c.stage for c in first} == {"tune"} and {c.stage for c in second} == {"final"}
    assert len(waves(list(parse(TINY).cells))) == 1
    assert waves([c for c in tuned.cells if c.stage == "final"]) == [[c for c in tuned.cells
                                                                      if c.stage == "final"]]


def test_a_final_cell_starts_once_every_tuning_cell_ended_done_or_not(tmp_path):
    grid = parse(TUNED)
    final = next(c for c in grid.cells if c.stage == "final")
    ids = final.spec.train.tune_from
    assert unmet(final.spec, tmp_path) == f"its tuning cell {ids[0]} is pending"
    for run_id, status in zip(ids, ["done", "diverged", "running"], strict=True):
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "metrics.json").write_text(json.dumps({"status": status}))
    assert unmet(final.spec, tmp_path) == f"its tuning cell {ids[2]} is running"
    (tmp_path / ids[2] / "metrics.json").write_text(json.dumps({"status": "failed"}))
    assert unmet(final.spec, tmp_path) is None  # a failed candidate scores worst; the others decide


def test_a_failed_tuning_candidate_is_counted_apart_and_fails_nothing():
    from vitstudy.grid.progress import count_key, failures

    keys = [count_key("diverged", True), count_key("done", True), count_key("failed", False)]
    assert keys == ["diverged (tuning)", "done", "failed"]
    assert failures({"done": 4, "skipped": 2, "diverged (tuning)": 3}) == 0
    assert failures({"done": 4, "diverged (tuning)": 3, "failed": 1, "not run": 2, "pending": 1}) == 4
