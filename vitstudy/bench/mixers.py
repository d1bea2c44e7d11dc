"""Benchmarks that report ratios against a reference measured in the same process, never absolute
timings (shared machines are noisy): `vitstudy bench mixers` times a training step (forward,
label-smoothed loss, backward, fused AdamW step: `train_step`, shared with vitstudy.bench.compute) of
every token mixer × normaliser against timm's VisionTransformer of identical
dimensions. Models are timed in interleaved rounds (every model once per round, order rotated) and
each ratio is the median over rounds of timm's step time divided by ours, so a burst of load on the
machine hits every model alike. Ratio > 1: vitstudy is faster.
"""

from __future__ import annotations

import json
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from vitstudy.models.build import build_model, resolve_model
from vitstudy.registry import MIXERS, NORMALIZERS
from vitstudy.training.throughput import sync


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


def variants() -> list[tuple[str, dict]]:
    """(label, model overrides) for every mixer, and every normaliser of the mixers that take one."""
    out = []
    for mixer in MIXERS.names():
        meta = MIXERS.entry(mixer).meta
        head = "cls" if meta.get("mixes_prefix") else "gap"
        for norm in (NORMALIZERS.names() if meta.get("normalizer") else [None]):
            label = f"{mixer}+{norm}" if norm else mixer
            out.append((label, dict(mixer=mixer, normalizer=norm, head=head)))
    return out


def _timm_model(size: BenchSize):
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=size.img_size,
                             patch_size=size.patch_size, embed_dim=size.embed_dim, depth=size.depth,
                             num_heads=size.num_heads, num_classes=size.num_classes)


PRECISIONS = ("fp32", "bf16")
LABEL_SMOOTHING = 0.1  # the default grid's; cross-entropy cost is the same either way


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def train_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
               precision: str) -> Callable[[], None]:
    """One training step as the trainer runs it: forward under autocast, label-smoothed cross-entropy,
    backward, fused AdamW step."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        with autocast(images.device, precision):
            loss = F.cross_entropy(model(images), labels, label_smoothing=LABEL_SMOOTHING)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


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


def bench_mixers(size: BenchSize = BenchSize(), precision: str = "fp32", rounds: int = 5,
                 steps: int = 3, only: list[str] | None = None, device: str | torch.device = "cpu") -> dict:
    """Step-time ratios timm / vitstudy for every variant (or those labelled in `only`)."""
    device = torch.device(device)
    torch.manual_seed(0)
    chosen = [(label, kw) for label, kw in variants() if only is None or label in only]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(size.batch_size, 3, size.img_size, size.img_size, generator=g).to(device)
    y = torch.randint(size.num_classes, (size.batch_size,), generator=g).to(device)
    models = {"timm": _timm_model(size)}
    for label, kw in chosen:
        models[label] = build_model(resolve_model(
            None, img_size=size.img_size, patch_size=size.patch_size, in_chans=3,
            num_classes=size.num_classes, embed_dim=size.embed_dim, depth=size.depth,
            num_heads=size.num_heads, **kw))
    steppers = {name: train_step(model.to(device), x, y, precision) for name, model in models.items()}
    for step in steppers.values():  # warm-up: allocator, kernels, optimizer state
        step()
    times = interleaved(steppers, {name: steps for name in steppers}, rounds, device)
    ratios = {}
    for label, _ in chosen:
        per_round = [t_ref / t for t_ref, t in zip(times["timm"], times[label], strict=True)]
        ratios[label] = statistics.median(per_round)
    return {"size": size.__dict__, "describe": size.describe(), "precision": precision,
            "device": device.type, "rounds": rounds, "steps_per_round": steps,
            "threads": torch.get_num_threads(),
            "timm_step_ms": 1000 * statistics.median(times["timm"]),
            "step_ms": {k: 1000 * statistics.median(v) for k, v in times.items() if k != "timm"},
            "ratio_vs_timm": ratios}


def format_mixers(result: dict) -> str:
    lines = [f"training step vs timm VisionTransformer, {result['precision']}, {result['describe']}, "
             f"{result['threads']} threads; median of {result['rounds']} interleaved rounds",
             f"timm: {result['timm_step_ms']:.1f} ms/step", "",
             "| variant | ms/step | throughput ÷ timm's |", "|---|---|---|"]
    for label, ratio in result["ratio_vs_timm"].items():
        lines.append(f"| {label} | {result['step_ms'][label]:.1f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def write_json(result: dict, path: Path) -> None:
    from vitstudy import runfolder as files

    files.write_text(path, json.dumps(result, indent=2) + "\n")


def plot_mixers(results: dict[str, dict], out_dir: Path) -> list[Path]:
    """A bar per variant and precision: throughput ÷ timm's (1 = parity), as mixers.png/.svg."""
    from vitstudy.results.plots import _pyplot, _save, colors

    plt = _pyplot()
    labels = list(next(iter(results.values()))["ratio_vs_timm"])
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(labels) * len(results) + 1.2))
    height = 0.8 / len(results)
    for i, ((precision, result), color) in enumerate(zip(results.items(), colors(len(results)), strict=True)):
        ys = [j + (i - (len(results) - 1) / 2) * height for j in range(len(labels))]
        ax.barh(ys, [result["ratio_vs_timm"][label] for label in labels], height=height, color=color,
                label=f"{precision} (timm {result['timm_step_ms']:.0f} ms/step)")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("training-step throughput ÷ timm VisionTransformer's (same dimensions)")
    ax.set_title(next(iter(results.values()))["describe"], fontsize=8)
    ax.legend(fontsize=8)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _save(fig, out_dir / "mixers")
