"""Running a grid: resume after SIGKILL, failures and divergence, --retry-failed / --fail-fast, per-cell
locks between concurrent processes, workers, plan."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from vitstudy.cli import main
from vitstudy.config.manifest import load
from vitstudy.grid.locks import CellLock
from vitstudy.grid.progress import duration
from vitstudy.models.cost import model_cost
from vitstudy.results.format import human

ROOT = Path(__file__).resolve().parents[2]
HEAD = "defaults:\n  model: {preset: vit_micro}\n  data: {dataset: digits}\n"
TINY_GRID = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()

# --- running: resume after SIGKILL, failures, retry, fail-fast, locks, workers, plan ---------------
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # subprocesses: no thread oversubscription on 2 cores


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DETERMINISTIC = TINY_GRID.replace("train: {epochs: 2, lr: 3.0e-3}",
                                  "train: {epochs: 2, lr: 3.0e-3, deterministic: true, accelerator: cpu}") \
                         .replace("batch_size: 256}", "batch_size: 256, shift: 1}")  # augmentation uses the RNG

KILL_DRIVER = """
import os, signal, sys
import vitstudy.training.run as T
save = T.AtomicCheckpointIO.save_checkpoint
def save_then_die(self, checkpoint, path, storage_options=None):
    save(self, checkpoint, path, storage_options)
    if os.path.basename(str(path)) == "last.ckpt" and "head-gap" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)   # mid-cell: after its first epoch's checkpoint
T.AtomicCheckpointIO.save_checkpoint = save_then_die
from vitstudy.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _records(out: Path, grid) -> dict:
    return {c.spec.model.head if len(grid.cells) == 2 else c.run_id:
            json.loads((grid.cell_dir(out, c) / "metrics.json").read_text()) for c in grid.cells}


def test_sigkill_mid_cell_then_rerun_resumes_it_with_identical_metrics(tmp_path, capsys, one_thread):
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(DETERMINISTIC)
    out = tmp_path / "results"
    grid = load(manifest)
    killed = subprocess.run([sys.executable, "-c", KILL_DRIVER, "run-grid", str(manifest), "--out", str(out)],
                            capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = _records(out, grid)
    assert before["cls"]["status"] == "done" and before["gap"]["status"] == "running"
    gap_dir = grid.cell_dir(out, next(c for c in grid.cells if c.spec.model.head == "gap"))
    ckpt = torch.load(gap_dir / "last.ckpt", weights_only=True, map_location="cpu")
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 5)  # 1257 images / 256 per batch = 5 steps
    assert (gap_dir / ".lock").exists()  # the killed holder's lock file is left behind ...

    assert main(["plan", str(manifest), "--out", str(out)]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in plan[1:3]] == ["done", "interrupted"]  # ... yet not "running"
    wall = duration(before["cls"]["wall_time_s"])  # one cell left, at the finished one's wall time
    assert plan[3] == f"1 done, 1 interrupted; about {wall} left on one worker (median {wall} per cell)"

    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0  # ... and does not block
    assert "1 done, 1 skipped" in capsys.readouterr().out
    after = _records(out, grid)
    assert after["cls"] == before["cls"]  # the finished cell was not touched
    assert after["gap"]["status"] == "done" and after["gap"]["attempt"] == 2
    assert after["gap"]["resumed_from"] == {"epoch": 0, "global_step": 5}  # resumed, not restarted

    # the same cell without interruption ends with exactly the same metrics
    from vitstudy.training.run import run_cell

    cell = next(c for c in grid.cells if c.spec.model.head == "gap")
    reference = run_cell(cell.spec, tmp_path / "reference" / cell.run_id)
    assert reference["resumed_from"] is None
    assert after["gap"]["metrics"] == reference["metrics"]
    assert set(reference["metrics"]) >= {"train/loss", "val/loss", "test/acc1"}


FAILING = TINY_GRID.replace("epochs: 2", "epochs: 1").replace("grid:\n  model.head: [cls, gap]",
                            "grid:\n  - {model.head: [cls, gap]}\n  - {model.head: [gap], train.lr: [1.0e+30]}")


def test_failed_and_diverged_cells_are_recorded_and_the_rest_finish(tmp_path, capsys, one_thread):
    manifest = tmp_path / "failing.yaml"
    manifest.write_text(FAILING)
    out = tmp_path / "results"
    grid = load(manifest)
    ok, crash, diverge = grid.cells[0], grid.cells[1], grid.cells[2]
    assert diverge.spec.train.lr == 1e30 and diverge.spec.train.grad_clip is None
    crash_dir = grid.cell_dir(out, crash)
    crash_dir.mkdir(parents=True)
    with zipfile.ZipFile(crash_dir / "last.ckpt", "w") as z:  # whole (not cut short: test_faults.py) but
        z.writestr("archive/data.txt", "not a checkpoint")   # no torch checkpoint: it fails when it resumes

    assert main(["run-grid", str(manifest), "--out", str(out), "--fail-fast"]) == 1
    assert "1 done, 1 failed, 1 not run" in capsys.readouterr().out  # stopped at the first failure

    assert main(["run-grid", str(manifest), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "1 skipped (done before), 1 failed, 1 diverged" in text and "--retry-failed" in text
    rec = {c.run_id: json.loads((grid.cell_dir(out, c) / "metrics.json").read_text()) for c in grid.cells}
    assert rec[ok.run_id]["status"] == "done"
    failed, diverged = rec[crash.run_id], rec[diverge.run_id]
    assert failed["status"] == "failed" and failed["error"]["category"] == "failed" and failed["error"]["message"]
    assert diverged["status"] == "diverged" and diverged["error"]["type"] == "DivergedError"
    assert "non-finite training loss" in diverged["error"]["message"]
    assert "DivergedError" in (grid.cell_dir(out, diverge) / "traceback.txt").read_text()
    assert "Traceback" in (crash_dir / "traceback.txt").read_text()
    assert failed["attempt"] == 1  # the second run-grid did not retry it

    assert main(["run-grid", str(manifest), "--out", str(out), "--retry-failed"]) == 1
    assert "1 done, 1 skipped (done before), 1 diverged" in capsys.readouterr().out
    retried = json.loads((crash_dir / "metrics.json").read_text())
    assert retried["status"] == "done" and retried["attempt"] == 2 and retried["resumed_from"] is None
    assert not (crash_dir / "traceback.txt").exists()
    assert json.loads((grid.cell_dir(out, diverge) / "metrics.json").read_text())["attempt"] == 2


BARRIER_DRIVER = """
import sys, time, pathlib
import vitstudy.training.run, vitstudy.grid.executors.local   # the slow imports, before the start signal
from vitstudy.cli import main
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ready.write_text("ready")
while not go.exists():
    time.sleep(0.01)
sys.exit(main(sys.argv[3:]))
"""


def test_two_concurrent_run_grids_train_each_cell_once(tmp_path):
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(TINY_GRID.replace("seeds: [0]", "seeds: [0, 1]").replace("epochs: 2", "epochs: 1"))
    out, go = tmp_path / "results", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", BARRIER_DRIVER, str(tmp_path / f"ready{i}"), str(go),
                               "run-grid", str(manifest), "--out", str(out), "--workers", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
             for i in range(2)]  # --workers 1: packs too train in the run-grid process (its pid below)
    try:
        for i in range(2):
            for _ in range(30000):  # both processes have imported everything: start them together
                if (tmp_path / f"ready{i}").exists() or procs[i].poll() is not None:
                    break
                subprocess.run(["sleep", "0.01"])
        go.write_text("go")
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], results
    grid = load(manifest)
    trained = [line.split("✓ ")[1].split(":")[0] for stdout, _ in results for line in stdout.splitlines()
               if "✓ " in line]
    assert sorted(trained) == sorted(c.run_id for c in grid.cells)  # each cell trained by exactly one
    for c in grid.cells:
        record = json.loads((grid.cell_dir(out, c) / "metrics.json").read_text())
        assert record["status"] == "done" and record["attempt"] == 1
        assert record["env"]["pid"] in {p.pid for p in procs}


def test_workers_train_cells_in_spawned_processes(tmp_path, capsys):
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(TINY_GRID.replace("epochs: 2", "epochs: 1"))
    out = tmp_path / "results"
    assert main(["run-grid", str(manifest), "--out", str(out), "--workers", "2"]) == 0
    assert "2 done" in capsys.readouterr().out
    grid = load(manifest)
    records = [json.loads((grid.cell_dir(out, c) / "metrics.json").read_text()) for c in grid.cells]
    assert all(r["status"] == "done" and r["attempt"] == 1 for r in records)
    assert [(r["run_id"], r["spec"]) for r in records] == [(c.run_id, c.spec.model_dump(mode="json"))
                                                           for c in grid.cells]  # each its own cell
    assert os.getpid() not in {r["env"]["pid"] for r in records}  # trained in the spawned workers


def test_plan_shows_running_cells_and_imports_no_training_code(tmp_path):
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(TINY_GRID)
    out = tmp_path / "results"
    grid = load(manifest)
    run_dir = grid.cell_dir(out, grid.cells[0])
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({"status": "running"}))
    lock = CellLock(run_dir)
    assert lock.acquire()  # a live holder
    try:
        code = textwrap.dedent(f"""
            import sys
            from vitstudy.cli import main
            assert main(["plan", {str(manifest)!r}, "--out", {str(out)!r}]) == 0
            assert "lightning" not in sys.modules and "vitstudy.training.run" not in sys.modules
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env=ONE_THREAD)
    finally:
        lock.release()
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if "/head-" in line]
    assert [line[0] for line in lines] == ["running", "pending"]
    for line, cell in zip(lines, grid.cells, strict=True):
        cost = model_cost(cell.spec.model)
        assert line[1:] == [f"tiny/{cell.run_id}", human(cost.params), "params", human(cost.macs), "MACs"]

