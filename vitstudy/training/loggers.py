"""The Lightning loggers of one cell: TensorBoard under `tb/` always (the report reads its event files),
plus the CSV, Weights & Biases and MLflow loggers that the manifest's `log.loggers` names.

W&B and MLflow are trackers: each cell is one tracker run, named by its run id, holding
  params   the resolved spec, flattened: `model.mixer`, `train.lr`, ... (MLflow stores text: a string as
           it is, any other value as JSON: `null`, `true`, `[0.9, 0.999]`)
  metrics  what Lightning logs while the cell trains and, at its end (`finish`), the numbers of its
           metrics.json under the same names: `metrics` as they are (`test/acc1`, `val/loss`, ...), `best`
           under `best/` (`best/epoch`, `best/test/acc1`, ...), `cost` under `cost/`, and `wall_time_s`.
Neither needs a server. MLflow writes `sqlite:///<results>/<grid>/mlflow.db`, beside the run folders (MLflow 3
refuses its old file store; MLFLOW_TRACKING_URI is not read), unless `log.tracking_uri` names another store.
W&B writes under the run folder, `<run>/wandb/`, and offline when WANDB_MODE is unset and no W&B credentials
are configured (no WANDB_API_KEY, no `wandb login`): `wandb sync <run>/wandb/offline-run-*` uploads it later.
A cell that resumes from its checkpoint goes on in its run (W&B: the same run id; MLflow: its unfinished run).

A tracker that fails (its store gone, its server down) costs the cell nothing: a `TrackerWarning` says so,
the tracker is left out for the rest of the cell, and `finish` returns the failure for the record's
`tracker_errors`. TensorBoard and CSV are the cell's own files: their failures are the cell's.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import sys
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from vitstudy.config.spec import RunSpec
from vitstudy.runfolder import CKPT_FILE, PREV_FILE, TB_DIR

MLFLOW_DB = "mlflow.db"  # the default MLflow store, in the grid's folder


class TrackerWarning(UserWarning):
    """A tracker failed; the cell goes on without it."""


def build_loggers(spec: RunSpec, run_dir: Path) -> list:
    """TensorBoard under tb/ (always: the report reads it), plus the extra loggers `spec.log` names; the
    trackers' runs are started here, with the spec as their params."""
    log = spec.log
    loggers: list = [TensorBoardLogger(save_dir=run_dir, name=TB_DIR, version="", default_hp_metric=False)]
    if "csv" in log.loggers:
        loggers.append(CSVLogger(save_dir=run_dir, name="csv", version=""))
    if rank_zero_only.rank != 0:  # under DDP, rank 0 alone tracks the cell
        return loggers
    project, params = log.project or spec.grid, flat_spec(spec)
    if "wandb" in log.loggers:
        loggers.append(_started("wandb", lambda: _wandb(project, run_dir, params)))
    if "mlflow" in log.loggers:
        uri = log.tracking_uri or default_tracking_uri(run_dir)
        loggers.append(_started("mlflow", lambda: _mlflow(uri, project, run_dir, params)))
    return loggers


def default_tracking_uri(run_dir: Path) -> str:
    """MLflow's store when the manifest names none: SQLite in the grid's folder."""
    return "sqlite:///" + (Path(run_dir).parent / MLFLOW_DB).resolve().as_posix()


def flat_spec(spec: RunSpec) -> dict[str, Any]:
    """The resolved spec as a tracker's params: one key per field, its sections joined by dots."""
    def walk(prefix: str, value: Any):
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                yield from walk(f"{prefix}{key}.", inner)
        else:
            yield prefix[:-1], value

    return dict(walk("", spec.model_dump(mode="json")))


def final_metrics(record: dict) -> dict[str, float]:
    """A finished cell's numbers as its trackers get them at its end, named as in its metrics.json."""
    named = {**record.get("metrics", {}), **{f"best/{k}": v for k, v in record.get("best", {}).items()},
             **{f"cost/{k}": v for k, v in record.get("cost", {}).items()},
             "wall_time_s": record.get("wall_time_s")}
    return {k: float(v) for k, v in named.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def finish(loggers: list, record: dict | None = None, step: int = 0) -> list[dict]:
    """A cell's end, on its loggers: given the finished cell's `record`, the trackers log its final numbers
    (at global step `step`); then every logger is finalized and every tracker's run closed, as failed
    without a record. Returns the trackers' failures, for the record's `tracker_errors`."""
    status = "success" if record is not None else "failed"
    final = final_metrics(record) if record is not None else {}
    for logger in loggers:
        if isinstance(logger, _Tracker):
            if final:
                logger.log_metrics(final, step)
            logger.end(status)
        else:
            logger.finalize(status)
    return [logger.failure for logger in loggers if getattr(logger, "failure", None)]


def _failure(tracker: str, during: str, error: Exception) -> dict:
    message = str(error).strip()[:1000]
    warnings.warn(f"{tracker} failed ({during}: {type(error).__name__}: {' '.join(message.split())[:300]}); "
                  f"the cell goes on without it", TrackerWarning, stacklevel=3)
    return {"logger": tracker, "during": during, "type": type(error).__name__, "message": message}


class _Tracker:
    """Put before W&B's or MLflow's Lightning logger: every call that reaches the tracker is guarded, and
    its first failure (`failure`) ends the tracker's part in the cell."""

    tracker = ""
    failure: dict | None = None

    def _guard(self, during: str, call: Callable, *args, after_failure: bool = False) -> None:
        if self.failure is not None and not after_failure:
            return
        try:
            call(*args)
        except Exception as e:  # noqa: BLE001 - a tracker's failure is reported, never the cell's
            self.failure = self.failure or _failure(self.tracker, during, e)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Lightning's call, with the LightningModule's arguments: left out, the params are the spec."""

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self._guard("log_metrics", super().log_metrics, metrics, step)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._guard("after_save_checkpoint", super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str) -> None:
        self._guard("finalize", super().finalize, status)

    def end(self, status: str) -> None:
        """Close the tracker's run ("success" or "failed")."""
        self.finalize(status)


class _MLflow(_Tracker, MLFlowLogger):
    tracker = "mlflow"

    def start(self, params: dict[str, Any]) -> None:
        """Create the run (or open the one given) and log its params."""
        from mlflow.entities import Param

        items = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a call
            self.experiment.log_batch(self.run_id, params=items[i:i + 100])
        self.experiment.update_run(self.run_id, status="RUNNING")  # a resumed run ended FAILED, or not at all


class _Wandb(_Tracker, WandbLogger):
    tracker = "wandb"

    def end(self, status: str) -> None:
        super().end(status)
        if self._experiment is not None:  # W&B's run stays open until finished, even after a failure
            exit_code = 0 if status == "success" else 1
            self._guard("finish", self._experiment.finish, exit_code, after_failure=True)


class _NotStarted(Logger):
    """In place of a tracker that could not start: it logs nothing and carries the failure."""

    def __init__(self, failure: dict):
        super().__init__()
        self.failure = failure

    @property
    def name(self) -> str:
        return self.failure["logger"]

    @property
    def version(self) -> None:
        return None

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def _started(tracker: str, start: Callable[[], Logger]) -> Logger:
    try:
        return start()
    except Exception as e:  # noqa: BLE001 - a tracker that cannot start is reported, the cell trains
        return _NotStarted(_failure(tracker, "start", e))


def _mlflow(uri: str, project: str, run_dir: Path, params: dict) -> _MLflow:
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    # a grid's workers may open a new store at once: one at a time creates its tables and the experiment
    lock = FileLock(f"{db}.lock") if db is not None else nullcontext()
    with lock, _mlflow_setup_quiet():
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(project)
        if experiment is None:
            artifacts = (db.parent / "mlartifacts").as_uri() if db is not None else None  # not the cwd
            experiment_id = client.create_experiment(project, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        resumed = _resumed_run(client, experiment_id, run_dir)
        logger = _MLflow(experiment_name=project, run_name=run_dir.name, tracking_uri=uri, run_id=resumed,
                         tags={"vitstudy.run_dir": str(Path(run_dir).resolve())})
        logger.start(params)
    return logger


def _resumed_run(client: Any, experiment_id: str, run_dir: Path) -> str | None:
    """A cell that resumes from its checkpoint goes on in its run: the latest of its name that did not
    finish (killed, it is still "RUNNING"). A cell that starts afresh (a first or a retried attempt) gets a
    new run."""
    if not any((run_dir / name).exists() for name in (CKPT_FILE, PREV_FILE)):
        return None
    runs = client.search_runs([experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.mlflow.runName = '{run_dir.name}' "
                                            "and attributes.status != 'FINISHED'")
    return runs[0].info.run_id if runs else None


@contextmanager
def _mlflow_setup_quiet():
    """Without the lines MLflow prints when it creates a store's tables, or SQLAlchemy's deprecation
    warning about MLflow's mappers: a new store is not news."""
    store_log = logging.getLogger("mlflow.store.db.utils")
    level = store_log.level
    store_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        store_log.setLevel(level)


_told_offline = False


def _wandb(project: str, run_dir: Path, params: dict) -> _Wandb:
    import wandb

    global _told_offline
    mode = wandb_mode()
    if mode == "offline" and not _told_offline:
        _told_offline = True
        print("W&B: no credentials configured, so runs are logged offline under each run folder's wandb/ "
              "(`wandb sync` uploads them; WANDB_MODE chooses)", file=sys.stderr)
    # create_new: a pack's members are runs at once, each of its own, in one process; W&B's lines per run
    # are few (quiet), or none when it is offline by our choice (the line above said where the runs go)
    settings = wandb.Settings(console="off", quiet=True, silent=mode == "offline")
    chosen = {"mode": mode} if mode else {}
    run = wandb.init(project=project, name=run_dir.name, id=run_dir.name, dir=run_dir, config=params,
                     resume="allow", reinit="create_new", settings=settings, **chosen)
    run.define_metric("trainer/global_step")  # as Lightning's WandbLogger does for a run it starts
    run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    return _Wandb(experiment=run, project=project, name=run_dir.name, id=run_dir.name, save_dir=run_dir)


def wandb_mode() -> str | None:
    """"offline" when WANDB_MODE is unset and W&B has no credentials (WANDB_API_KEY, an identity token, a
    ~/.netrc entry from `wandb login`) for its host; else None: W&B decides."""
    if any(os.environ.get(v) for v in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE")):
        return None
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc(os.environ.get("NETRC")).authenticators(host or ""):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"
