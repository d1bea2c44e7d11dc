"""What every part of `vitstudy bench` shares: the model size, the precisions, the training step a cell
takes, and the interleaved rounds that make ratios trustworthy on a shared machine.

The step is the cell's own (vitstudy.training.step.train_step with TrainSpec's defaults: forward under
autocast, label-smoothed cross-entropy, backward, fused AdamW with weight decay on weight matrices only).
Cases are timed in rounds: every case once per round, the order rotated from round to round, so a burst
of load on the machine hits every case alike; figures are medians over rounds.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

from vitstudy.config.spec import ModelSpec, TrainSpec
from vitstudy.models.build import resolve_model
from vitstudy.training.step import train_step as cell_step
from vitstudy.training.throughput import sync

PRECISIONS = ("fp32", "bf16")
RECIPE = TrainSpec()  # the training step's loss and optimizer settings: a cell's defaults


@dataclass(frozen=True)
class BenchSize:
    img_size: int = 32
    patch_size: int = 4
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    batch_size: int = 64
    num_classes: int = 10

    def describe(self) -> str:
        n = (self.img_size // self.patch_size) ** 2
        return (f"{self.embed_dim} wide × {self.depth} blocks × {self.num_heads} heads, {self.img_size}px / "
                f"{self.patch_size}px patches ({n} tokens + class), batch {self.batch_size}")


VIT_TINY = BenchSize()  # ViT-Ti, 32 px images, 4 px patches, batch 64


def tiny_spec(size: BenchSize = VIT_TINY) -> ModelSpec:
    """ViT-Ti (vit_tiny preset) at the bench size: 32 px images, 4 px patches by default."""
    return resolve_model("vit_tiny", img_size=size.img_size, patch_size=size.patch_size, in_chans=3,
                         num_classes=size.num_classes, embed_dim=size.embed_dim, depth=size.depth,
                         num_heads=size.num_heads)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def train_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
               precision: str) -> Callable[[], None]:
    """One training step as a cell takes it (see the module doc), under `precision`'s autocast."""
    return cell_step(model, images, labels, RECIPE, autocast=lambda: autocast(images.device, precision))


def random_batch(spec: ModelSpec, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random images and labels for the model of `spec`."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, spec.in_chans, spec.img_size, spec.img_size, generator=g)
    labels = torch.randint(spec.num_classes, (batch_size,), generator=g)
    return images.to(device), labels.to(device)


def calibrate(fn: Callable[[], None], min_time: float, device: torch.device) -> tuple[float, int]:
    """One warm-up call (allocator, kernels, optimizer state), then one timed call: its seconds, and
    how many calls make one measurement of at least `min_time` seconds."""
    fn()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = time.perf_counter() - start
    return seconds, max(1, math.ceil(min_time / max(seconds, 1e-7)))


def interleaved(cells: dict[str, Callable[[], None]], calls: dict[str, int], rounds: int,
                device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of every cell, one measurement (of `calls[name]` calls) per round; each round
    runs every cell, in an order rotated from round to round."""
    names = list(cells)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(device)
            start = time.perf_counter()
            for _ in range(calls[name]):
                cells[name]()
            sync(device)
            times[name].append((time.perf_counter() - start) / calls[name])
    return times


def machine(device: torch.device, rounds: int, min_time: float) -> dict:
    """Where and how a part was measured, for its JSON."""
    out = {"device": device.type, "threads": torch.get_num_threads(), "rounds": rounds,
           "min_time_s": min_time, "torch": torch.__version__}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
    return out
