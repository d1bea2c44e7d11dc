"""`vitstudy bench loop`: the cost of the training loop, as a ratio measured in one process.

`bench_loop`: vitstudy's Lightning training (the ImageClassifier, DataModule and Trainer that
`run-grid` builds) against a bare PyTorch loop doing the same work: same model and initial weights,
same device-resident batches and batch augmentation, same fused AdamW and per-step schedule, the same
number of steps, and one validation pass per epoch (the two end with the same weights: tested). Two
Lightning configurations: the loop alone (no logger, no checkpoints) and the loop as `run-grid` runs a
cell (TensorBoard, a checkpoint every epoch, the run monitor). Runs alternate in rounds. Every epoch is
timed; an epoch's time is its fastest over all rounds (interference from other jobs only ever adds
time), a fit's fixed cost (setup, sanity check, teardown) the median over rounds, and the overhead is
Lightning's epochs × epoch time + fixed cost over the bare loop's, minus 1. Every fit's epoch times and
total are kept in the result (`fits`), so the figures can be traced to the measurements.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from vitstudy.training.quiet import ignore_expected_warnings, quiet_lightning
from vitstudy.training.step import cross_entropy


@dataclass
class Fit:
    """One timed fit: seconds of every epoch (training + validation), the whole call, the final weights,
    and the optimizer steps it took."""

    epochs: list[float]
    total: float
    state: dict
    steps: int


def _bare_fit(spec, epochs: int) -> Fit:
    """`epochs` epochs of training + validation in a plain loop, with the pieces Lightning uses."""
    from vitstudy.data.base import datamodule_for
    from vitstudy.training.system import system_for

    torch.manual_seed(spec.seed)
    dm, system = datamodule_for(spec), system_for(spec)
    dm.prepare_data()
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    model, augment, smoothing = system.model, dm.augment, spec.train.label_smoothing
    opt, sched = system.optimizer_and_schedule(len(train) * epochs, epochs)
    clock, start = [], time.perf_counter()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        train.epoch = lambda e=epoch: e
        for i, (x, y) in enumerate(train):
            x = augment(x, dm.augment_seed(epoch, i)) if augment else x  # the draws the cell makes
            loss = cross_entropy(model(x), y, smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()  # what the LightningModule computes too: loss, top-1 and top-5 counts
        loss = torch.zeros(())
        top1, top5 = torch.zeros((), dtype=torch.long), torch.zeros((), dtype=torch.long)
        with torch.no_grad():
            for x, y in val:
                logits = model(x)
                loss += F.cross_entropy(logits, y, reduction="sum")
                hits = logits.topk(5, dim=-1).indices == y[:, None]
                top1 += hits[:, 0].sum()
                top5 += hits.any(-1).sum()
        (loss, top1, top5) = (loss.item(), top1.item(), top5.item())
        clock.append(time.perf_counter() - t0)
    return Fit(clock, time.perf_counter() - start, model.state_dict(), len(train) * epochs)


class _EpochClock(Callback):
    """Seconds of each training epoch, its validation included (Lightning validates inside the epoch)."""

    def __init__(self):
        self.epochs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append(time.perf_counter() - self._t0)


def _lightning_fit(spec, epochs: int, as_run_grid: bool) -> Fit:
    """The same training through vitstudy's LightningModule, DataModule and Trainer."""
    from vitstudy.data.base import datamodule_for
    from vitstudy.training.callbacks import RunMonitor, cell_callbacks
    from vitstudy.training.run import build_trainer
    from vitstudy.training.system import system_for

    torch.manual_seed(spec.seed)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": epochs})})
    dm, system, clock = datamodule_for(spec), system_for(spec), _EpochClock()
    with tempfile.TemporaryDirectory() as tmp:
        if as_run_grid:  # the callbacks, loggers and files of a run-grid cell
            trainer = build_trainer(spec, Path(tmp), progress=False,
                                    callbacks=[*cell_callbacks(Path(tmp), RunMonitor()), clock])
        else:
            trainer = build_trainer(spec, Path(tmp), progress=False, callbacks=[clock], logger=False,
                                    enable_checkpointing=False)
        start = time.perf_counter()
        trainer.fit(system, datamodule=dm)
        return Fit(clock.epochs, time.perf_counter() - start, system.model.state_dict(), trainer.global_step)


def bench_loop(manifest: str | Path = "experiments.yaml", epochs: int | None = None, rounds: int = 5) -> dict:
    """Lightning's overhead over a bare loop for the first cell of `manifest` (see the module doc)."""
    from vitstudy.config import manifest as manifests
    from vitstudy.models.cost import model_cost

    quiet_lightning()
    ignore_expected_warnings()
    cell = manifests.load(manifest, cost=model_cost).cells[0]
    spec, epochs = cell.spec, epochs or cell.spec.train.epochs  # default: the cell's own length
    runs = {"bare": lambda: _bare_fit(spec, epochs),
            "lightning_loop": lambda: _lightning_fit(spec, epochs, as_run_grid=False),
            "lightning_run_grid": lambda: _lightning_fit(spec, epochs, as_run_grid=True)}
    _bare_fit(spec, 1)  # warm-up: imports, allocator, kernels
    _lightning_fit(spec, 1, as_run_grid=True)
    fits: dict[str, list[Fit]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % 3:] + names[: r % 3]:
            fits[name].append(runs[name]())
    # an epoch's fastest time over all rounds is its time without interference from other jobs
    # (noise only ever adds); the fixed part of a fit (Lightning's setup, sanity check, teardown) is
    # its total minus its epochs, median over rounds
    epoch_s = {k: min(min(f.epochs) for f in v) for k, v in fits.items()}
    fixed_s = {k: statistics.median(f.total - sum(f.epochs) for f in v) for k, v in fits.items()}
    fit_s = {k: epochs * epoch_s[k] + fixed_s[k] for k in fits}
    steps = fits["bare"][0].steps
    if any(f.steps != steps for v in fits.values() for f in v):
        counts = {k: [f.steps for f in v] for k, v in fits.items()}
        raise RuntimeError(f"the loops took different numbers of steps: {counts}")
    steps_per_epoch = steps // epochs
    return {"manifest": str(manifest), "cell": cell.run_id, "epochs": epochs,
            "steps": steps, "rounds": rounds, "threads": torch.get_num_threads(),
            "epoch_s": epoch_s, "fixed_s": fixed_s, "fit_s": fit_s,
            "median_total_s": {k: statistics.median(f.total for f in v) for k, v in fits.items()},
            "ms_per_step": {k: 1000 * epoch_s[k] / steps_per_epoch for k in fits},
            "overhead_per_epoch": {k: epoch_s[k] / epoch_s["bare"] - 1 for k in names[1:]},
            "overhead": {k: fit_s[k] / fit_s["bare"] - 1 for k in names[1:]},
            "fits": {k: [{"epoch_s": f.epochs, "total_s": f.total} for f in v] for k, v in fits.items()}}


def format_loop(result: dict) -> str:
    e, f = result["epoch_s"], result["fixed_s"]
    lines = [f"Lightning training loop vs a bare PyTorch loop: {result['cell']} ({result['manifest']}), "
             f"{result['epochs']} epochs = {result['steps']} steps + validation each epoch, "
             f"{result['threads']} threads; fastest epoch over {result['rounds']} alternating rounds, "
             "fixed cost: median", "",
             "| loop | ms/epoch | ms/step | fixed ms per fit | fit s | overhead/epoch | overhead/fit |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| bare PyTorch | {1000 * e['bare']:.1f} | {result['ms_per_step']['bare']:.2f} | "
             f"{1000 * f['bare']:.0f} | {result['fit_s']['bare']:.2f} | – | – |"]
    labels = {"lightning_loop": "Lightning (loop only)",
              "lightning_run_grid": "Lightning as run-grid runs a cell (TB, ckpt/epoch)"}
    for key, label in labels.items():
        lines.append(f"| {label} | {1000 * e[key]:.1f} | {result['ms_per_step'][key]:.2f} | "
                     f"{1000 * f[key]:.0f} | {result['fit_s'][key]:.2f} | "
                     f"{100 * result['overhead_per_epoch'][key]:+.1f}% | "
                     f"{100 * result['overhead'][key]:+.1f}% |")
    return "\n".join(lines) + "\n"
