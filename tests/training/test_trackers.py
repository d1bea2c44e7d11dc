"""Trackers for real (vitstudy.training.loggers): a smoke grid logged to MLflow (a local SQLite store) and
to W&B (offline) reads back, through MLflow's client and W&B's own reader of its transaction log, the
params and final metrics of each run's metrics.json, packed (run-grid's default for cells that differ in
seed) and alone (Lightning's Trainer); a tracker whose store breaks mid-run loses nothing but itself."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
from mlflow import MlflowClient

from vitstudy.cli import main
from vitstudy.config.manifest import load
from vitstudy.results.runs import val_curve
from vitstudy.training.loggers import TrackerWarning, build_loggers, finish, wandb_mode
from vitstudy.training.run import run_cell

GRID = """
name: tracked
defaults:
  model: {preset: vit_micro, embed_dim: 32, depth: 2, num_heads: 2}
  data: {dataset: digits, batch_size: 256}
  train: {epochs: 1, lr: 3.0e-3, accelerator: cpu}
  log: {progress_bar: false, every_n_steps: 2, loggers: [tensorboard, mlflow, wandb]}
grid:
  model.head: [gap]
seeds: [0]
"""


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """HOME, W&B's folders and the working directory in tmp_path (returned: it must stay empty), W&B
    offline and without credentials, no MLflow store from the environment."""
    for name in ("home", "cwd", "wandb_config", "wandb_cache", "wandb_data"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "cwd" / "not-used"))  # the run folder is given instead
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "NETRC", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)  # Lightning's MLflow logger sets MLFLOW_TRACKING_URI
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "cwd"


def _grid(tmp_path, text: str = GRID):
    path = tmp_path / "tracked.yaml"
    path.write_text(textwrap.dedent(text))
    return load(path)


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        return {k: v for key, inner in value.items() for k, v in _flat(inner, f"{prefix}{key}.").items()}
    return {prefix[:-1]: value}


def _final(record: dict) -> dict[str, float]:
    """metrics.json's numbers under the names the trackers get: metrics as they are, best/..., cost/..."""
    named = {**record["metrics"], **{f"best/{k}": v for k, v in record["best"].items()},
             **{f"cost/{k}": v for k, v in record["cost"].items()}, "wall_time_s": record["wall_time_s"]}
    return {k: v for k, v in named.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _close(got: dict, want: dict[str, float]) -> None:
    missing = want.keys() - got.keys()
    assert not missing, missing
    wrong = {k: (got[k], v) for k, v in want.items() if abs(got[k] - v) > 1e-6 * max(1.0, abs(v))}
    assert not wrong, wrong


def _assert_mlflow(uri: str, experiment: str, run_dir: Path) -> None:
    record = json.loads((run_dir / "metrics.json").read_text())
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              filter_string=f"tags.mlflow.runName = '{run_dir.name}'")
    assert len(runs) == 1
    run = client.get_run(runs[0].info.run_id)
    want = {k: v if isinstance(v, str) else json.dumps(v) for k, v in _flat(record["spec"]).items()}
    assert run.data.params == want  # the spec, flattened, and nothing else
    assert {"model.mixer", "train.lr", "seed"} <= run.data.params.keys()
    assert float(run.data.params["train.lr"]) == record["spec"]["train"]["lr"]
    if record["status"] != "done":
        assert run.info.status == "FAILED"
        return
    assert run.info.status == "FINISHED"
    assert run.data.metrics.keys() >= {"test/acc1", "test/loss", "best/test/acc1", "best/epoch"}
    _close(run.data.metrics, _final(record))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/acc1")] != []


def _assert_wandb(run_dir: Path) -> None:
    record = json.loads((run_dir / "metrics.json").read_text())
    (offline,) = (run_dir / "wandb").glob(f"offline-run-*-{run_dir.name}")
    # W&B's own reader of the run's transaction log (run-<id>.wandb)
    read = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(offline)],
                          capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr[-2000:]
    run = json.loads(read.stdout)
    assert run["run_id"] == run_dir.name
    assert run["project"] == (record["spec"]["log"]["project"] or record["spec"]["grid"])
    assert run["config"] == _flat(record["spec"])
    assert run["exit_code"] == (0 if record["status"] == "done" else 1)
    if record["status"] == "done":
        assert run["state"] == "finished"
        _close(run["summary"], _final(record))


def _nothing_outside(cwd: Path, home: Path) -> None:
    assert not any(cwd.iterdir()), list(cwd.iterdir())
    assert not [p for p in home.rglob("*") if "wandb" in p.name or "mlflow" in p.name]


def test_a_grid_logs_to_mlflow_and_wandb_packed_as_run_grid_trains_it(isolated, tmp_path, recwarn):
    # two cells that differ in lr: run-grid trains them as one pack, where the second diverges at once
    grid = _grid(tmp_path, GRID.replace("model.head: [gap]", "train.lr: [3.0e-3, 1.0e+30]"))
    out = tmp_path / "results"
    main(["run-grid", str(tmp_path / "tracked.yaml"), "--out", str(out)])
    uri = "sqlite:///" + (out / "tracked" / "mlflow.db").as_posix()  # the default store, beside the runs
    statuses = []
    for cell in grid.cells:
        run_dir = grid.cell_dir(out, cell)
        record = json.loads((run_dir / "metrics.json").read_text())
        assert record["pack"]["size"] == 2 and "tracker_errors" not in record
        statuses.append(record["status"])
        _assert_mlflow(uri, "tracked", run_dir)
        _assert_wandb(run_dir)
    assert statuses == ["done", "diverged"]
    _nothing_outside(isolated, tmp_path / "home")
    assert not [w for w in recwarn if w.category is TrackerWarning]


def test_a_cell_alone_logs_to_mlflow_and_wandb(isolated, tmp_path, recwarn):
    grid = _grid(tmp_path, GRID.replace(
        "log: {", f"log: {{project: alone, tracking_uri: 'sqlite:///{tmp_path / 'store' / 't.db'}', "))
    (cell,) = grid.cells
    run_dir = grid.cell_dir(tmp_path / "results", cell)
    record = run_cell(cell.spec, run_dir, progress=False)
    assert record["status"] == "done" and "pack" not in record and "tracker_errors" not in record
    _assert_mlflow("sqlite:///" + (tmp_path / "store" / "t.db").as_posix(), "alone", run_dir)
    _assert_wandb(run_dir)
    _nothing_outside(isolated, tmp_path / "home")
    assert not [w for w in recwarn if w.category is TrackerWarning]


class BreakStore(L.Callback):
    """Replaces the MLflow store's folder with a file after the third training step, once the run has
    logged its params and a step: SQLite can no longer write the open database (its file is gone)."""

    def __init__(self, store: Path):
        self.store = store

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 3:
            client = MlflowClient(f"sqlite:///{self.store / 'mlflow.db'}")
            (run,) = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
            assert run.data.params and "train/loss_step" in run.data.metrics  # it was working
            shutil.rmtree(self.store)
            self.store.write_text("not a folder any more")


def test_a_tracker_that_fails_mid_run_loses_nothing_but_itself(isolated, tmp_path):
    store = tmp_path / "store"
    uri = "sqlite:///" + (store / "mlflow.db").as_posix()
    grid = _grid(tmp_path, GRID.replace("[tensorboard, mlflow, wandb]", f"[tensorboard, mlflow], tracking_uri: '{uri}'"))
    (cell,) = grid.cells
    run_dir = grid.cell_dir(tmp_path / "results", cell)
    with pytest.warns(TrackerWarning, match=r"mlflow failed \(log_metrics: MlflowException: .*readonly database"):
        record = run_cell(cell.spec, run_dir, callbacks=(BreakStore(store),), progress=False)
    assert record["status"] == "done"
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(json.dumps(record))
    (error,) = record["tracker_errors"]
    assert error["logger"] == "mlflow" and error["during"] == "log_metrics"
    assert error["type"] == "MlflowException" and "readonly database" in error["message"]
    curve = val_curve(run_dir)  # TensorBoard, which the report reads, went on after the failure
    assert list(curve) == [0] and abs(curve[0] - record["metrics"]["val/acc1"]) < 1e-6
    assert not any(isolated.iterdir())


def test_wandb_logs_offline_without_credentials(monkeypatch, tmp_path):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode() == "offline"  # no key, no netrc
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_mode() is None  # `wandb login` wrote one: W&B decides (online)
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() is None  # the user's choice stands


def test_a_tracker_that_cannot_start_is_reported_and_logs_nothing(isolated, tmp_path):
    (tmp_path / "a-file").write_text("")
    uri = "sqlite:///" + (tmp_path / "a-file" / "mlflow.db").as_posix()  # its folder is a file
    (cell,) = _grid(tmp_path, GRID.replace("[tensorboard, mlflow, wandb]", f"[mlflow], tracking_uri: '{uri}'")).cells
    with pytest.warns(TrackerWarning, match=r"mlflow failed \(start: "):
        loggers = build_loggers(cell.spec, tmp_path / "run")
    assert [type(logger).__name__ for logger in loggers] == ["TensorBoardLogger", "_NotStarted"]
    loggers[1].log_metrics({"train/loss": 1.0}, 0)  # nothing, and no second warning
    (error,) = finish(loggers, {"metrics": {"test/acc1": 50.0}, "best": {}, "cost": {}, "wall_time_s": 1.0}, 1)
    assert error["logger"] == "mlflow" and error["during"] == "start" and error["type"] == "FileExistsError"


def test_a_resumed_cell_goes_on_in_its_mlflow_run_and_a_fresh_one_starts_another(isolated, tmp_path):
    uri = "sqlite:///" + (tmp_path / "store" / "mlflow.db").as_posix()
    (cell,) = _grid(tmp_path, GRID.replace("[tensorboard, mlflow, wandb]", f"[mlflow], tracking_uri: '{uri}'")).cells
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = build_loggers(cell.spec, run_dir)[1]
    first.log_metrics({"train/loss_step": 2.0}, 1)  # then the process is killed: the run stays RUNNING
    (run_dir / "last.ckpt").write_bytes(b"")  # what the cell resumes from
    resumed = build_loggers(cell.spec, run_dir)[1]
    assert resumed.run_id == first.run_id
    resumed.log_metrics({"train/loss_step": 1.0}, 2)
    assert finish([resumed], {"metrics": {"test/acc1": 50.0}, "best": {}, "cost": {}, "wall_time_s": 1.0}, 2) == []
    (run_dir / "last.ckpt").unlink()  # a retried cell starts afresh, in a new run
    fresh = build_loggers(cell.spec, run_dir)[1]
    assert fresh.run_id != first.run_id
    client = MlflowClient(uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test/acc1"] == 50.0
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "train/loss_step")] == [(1, 2.0), (2, 1.0)]
    assert client.get_run(fresh.run_id).info.status == "RUNNING"
    finish([fresh])
    assert client.get_run(fresh.run_id).info.status == "FAILED"
