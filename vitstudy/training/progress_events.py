"""A cell's progress while it trains, for the grid's live display (vitstudy.grid.live): its epoch of the
total, batch and global step, latest training loss and validation top-1, and its stage ("train", "test",
or "diverged": a pack's member that diverged, frozen until its pack ends). A `Reporter` sends snapshots
`(run_id, fields)` to a callable the executor gives (its display, in this process; a multiprocessing
queue, in a spawned worker) every `interval` seconds per cell and when an epoch begins (so that each
epoch shows, however short; but at most 20 a second), so the training loop pays a clock read per step
and, per snapshot, a device sync (the losses as floats). Every snapshot is whole: one not sent loses
nothing the next does not carry.

Both ways a cell trains report: `ProgressCallback` in a Lightning Trainer (vitstudy.training.run) and
the pack's own loop (vitstudy.training.pack), which reports all its members at once.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
from lightning.pytorch.callbacks import Callback

from vitstudy.training.callbacks import SELECT

Send = Callable[[str, dict], None]  # (run id, snapshot): the display's, or a queue's put
INTERVAL_S = 0.25  # four snapshots a second per cell while it trains
EPOCH_S = 0.05  # an epoch's first snapshot: at once, unless the previous one left less than this ago


class Reporter:
    """Progress of one cell, or of a pack's members (one run id each); with `send` None it does nothing."""

    def __init__(self, run_ids: Sequence[str], send: Send | None, epochs: int, interval: float = INTERVAL_S):
        self.run_ids, self.send, self.interval = list(run_ids), send, interval
        self.fields = {"epoch": 0, "epochs": epochs, "batch": 0, "batches": 0, "step": 0, "stage": "train"}
        self.losses: torch.Tensor | None = None  # the latest step's, left on the device until sent
        self.alive: torch.Tensor | None = None  # a pack's members still training
        self.val_acc1: list[float | None] = [None] * len(self.run_ids)
        self._last = -float("inf")

    def batch(self, epoch: int, batch: int, batches: int, step: int, losses: torch.Tensor,
              alive: torch.Tensor | None = None) -> None:
        """After a training step: `epoch` and `batch` count from 0, `step` is the global step done;
        `losses` is the step's loss (a scalar, or one per member); `alive`, a pack's members that did not
        diverge."""
        if self.send is None:
            return
        wait = EPOCH_S if epoch + 1 != self.fields["epoch"] else self.interval
        self.fields.update(epoch=epoch + 1, batch=batch + 1, batches=batches, step=step, stage="train")
        self.losses, self.alive = losses, alive
        if time.monotonic() - self._last >= wait:
            self.flush()

    def validated(self, acc1: float | Sequence[float]) -> None:
        """After validation: its top-1 (%), one per member. Sent with the next snapshot."""
        self.val_acc1 = [float(a) for a in (acc1 if isinstance(acc1, Sequence) else [acc1])]

    def testing(self) -> None:
        """Training is over: the cell is being tested (sent at once: nothing else comes until it ends)."""
        self.fields["stage"] = "test"
        self.flush()

    def flush(self) -> None:
        if self.send is None:
            return
        self._last = time.monotonic()
        n = len(self.run_ids)
        losses = [None] * n if self.losses is None else torch.atleast_1d(self.losses.float()).tolist()
        alive = [True] * n if self.alive is None else self.alive.tolist()
        for run_id, loss, acc1, going in zip(self.run_ids, losses, self.val_acc1, alive, strict=True):
            stage = {"stage": "diverged"} if not going else {}
            self.send(run_id, {**self.fields, "loss": loss, "val_acc1": acc1, **stage})


class ProgressCallback(Callback):
    """A Trainer's progress to a Reporter (rank 0 only: under DDP every rank trains the same cell)."""

    def __init__(self, run_id: str, send: Send):
        self.run_id, self.send = run_id, send
        self.reporter = Reporter([run_id], None, 0)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.reporter = Reporter([self.run_id], self.send if trainer.is_global_zero else None,
                                 trainer.max_epochs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.reporter.batch(trainer.current_epoch, batch_idx, trainer.num_training_batches,
                            trainer.global_step, outputs["loss"].detach())

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and SELECT in trainer.callback_metrics:
            self.reporter.validated(float(trainer.callback_metrics[SELECT]))

    def on_test_start(self, trainer, pl_module) -> None:
        self.reporter.testing()
