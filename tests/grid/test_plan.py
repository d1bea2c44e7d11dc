"""`vitstudy plan` without training: each cell's status from its run folder, corrected by what is live
(a dead "running" cell is interrupted, a cell SLURM holds is queued), params and MACs, the ETA."""

import json
from pathlib import Path

import pytest

from vitstudy.cli import main
from vitstudy.config.manifest import parse
from vitstudy.grid import plan as plan_module
from vitstudy.grid.executors import slurm
from vitstudy.grid.locks import CellLock
from vitstudy.models.cost import model_cost
from vitstudy.results.format import human

TINY_GRID = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()
SIX = TINY_GRID.replace("seeds: [0]", "seeds: [0, 1, 2]")  # 6 cells: head cls/gap × 3 seeds


def record(run_dir: Path, **fields) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(fields))


@pytest.fixture
def grid_state(tmp_path, monkeypatch):
    """Six cells: done (60 s), done (120 s), running without a live holder, running with one, pending
    but held by a SLURM task, failed."""
    manifest = tmp_path / "six.yaml"
    manifest.write_text(SIX)
    grid = parse(SIX, manifest)
    out = tmp_path / "results"
    dirs = [grid.cell_dir(out, c) for c in grid.cells]
    record(dirs[0], status="done", wall_time_s=60.0)
    record(dirs[1], status="done", wall_time_s=120.0)
    record(dirs[2], status="running")
    (dirs[2] / ".lock").touch()  # a lock file its killed holder left behind
    record(dirs[3], status="running")
    record(dirs[5], status="failed")
    jobs = slurm.jobs_dir(grid, out) / slurm.JOBS_FILE
    jobs.parent.mkdir(parents=True)
    jobs.write_text(json.dumps({grid.cells[4].run_id: "7_4", grid.cells[0].run_id: "7_0"}))
    monkeypatch.setattr(slurm, "available", lambda: True)
    monkeypatch.setattr(slurm, "queued_ids", lambda: {"7_4", "7"})  # squeue: only task 4 is left
    lock = CellLock(dirs[3])
    assert lock.acquire()
    yield manifest, grid, out
    lock.release()


def test_statuses_counts_and_eta(grid_state):
    _, grid, out = grid_state
    state = plan_module.plan(grid, out)
    assert [r.status for r in state.rows] == ["done", "done", "interrupted", "running", "queued", "failed"]
    assert [r.cell for r in state.rows] == list(grid.cells)
    assert state.walls == [60.0, 120.0]
    # 3 cells left (interrupted, running, queued) × the median 90 s of the finished ones
    assert state.summary() == ("2 done, 1 failed, 1 interrupted, 1 queued, 1 running; "
                               "about 4m30s left on one worker (median 1m30s per cell)")
    for row in state.rows:
        cost = model_cost(row.cell.spec.model)
        assert (row.params, row.macs) == (cost.params, cost.macs)


def test_no_eta_before_a_cell_finished_nor_after_all_did(tmp_path):
    grid = parse(TINY_GRID)
    assert plan_module.plan(grid, tmp_path).summary() == "2 pending"
    for c in grid.cells:
        record(grid.cell_dir(tmp_path, c), status="done", wall_time_s=5.0)
    assert plan_module.plan(grid, tmp_path).summary() == "2 done"


def test_a_record_status_is_corrected_only_by_what_is_live(tmp_path):
    run_dir = tmp_path / "cell"
    assert plan_module.cell_status(run_dir, {}, queued=False) == "pending"
    assert plan_module.cell_status(run_dir, {}, queued=True) == "queued"
    assert plan_module.cell_status(run_dir, {"status": "running"}, queued=True) == "queued"  # died, requeued
    assert plan_module.cell_status(run_dir, {"status": "done"}, queued=True) == "done"
    assert plan_module.cell_status(run_dir, {"status": "oom"}, queued=True) == "oom"
    assert not run_dir.exists()  # looking created nothing


def test_the_command_prints_one_line_per_cell_and_the_summary(grid_state, capsys):
    manifest, grid, out = grid_state
    assert main(["plan", str(manifest), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"grid 'tiny': 6 cells -> {out / 'tiny'}"
    assert lines[-1].startswith("2 done, 1 failed, 1 interrupted, 1 queued, 1 running; about 4m30s left")
    cost = model_cost(grid.cells[2].spec.model)
    assert lines[3].split() == ["interrupted", f"tiny/{grid.cells[2].run_id}", human(cost.params), "params",
                                human(cost.macs), "MACs"]
    assert [line.split()[0] for line in lines[1:-1]] == ["done", "done", "interrupted", "running", "queued",
                                                         "failed"]
