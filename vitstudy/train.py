"""Train one cell: seed → DataModule + LightningModule → Trainer.fit/test → files on disk.

Writes `<run_dir>/spec.yaml`, `metrics.json` (status, spec, final metrics, cost), TensorBoard events
under `tb/` and `last.ckpt`, every file atomically. A run whose folder holds a `last.ckpt` but no
finished `metrics.json` resumes from that checkpoint. `run_cell` never raises for a failing cell: it
records the failure (category, message, traceback in `traceback.txt`) so the rest of a grid goes on.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vitstudy import files
from vitstudy.data import build_datamodule
from vitstudy.profile import model_cost
from vitstudy.spec import RunSpec
from vitstudy.system import DivergedError, ImageClassifier

SCHEMA_VERSION = 1
METRICS_FILE, SPEC_FILE, CKPT_FILE, TRACEBACK_FILE = "metrics.json", "spec.yaml", "last.ckpt", "traceback.txt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file and a rename."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        files.atomic_write(path, lambda f: torch.save(checkpoint, f))


def read_status(run_dir: Path) -> str:
    record = files.read_json(Path(run_dir) / METRICS_FILE)
    return record.get("status", "pending") if record else "pending"


def run_cell(spec: RunSpec, run_dir: Path) -> dict:
    """Train and test one cell, recording success or failure in its metrics.json."""
    run_dir = Path(run_dir)
    start = time.time()
    try:
        return train_cell(spec, run_dir)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is recorded, the grid goes on
        category = ("diverged" if isinstance(e, DivergedError)
                    else "oom" if isinstance(e, torch.OutOfMemoryError) else "failed")
        files.write_text(run_dir / TRACEBACK_FILE, traceback.format_exc())
        record = _record(spec, run_dir, status=category, wall=time.time() - start,
                         error={"type": type(e).__name__, "message": str(e)[:2000]})
        files.write_json(run_dir / METRICS_FILE, record)
        return record


def train_cell(spec: RunSpec, run_dir: Path) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    files.write_text(run_dir / SPEC_FILE, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    start = time.time()
    files.write_json(run_dir / METRICS_FILE, _record(spec, run_dir, status="running", wall=0.0))
    L.seed_everything(spec.seed, workers=True, verbose=False)

    t = spec.train
    dm = build_datamodule(spec.data.dataset, spec.model.img_size, spec.data.batch_size,
                          spec.data.train_subset, spec.data.shift)
    system = ImageClassifier(model=spec.model.model_dump(mode="json"), lr=t.lr, min_lr=t.min_lr,
                             weight_decay=t.weight_decay, warmup_epochs=t.warmup_epochs,
                             label_smoothing=t.label_smoothing, betas=t.betas)
    progress = spec.log.progress_bar if spec.log.progress_bar is not None else sys.stdout.isatty()
    trainer = L.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        deterministic=t.deterministic,
        gradient_clip_val=t.grad_clip,
        logger=TensorBoardLogger(save_dir=run_dir, name="tb", version="", default_hp_metric=False),
        callbacks=[ModelCheckpoint(dirpath=run_dir, save_top_k=0, save_last=True)],
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=spec.log.every_n_steps,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=run_dir,
    )
    ckpt = run_dir / CKPT_FILE
    with warnings.catch_warnings():
        # tensors are sliced in the main process: DataLoader workers would only add overhead
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
        trainer.fit(system, datamodule=dm, ckpt_path=ckpt if ckpt.exists() else None, weights_only=True)
        metrics = _scalars(trainer.callback_metrics)
        trainer.test(system, datamodule=dm, verbose=False)
    metrics.update(_scalars(trainer.callback_metrics))
    paths = sorted(set(system.model.attention_paths()))
    record = _record(spec, run_dir, status="done", wall=time.time() - start, metrics=metrics,
                     attention_path="+".join(paths) if paths else "n/a", device=str(system.device))
    files.write_json(run_dir / METRICS_FILE, record)
    return record


def _scalars(metrics: dict) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        key = key.removesuffix("_epoch")
        if not key.endswith("_step"):
            out[key] = float(value)
    return dict(sorted(out.items()))


def _record(spec: RunSpec, run_dir: Path, status: str, wall: float, **extra) -> dict:
    import lightning
    import timm

    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_dir.name,
        "status": status,
        "spec": spec.model_dump(mode="json"),
        "metrics": extra.pop("metrics", {}),
        "cost": model_cost(spec.model).as_dict(),
        "wall_time_s": round(wall, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "env": {"torch": torch.__version__, "lightning": lightning.__version__, "timm": timm.__version__,
                "python": platform.python_version(), "host": platform.node(), "pid": os.getpid()},
        **extra,
    }
