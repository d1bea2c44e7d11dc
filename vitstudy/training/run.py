"""Train one cell: seed → DataModule + LightningModule → Trainer.fit/test → files on disk.

Writes `<run_dir>/spec.yaml`, `metrics.json` (status, spec, final metrics, best epoch, cost), TensorBoard
events under `tb/` and `last.ckpt`, every file atomically. After testing, the best-validation checkpoint is
tested too (the `best` part of the record) and inference is timed on one test batch. A run whose folder
holds a `last.ckpt` but no finished `metrics.json` resumes from that checkpoint; one whose metrics.json or
checkpoints cannot be read (cut short by a copy or a crash) is recovered first (vitstudy.runfolder.recover:
the record rebuilt, or the cell trained from scratch, and said in the record's `recovered`). `run_cell`
never raises for a failing cell: it records the failure (category, message, traceback in `traceback.txt`)
so the rest of a grid goes on. A results folder that cannot be written (full, read-only) is not the cell's
failure: `run_cell` raises a StorageError and leaves the record as it was (a finished one is never
replaced by a failed one: runfolder.write_record), so the cell resumes once the folder is writable. The
trackers the manifest names (W&B, MLflow: vitstudy.training.loggers) get the record's final numbers at the
end; one that fails is noted in the record (`tracker_errors`), and the cell goes on without it.

One process trains many cells (a grid, in order or per worker), so what does not change between them is
kept, never what a result depends on: the model's cost per model spec (vitstudy.models.cost.cached_cost),
a dataset's splits (vitstudy.data.base.TensorDataModule.load_key), the git state (training.provenance).
What is left of a cell's fixed cost is Lightning's (fit's setup and sanity check, the test passes), the
inference timing and TensorBoard; and per epoch, up to two checkpoints of ~25 ms each on a CPU (torch.save
of ~180 small tensors: weights, AdamW state).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vitstudy import runfolder as files
from vitstudy.config.spec import RunSpec
from vitstudy.data.base import datamodule_for
from vitstudy.models.cost import cached_cost
from vitstudy.runfolder import BEST_FILE, CKPT_FILE, SCHEMA_VERSION, SPEC_FILE, TRACEBACK_FILE
from vitstudy.training.callbacks import RunMonitor, cell_callbacks, checkpoint_position
from vitstudy.training.loggers import build_loggers, finish
from vitstudy.training.provenance import DDP_CELL_ENV, environment
from vitstudy.training.quiet import expected_warnings_ignored, quiet_lightning
from vitstudy.training.system import DivergedError, system_for
from vitstudy.training.throughput import CELL_INFER_TIMING, inference_throughput
from vitstudy.training.tune import apply_tuning


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file and a rename."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        files.atomic_write(path, lambda f: torch.save(checkpoint, f))


def run_cell(spec: RunSpec, run_dir: Path, callbacks: tuple = (), progress: bool | None = None,
             pack: dict | None = None) -> dict:
    """Train and test one cell, recording success or failure in its metrics.json. `callbacks`: extra
    Lightning callbacks; `progress`: Lightning's bar (None: the spec's log.progress_bar); `pack`: what the
    executor's packing decided (vitstudy.grid.packing), for the record."""
    run_dir = Path(run_dir)
    start = time.time()
    packing = {"pack": pack} if pack else {}
    try:
        return train_cell(spec, run_dir, callbacks, progress, packing)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is recorded, the grid goes on
        if (fault := files.storage_error(e, run_dir)) is not None:
            raise fault from e  # the folder's fault, not the cell's: no record says it failed
        category = ("diverged" if isinstance(e, DivergedError)
                    else "oom" if isinstance(e, torch.OutOfMemoryError) else "failed")
        running = files.read_record(run_dir)  # the attempt this failure ends
        record = _record(spec, run_dir, status=category, wall=time.time() - start,
                         error={"type": type(e).__name__, "message": str(e)[:2000]},
                         attempt=running.get("attempt", 1), resumed_from=running.get("resumed_from"),
                         **_recovered(running.get("recovered")), **packing)
        if _lead():  # under DDP, rank 0 records the cell's fate
            trace = traceback.format_exc()
            try:
                files.write_text(run_dir / TRACEBACK_FILE, trace)
                files.write_record(run_dir, record)
            except OSError as write_error:
                if (fault := files.storage_error(write_error, run_dir)) is not None:
                    raise fault from write_error  # the record stays as it was: the cell runs again
                raise
        return record


def _recovered(notes: list[str] | None) -> dict:
    """The record's `recovered` part: what was found unreadable before the attempt, and done about it."""
    return {"recovered": notes} if notes else {}


def _lead() -> bool:
    """Whether this process is rank 0 (or the only one): the one that writes a cell's files."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0


def train_cell(spec: RunSpec, run_dir: Path, callbacks: tuple = (), progress: bool | None = None,
               packing: dict | None = None) -> dict:
    spec, tuning = apply_tuning(spec, run_dir)  # a tuned grid's final cell: its best candidate's values
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    ckpt = run_dir / CKPT_FILE
    # what cannot be read is set aside or cleared first (rank 0 does it, before fit starts the other ranks)
    recovered = _recovered(files.recover(run_dir) if _lead() else None)
    previous = files.read_record(run_dir)
    attempt = {"attempt": previous.get("attempt", 0) + 1, "resumed_from": checkpoint_position(ckpt),
               **recovered}
    if _lead():  # DDP ranks > 0 train the same cell and leave its files to rank 0
        files.write_text(run_dir / SPEC_FILE, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        running = _record(spec, run_dir, status="running", wall=0.0, **attempt, **tuning)
        files.write_record(run_dir, running)
    L.seed_everything(spec.seed, workers=True, verbose=False)

    t = spec.train
    dm = datamodule_for(spec)
    system = system_for(spec)
    if t.init_from and not ckpt.exists():  # phase 2 (vitstudy.config.phases); resumed, it loads its own ckpt
        from vitstudy.training.phase_init import init_from_phase

        init_from_phase(system.model, spec, run_dir)
    if progress is None:
        progress = spec.log.progress_bar if spec.log.progress_bar is not None else sys.stdout.isatty()
    monitor = RunMonitor()
    with expected_warnings_ignored():
        trainer = build_trainer(spec, run_dir, progress, callbacks=[*cell_callbacks(run_dir, monitor),
                                                                    *callbacks])
        try:
            # a multi-process strategy re-runs this command for ranks > 0: they train this cell, not the grid
            os.environ[DDP_CELL_ENV] = str(run_dir)
            try:
                trainer.fit(system, datamodule=dm, ckpt_path=ckpt if ckpt.exists() else None,
                            weights_only=True)
            finally:
                os.environ.pop(DDP_CELL_ENV, None)
            # the monitor's numbers stand in for an epoch this attempt did not train (resumed at the end)
            metrics = dict(sorted({**monitor.final_metrics(), **_scalars(trainer.callback_metrics)}.items()))
            trainer.test(system, datamodule=dm, verbose=False)
            metrics.update(_scalars(trainer.callback_metrics))
            paths = sorted(set(system.model.attention_paths()))  # before `_measured` runs other forwards
            measured = _measured(trainer, system, dm, monitor, run_dir, metrics)
        except BaseException:
            finish(trainer.loggers)  # the trackers' runs end with the attempt, as failed
            raise
    record = _record(spec, run_dir, status="done", wall=time.time() - start, metrics=metrics,
                     attention_path="+".join(paths) if paths else "n/a", trainer=trainer, **measured,
                     pipeline=dm.pipeline, split_sizes=dm.split_sizes(), peak_lr=system.peak_lr(), **attempt,
                     **tuning, **(packing or {}))
    # the trackers get the record's final numbers and close; a tracker's failure is noted, not the cell's
    tracker_errors = finish(trainer.loggers, record, trainer.global_step)
    if tracker_errors:
        record["tracker_errors"] = tracker_errors
    if trainer.is_global_zero:  # under DDP every rank gets here; one writes the cell's result
        files.write_record(run_dir, record)
    return record


def follow_ddp_cell() -> int:
    """In a process Lightning's DDP launcher started (LOCAL_RANK > 0: our command line, re-run), train
    the cell rank 0 is training, as one more rank, and return the exit status."""
    run_dir = os.environ[DDP_CELL_ENV]
    quiet_lightning()
    spec = RunSpec(**yaml.safe_load((Path(run_dir) / SPEC_FILE).read_text()))
    return 0 if run_cell(spec, Path(run_dir), progress=False)["status"] == "done" else 1


def build_trainer(spec: RunSpec, run_dir: Path, progress: bool, callbacks: list, **overrides) -> L.Trainer:
    """The Trainer of a RunSpec: accelerator, devices, strategy, nodes and precision from the manifest.
    The DataModules shard and shuffle their own data (the same way on both pipelines), so Lightning's
    distributed sampler is off."""
    t = spec.train
    kwargs = dict(
        max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        num_nodes=t.num_nodes, precision=t.precision, deterministic=t.deterministic,
        logger=build_loggers(spec, run_dir), callbacks=callbacks,
        plugins=[AtomicCheckpointIO()], log_every_n_steps=spec.log.every_n_steps,
        enable_progress_bar=progress, enable_model_summary=False, default_root_dir=run_dir,
        use_distributed_sampler=False)
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def _measured(trainer: L.Trainer, system: L.LightningModule, datamodule, monitor: RunMonitor,
              run_dir: Path, final: dict[str, float]) -> dict:
    """After fit and test: the `best`, throughput and memory parts of the record. Tests the best
    checkpoint (without logging it) unless the best epoch is the last, and times inference on one
    test batch."""
    # the whole run's training throughput, read before testing best.ckpt restores the monitor to its epoch
    train = monitor.train_images / monitor.train_seconds if monitor.train_seconds else None
    best = dict(monitor.best_epoch())
    last_epoch = monitor.history[-1]["epoch"] if monitor.history else None
    test_keys = [k for k in final if k.startswith("test/")]
    if best and best["epoch"] != last_epoch and (run_dir / BEST_FILE).exists():
        loggers, trainer.loggers = trainer.loggers, []
        try:
            trainer.test(system, datamodule=datamodule, ckpt_path=run_dir / BEST_FILE, verbose=False,
                         weights_only=True)
        finally:
            trainer.loggers = loggers
        best.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    elif best:
        best.update({k: final[k] for k in test_keys})

    images = next(iter(datamodule.test_dataloader()))[0].to(system.device)
    infer = inference_throughput(system.model, images, autocast=trainer.precision_plugin.forward_context,
                                 **CELL_INFER_TIMING)
    peak, kind = monitor.peak_memory(system.device)
    return {"best": best,
            "cost": {"train_img_s": train, "infer_img_s": infer, "infer_batch_size": len(images),
                     "peak_mem_mib": round(peak, 1), "peak_mem_kind": kind}}


def _scalars(metrics: dict) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        key = key.removesuffix("_epoch")
        if not key.endswith("_step"):
            out[key] = float(value)
    return dict(sorted(out.items()))


def _model_cost(spec: RunSpec) -> dict:
    try:
        return cached_cost(spec.model).as_dict()  # once per model spec and process
    except Exception:  # noqa: BLE001 - a model that cannot be built is the run's failure, recorded as such
        return {}


def _record(spec: RunSpec, run_dir: Path, status: str, wall: float, trainer: L.Trainer | None = None,
            **extra) -> dict:
    """One metrics.json record, schema 2:

    schema         2
    run_id, status "running" | "done" | "failed" | "diverged" | "oom"
    error          failures only: {"category": the status, "type": exception class, "message"}
    spec           the fully resolved RunSpec
    metrics        final (last-epoch) scalars: "test/acc1", "test/acc5", "test/loss", "val/...", "train/loss"
    best           the epoch of highest val/acc1: {"epoch", "val/acc1", "val/acc5", "val/loss", "test/acc1",
                   "test/acc5", "test/loss"} (test metrics of that epoch's checkpoint); {} until done
    cost           {"params", "macs", "train_img_s", "infer_img_s", "infer_batch_size", "peak_mem_mib",
                   "peak_mem_kind"}; the measured ones only when done
    wall_time_s, started_at, finished_at
    env            library versions, device, device_name, device_count, precision, attention_path,
                   host, commit, dirty (see vitstudy.training.provenance)
    attention_path the attention path taken (also in env; kept here for schema-1 readers)
    attempt        how many times this cell has been started (1 for a run never interrupted)
    resumed_from   {epoch, global_step} of the checkpoint this attempt resumed from, or null
    pipeline       done only: how training batches were made: {"mode": "device" | "workers", "reason",
                   ...} (vitstudy.data.base)
    peak_lr        done only: the lr after scaling by the global batch (train.lr_base_batch)
    split_sizes    done only: images in each split as this run used them (after data.train_subset):
                   {"train", "val", "test"}
    tuned          a tuned grid's final cell only: the chosen values, every candidate's score, `edge`
                   (vitstudy.training.tune)
    tracker_errors done only, and only when a tracker (W&B, MLflow) failed: [{"logger", "during", "type",
                   "message"}]; the cell went on without it (vitstudy.training.loggers)
    recovered      only when the attempt found files it could not read: one note for each and what was done
                   (vitstudy.runfolder.recover)
    """
    if trainer is not None:
        device, count = trainer.strategy.root_device.type, trainer.num_devices
        precision = str(trainer.precision)
    else:  # before or without a trainer: what the spec asked for
        accel = spec.train.accelerator
        device = "cuda" if accel in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"
        count = spec.train.devices if isinstance(spec.train.devices, int) else 1
        precision = spec.train.precision
    attention_path = extra.get("attention_path")
    error = extra.pop("error", None)
    now = datetime.now(timezone.utc)
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_dir.name,
        "status": status,
        **({"error": {"category": status, **error}} if error else {}),
        "spec": spec.model_dump(mode="json"),
        "metrics": extra.pop("metrics", {}),
        "best": extra.pop("best", {}),
        "cost": {**_model_cost(spec), **extra.pop("cost", {})},
        "wall_time_s": round(wall, 3),
        "started_at": datetime.fromtimestamp(now.timestamp() - wall, timezone.utc).isoformat("T", "seconds"),
        "finished_at": now.isoformat(timespec="seconds"),
        "env": {**environment(device, count, precision, attention_path), "pid": os.getpid()},
        **extra,
    }
