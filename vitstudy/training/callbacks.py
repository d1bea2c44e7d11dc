"""The Lightning callbacks every cell's Trainer carries (`cell_callbacks`): `last.ckpt` after every epoch,
`best.ckpt` at the best validation epoch, the run monitor, and the RNG state in the checkpoints.

`RunMonitor` measures what a run reports besides its final metrics, cheaply, while it trains: the
per-epoch validation history and its best epoch, training images/s and peak memory. Training throughput
is timed from the first to the last training batch of each epoch (two device synchronisations per epoch,
none per batch), leaving out the first epoch this process runs (warm-up) when there is more than one; so
it includes data loading and the optimizer, but not validation.

`RngState` makes resumption from `last.ckpt` exact. Lightning's checkpoint restores the model, optimiser,
schedulers, loops and callbacks, but not the random number generators: a resumed run would shuffle its
batches and draw its augmentations from the stream of epoch 0 rather than from where the interrupted run
stopped, and end with different weights. `RngState` stores the CPU (and CUDA), Python and NumPy generator
states in the checkpoint, as tensors and plain data so that `torch.load(weights_only=True)` accepts them;
with deterministic settings on a CPU, an interrupted and resumed cell then ends with the same metrics as an
uninterrupted one (tests/grid/test_engine.py proves it by killing a cell with SIGKILL).
"""

from __future__ import annotations

import random
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from vitstudy.runfolder import BEST_FILE, CKPT_FILE
from vitstudy.training.throughput import sync

VAL_KEYS = ("val/acc1", "val/acc5", "val/loss")
SELECT = "val/acc1"  # the best epoch is the one with the highest validation top-1 (the first on ties)


def cell_callbacks(run_dir: Path, monitor: RunMonitor) -> list[Callback]:
    """What every cell's Trainer carries: last.ckpt after every epoch (save_last=True alone writes it
    only when training ends), the run monitor, best.ckpt, and the RNG state in the checkpoints."""
    return [ModelCheckpoint(dirpath=run_dir, filename=CKPT_FILE.removesuffix(".ckpt"), save_top_k=1,
                            enable_version_counter=False),
            monitor, best_checkpoint(run_dir), RngState()]


def best_checkpoint(run_dir: Path) -> ModelCheckpoint:
    """Keeps the weights of the best validation epoch as best.ckpt (for the test metrics at that epoch)."""
    return ModelCheckpoint(dirpath=run_dir, filename=BEST_FILE.removesuffix(".ckpt"), monitor=SELECT,
                           mode="max", save_top_k=1, save_last=False, enable_version_counter=False)


class RunMonitor(Callback):
    """Validation history, training throughput and peak memory of one fit (resumable: its state is
    saved in the checkpoint)."""

    def __init__(self):
        self.history: list[dict] = []  # {"epoch": e, "val/acc1": ..., "val/acc5": ..., "val/loss": ...}
        self.train_loss: float | None = None  # the latest epoch's mean training loss, as the system logs it
        self.train_images, self.train_seconds = 0, 0.0
        self._epochs_seen, self._epoch_images, self._t0 = 0, 0, 0.0

    # -- checkpointed state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"history": self.history, "train_loss": self.train_loss, "train_images": self.train_images,
                "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))
        loss = state.get("train_loss")
        self.train_loss = None if loss is None else float(loss)
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

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # before the system's own hook logs the epoch's loss (and resets its sums), and before the
        # checkpoints are written (Lightning calls checkpoint callbacks last): a checkpoint holds it
        steps = getattr(pl_module, "loss_steps", None)
        if steps is not None and steps.item():
            self.train_loss = float(pl_module.loss_sum / steps)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        entry = {"epoch": trainer.current_epoch}
        entry.update({k: float(m[k]) for k in VAL_KEYS if k in m})
        self.history = [h for h in self.history if h["epoch"] != entry["epoch"]] + [entry]

    # -- results -----------------------------------------------------------------------------------
    def final_metrics(self) -> dict[str, float]:
        """The latest epoch's validation metrics and training loss: what a cell resumed from its final
        checkpoint (it trains no epoch, so Lightning has logged nothing) records as its final metrics."""
        last = {k: v for k, v in self.history[-1].items() if k != "epoch"} if self.history else {}
        return {**last, **({"train/loss": self.train_loss} if self.train_loss is not None else {})}

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


class RngState(Callback):
    """Saves the global torch (CPU, CUDA) and Python RNG states with every checkpoint; restores them
    on resume."""

    def state_dict(self) -> dict:
        version, state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()  # timm's Mixup draws from NumPy
        out = {"torch": torch.get_rng_state(), "python": [version, list(state), gauss],
               "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda"] = torch.cuda.get_rng_state_all()
        return out

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "numpy" in state:
            kind, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_position(ckpt: Path) -> dict | None:
    """{"epoch", "global_step"} stored in a checkpoint (the point a resumed run starts from), or None
    when there is no checkpoint. Loaded with weights_only=True and memory-mapped."""
    ckpt = Path(ckpt)
    if not ckpt.exists():
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    return {"epoch": int(state["epoch"]), "global_step": int(state["global_step"])}
