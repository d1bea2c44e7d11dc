"""Which cells of a wave train together as one pack (vitstudy.training.pack), under `run-grid --pack`:

    off    every cell alone (Lightning's Trainer, vitstudy.training.run)
    auto   cells that can share a pack do, up to AUTO_SIZE members (the default)
    K      at most K members per pack

Cells can share a pack when everything but what each member carries for itself is equal: the model
(shape and code path), the data, the number of epochs, the precision and device settings. A member
carries its own seed, learning rate (and min lr, batch scaling), weight decay, betas, label smoothing,
warm-up and cool-down, gradient clipping, Mixup/CutMix strengths (on for all or for none), random
erasing, translation, phase-1 weights and tuned values (`PER_MEMBER`). Cells that cannot be packed
train alone: an EMA of the weights, torch.compile, fp16 with loss scaling or fp64, several devices or
nodes, per-image PIL augmentation or a dataset that is not held as tensors (ImageNet folders).

A cell that started in a pack (its last.ckpt is a pack member's) finishes in one, a pack of one if need
be, even under `off`; a cell that started alone finishes alone. Members whose checkpoints cannot resume
at one common epoch train in separate packs (vitstudy.training.pack_checkpoint.common_epoch).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vitstudy.config.manifest import Cell
from vitstudy.config.spec import RunSpec

AUTO_SIZE = {"cpu": 16, "cuda": 64}  # members per pack under `auto` (measured: `vitstudy bench pack`)

PER_MEMBER = {
    "train": ("lr", "min_lr", "lr_base_batch", "weight_decay", "betas", "label_smoothing", "warmup_epochs",
              "cooldown_epochs", "grad_clip", "mixup", "cutmix", "mixup_prob", "mixup_switch_prob",
              "random_erasing", "recipe", "init_from", "transfer", "transfer_mask_value", "tune_from",
              "tune_metric"),
    "data": ("shift",),
}


@dataclass(frozen=True)
class Unit:
    """What one attempt trains: one cell alone (`packed` False), or cells as one pack."""

    cells: tuple[Cell, ...]
    packed: bool


def parse_mode(text: str) -> str | int:
    """`--pack`'s value: "auto", "off" or a member count ≥ 1."""
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"--pack takes auto, off or a number of members >= 1, got {text!r}")


def pack_key(spec: RunSpec) -> str | None:
    """What must be equal for cells to share a pack, as a string; None when the cell cannot be packed."""
    t, d = spec.train, spec.data
    if (t.ema_decay is not None or t.compile or t.precision not in ("32-true", "bf16-mixed")
            or t.accelerator not in ("auto", "cpu", "gpu", "cuda") or t.devices != 1 or t.num_nodes != 1
            or t.strategy not in ("auto", "single_device") or t.randaugment or t.color_jitter
            or not _held_as_tensors(d.dataset)):
        return None
    data = spec.model_dump(mode="json", include={"grid", "model", "data", "train"})
    for section, names in PER_MEMBER.items():
        for name in names:
            data[section].pop(name)
    data["mixing"] = bool(t.mixup or t.cutmix)
    return json.dumps(data, sort_keys=True)


def _held_as_tensors(dataset: str) -> bool:
    from vitstudy.data.base import TensorDataModule
    from vitstudy.registry import DATASETS

    return issubclass(DATASETS.get(dataset), TensorDataModule)


def plan_units(cells: list[Cell], dirs: dict[str, Path], mode: str | int, device: str = "cpu") -> list[Unit]:
    """The wave's cells as units, in grid order of their first cell."""
    from vitstudy.runfolder import CKPT_FILE
    from vitstudy.training.pack_checkpoint import started_in_pack

    size = AUTO_SIZE.get(device, AUTO_SIZE["cpu"]) if mode == "auto" else 1 if mode == "off" else int(mode)
    groups: dict[str, list[Cell]] = {}
    alone: list[Unit] = []
    for i, cell in enumerate(cells):
        run_dir = dirs[cell.run_id + cell.grid]
        ckpt = run_dir / CKPT_FILE
        started_packed = started_in_pack(run_dir)
        key = _effective_key(cell, run_dir) if not _kept(ckpt) or started_packed else None
        if key is None or (size == 1 and not started_packed):
            alone.append(Unit((cell,), packed=False))
        else:
            groups.setdefault(key if size > 1 else f"{i}", []).append(cell)
    units = alone + [unit for group in groups.values() for unit in _split(group, dirs, size)]
    order = {cell.run_id + cell.grid: i for i, cell in enumerate(cells)}
    return sorted(units, key=lambda u: order[u.cells[0].run_id + u.cells[0].grid])


def cpu_workers(units: list[Unit]) -> int:
    """Processes a CPU trains a wave's units with when `--workers` is not given: one per usable core
    (each with one thread), at most one per unit, when some unit is a pack; else one. A small model's
    operations are too short to keep two threads busy: on 2 cores, 12 cells of the default grid trained
    in 75 s packed in one process and in 56 s in two one-thread processes (99 s one by one)."""
    if not any(unit.packed for unit in units):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, len(units)))


def _effective_key(cell: Cell, run_dir: Path) -> str | None:
    """The pack key of the spec the cell will train with (a tuned grid's final cell: its tuned values)."""
    spec = cell.spec
    if spec.train.tune_from:
        from vitstudy.training.tune import apply_tuning

        try:
            spec, _ = apply_tuning(spec, run_dir)
        except Exception:  # noqa: BLE001 - trained alone, where the failure is recorded
            return None
    return pack_key(spec)


def _split(group: list[Cell], dirs: dict[str, Path], size: int) -> list[Unit]:
    """Packs of at most `size` members that can each resume at one epoch, as even as possible; a single
    fresh cell left over trains alone."""
    units = []
    for indices in resumable_groups([dirs[c.run_id + c.grid] for c in group]):
        together = [group[i] for i in indices]
        parts = -(-len(together) // size)
        for p in range(parts):
            members = tuple(together[p::parts])
            started = any(_started(dirs[c.run_id + c.grid]) for c in members)
            units.append(Unit(members, packed=len(members) > 1 or started))
    return units


def resumable_groups(run_dirs: list[Path]) -> list[list[int]]:
    """The folders' indices in groups whose checkpoints resume at one common epoch: greedily, each group
    the first folder left and every later one that keeps the group resumable."""
    from vitstudy.training.pack_checkpoint import common_epoch

    groups, rest = [], list(range(len(run_dirs)))
    while rest:
        together = rest[:1]
        for i in rest[1:]:
            if common_epoch([run_dirs[j] for j in together + [i]]) is not None:
                together.append(i)
        rest = [i for i in rest if i not in together]
        groups.append(together)
    return groups


def _started(run_dir: Path) -> bool:
    from vitstudy.runfolder import CKPT_FILE, PREV_FILE

    return _kept(run_dir / CKPT_FILE) or _kept(run_dir / PREV_FILE)


def _kept(ckpt: Path) -> bool:
    """Whether a checkpoint is there to resume from: one cut short is not (its cell starts afresh,
    vitstudy.runfolder.recover)."""
    from vitstudy.runfolder import checkpoint_damage

    return ckpt.exists() and checkpoint_damage(ckpt) is None
