"""`vitstudy bench mixers`: a ratio against a reference measured in the same process, never an absolute
timing (shared machines are noisy). It times a training step (forward, label-smoothed loss, backward,
fused AdamW step with decay on weight matrices: the cell's own step, vitstudy.bench.common.train_step) of
every token mixer × normaliser against timm's VisionTransformer (Dosovitskiy et al. 2021, Wightman's
implementation) of identical dimensions. Models are timed in interleaved rounds (every model once per
round, order rotated) and each ratio is the median over rounds of timm's step time divided by ours, so a
burst of load on the machine hits every model alike. Ratio > 1: vitstudy is faster.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from vitstudy.bench.common import VIT_TINY, BenchSize, interleaved, train_step
from vitstudy.models.build import build_model, resolve_model
from vitstudy.registry import MIXERS, NORMALIZERS


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


def bench_mixers(size: BenchSize = VIT_TINY, precision: str = "fp32", rounds: int = 5,
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


def plot_mixers(results: dict[str, dict], out_dir: Path) -> list[Path]:
    """A bar per variant and precision: throughput ÷ timm's (1 = parity), as mixers.png/.svg."""
    from vitstudy.results.plots import colors, pyplot, save

    plt = pyplot()
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
    return save(fig, out_dir / "mixers")
