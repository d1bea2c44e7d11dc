"""What one run measures besides its final metrics, cheaply, while it trains: the per-epoch validation
history and its best epoch, training images/s, peak memory; after testing, the test metrics of the
best-validation checkpoint and a short timed inference pass. Also the run's Lightning loggers.

Training throughput is timed from the first to the last training batch of each epoch (two device
synchronisations per epoch, none per batch), leaving out the first epoch this process runs (warm-up)
when there is more than one; so it includes data loading and the optimizer, but not validation.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from vitstudy.config.spec import RunSpec
from vitstudy.runfolder import BEST_FILE, TB_DIR
from vitstudy.training.throughput import inference_throughput, sync

VAL_KEYS = ("val/acc1", "val/acc5", "val/loss")
SELECT = "val/acc1"  # the best epoch is the one with the highest validation top-1 (the first on ties)


def build_loggers(spec: RunSpec, run_dir: Path) -> list:
    """TensorBoard under tb/ (always: the report reads it), plus the extra loggers `spec.log` names."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    log = spec.log
    loggers = [TensorBoardLogger(save_dir=run_dir, name=TB_DIR, version="", default_hp_metric=False)]
    if "csv" in log.loggers:
        loggers.append(CSVLogger(save_dir=run_dir, name="csv", version=""))
    project = log.project or spec.grid
    if "wandb" in log.loggers:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=project, name=run_dir.name, id=run_dir.name, save_dir=run_dir,
                                   config=spec.model_dump(mode="json")))
    if "mlflow" in log.loggers:
        from lightning.pytorch.loggers import MLFlowLogger

        uri = log.tracking_uri or (run_dir.parent / "mlruns").resolve().as_uri()
        loggers.append(MLFlowLogger(experiment_name=project, run_name=run_dir.name, tracking_uri=uri))
    return loggers


class RunMonitor(Callback):
    """Validation history, training throughput and peak memory of one fit (resumable: its state is
    saved in the checkpoint)."""

    def __init__(self):
        self.history: list[dict] = []  # {"epoch": e, "val/acc1": ..., "val/acc5": ..., "val/loss": ...}
        self.train_images, self.train_seconds = 0, 0.0
        self._epochs_seen, self._epoch_images, self._t0 = 0, 0, 0.0

    # -- checkpointed state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"history": self.history, "train_images": self.train_images,
                "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))
        self.train_images = int(state.get("train_images", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))

    # -- hooks -------------------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            sync(pl_module.device)
            self._t0, self._epoch_images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._epoch_images += len(batch[0])
        if batch_idx == trainer.num_training_batches - 1:
            sync(pl_module.device)
            seconds = time.perf_counter() - self._t0
            self._epochs_seen += 1
            warmup = self._epochs_seen == 1 and trainer.max_epochs - trainer.current_epoch > 1
            if not warmup:
                self.train_images += self._epoch_images
                self.train_seconds += seconds

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        entry = {"epoch": trainer.current_epoch}
        entry.update({k: float(m[k]) for k in VAL_KEYS if k in m})
        self.history = [h for h in self.history if h["epoch"] != entry["epoch"]] + [entry]

    # -- results -----------------------------------------------------------------------------------
    def best_epoch(self) -> dict:
        scored = [h for h in self.history if SELECT in h]
        return max(scored, key=lambda h: (h[SELECT], -h["epoch"])) if scored else {}

    def peak_memory(self, device: torch.device) -> tuple[float, str]:
        """(MiB, what was measured): CUDA's peak allocated memory, or on CPU the process's peak
        resident set size (which covers everything this process ran before, too)."""
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return rss / (2**20 if sys.platform == "darwin" else 2**10), "process_max_rss"


def best_checkpoint(run_dir: Path) -> ModelCheckpoint:
    """Keeps the weights of the best validation epoch as best.ckpt (for the test metrics at that epoch)."""
    return ModelCheckpoint(dirpath=run_dir, filename=BEST_FILE.removesuffix(".ckpt"), monitor=SELECT,
                           mode="max", save_top_k=1, save_last=False, enable_version_counter=False)


def collect(trainer: L.Trainer, system: L.LightningModule, datamodule, monitor: RunMonitor,
            run_dir: Path, final: dict[str, float]) -> dict:
    """After fit and test: the `best`, throughput and memory parts of the record. Tests the best
    checkpoint (without logging it) unless the best epoch is the last, and times inference on one
    test batch."""
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
                                 min_time=0.2, max_iters=20)
    peak, kind = monitor.peak_memory(system.device)
    train = monitor.train_images / monitor.train_seconds if monitor.train_seconds else None
    return {"best": best,
            "cost": {"train_img_s": train, "infer_img_s": infer, "infer_batch_size": len(images),
                     "peak_mem_mib": round(peak, 1), "peak_mem_kind": kind}}
