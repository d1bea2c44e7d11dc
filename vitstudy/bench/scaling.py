"""`vitstudy bench scaling`: time and FLOPs of one token-mixer layer (forward + backward) against the
token count N, with the log-log exponent fitted over the upper part of the range: attention (Vaswani et
al. 2017) and global dwsa ~ N², windowed dwsa (Zhou et al. 2023), conv and pool (PoolFormer) ~ N; and
its plot. Every grid size of every mixer is timed once per round, in interleaved rounds
(vitstudy.bench.common); FLOPs are counted on the meta device (vitstudy.bench.flops).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vitstudy.bench.common import autocast, calibrate, interleaved, machine
from vitstudy.bench.flops import EXTRA_FLOPS
from vitstudy.models.build import mixer_layer, resolve_model

SCALING_MIXERS: dict[str, dict] = {
    "attention": {"mixer": "attention", "normalizer": "softmax"},
    "dwsa (window 7)": {"mixer": "dwsa", "window": 7},
    "dwsa (global)": {"mixer": "dwsa"},
    "patch_mlp": {"mixer": "patch_mlp"},
    "conv": {"mixer": "conv"},
    "pool": {"mixer": "pool"},
    "identity": {"mixer": "identity"},
}


def _mixer(overrides: dict, dim: int, num_heads: int, side: int) -> nn.Module:
    """The mixer as VisionTransformer builds it (gap head: no prefix token) on a side×side grid."""
    spec = resolve_model(None, embed_dim=dim, num_heads=num_heads, head="gap", **overrides)
    return mixer_layer(spec)(dim=dim, grid=(side, side), num_prefix_tokens=0)


def _mixer_step(layer: nn.Module, x: torch.Tensor, side: int, precision: str) -> Callable[[], None]:
    """Forward and backward of one mixer layer (input gradient included, as inside a ViT)."""
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(x.device)

    def step() -> None:
        with autocast(x.device, precision):
            out = layer(x, (side, side))
        out.backward(grad.to(out.dtype))
        layer.zero_grad(set_to_none=True)
        x.grad = None

    return step


def _exponent(tokens: list[int], values: list[float | None], min_tokens: int) -> float | None:
    """Least-squares slope of log(value) on log(N) over N ≥ min_tokens (None: under two points)."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(tokens, values, strict=True) if n >= min_tokens and v]
    if len(pts) < 2:
        return None
    return statistics.linear_regression(*zip(*pts, strict=True)).slope


def bench_scaling(sides: tuple[int, ...] = (8, 16, 24, 32, 48, 64), dim: int = 192, num_heads: int = 3,
                  batch_size: int = 2, mixers: dict[str, dict] | None = None, rounds: int = 3,
                  min_time: float = 0.05, max_step_s: float = 4.0, fit_min_tokens: int = 1024,
                  precision: str = "fp32", device: str | torch.device = "cpu") -> dict:
    """Step time (forward + backward of one mixer layer, batch `batch_size`) and FLOPs per image of each
    mixer on side×side token grids, and the exponents of both against N = side² fitted over
    N ≥ fit_min_tokens. A mixer's larger grids are not timed once its measured time, extrapolated
    quadratically, would pass `max_step_s` (FLOPs are still counted: they cost nothing)."""
    device = torch.device(device)
    mixers = SCALING_MIXERS if mixers is None else mixers
    tokens = [s * s for s in sides]
    cells, calls, flops = {}, {}, {}
    for label, overrides in mixers.items():
        flops[label], last = [], None
        for side, n in zip(sides, tokens, strict=True):
            with torch.device("meta"):
                layer, x = _mixer(overrides, dim, num_heads, side), torch.empty(1, n, dim, requires_grad=True)
            with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
                layer(x, (side, side)).sum().backward()
            flops[label].append(counter.get_total_flops())
            if last is not None and last[1] * (n / last[0]) ** 2 > max_step_s:
                continue
            torch.manual_seed(0)
            x = torch.randn(batch_size, n, dim, device=device, requires_grad=True)
            step = _mixer_step(_mixer(overrides, dim, num_heads, side).to(device), x, side, precision)
            seconds, calls[(label, n)] = calibrate(step, min_time, device)
            cells[(label, n)], last = step, (n, seconds)
    times = interleaved(cells, calls, rounds, device)
    out = {}
    for label, overrides in mixers.items():
        ms = [1000 * statistics.median(times[(label, n)]) if (label, n) in times else None for n in tokens]
        out[label] = {"overrides": overrides, "step_ms": ms, "flops_per_image": flops[label],
                      "calls_per_round": [calls.get((label, n)) for n in tokens],
                      "time_exponent": _exponent(tokens, ms, fit_min_tokens),
                      "flop_exponent": _exponent(tokens, flops[label], fit_min_tokens)}
    return {"part": "scaling", "sides": list(sides), "tokens": tokens, "dim": dim, "num_heads": num_heads,
            "batch_size": batch_size, "precision": precision, **machine(device, rounds, min_time),
            "max_step_s": max_step_s, "fit_min_tokens": fit_min_tokens, "mixers": out}


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def format_scaling(result: dict) -> str:
    tokens = result["tokens"]
    head = " | ".join(f"N={n}" for n in tokens)
    rule = "|---" * (len(tokens) + 3) + "|"
    lines = [f"one mixer layer, forward + backward, {result['dim']} wide, {result['num_heads']} heads, batch "
             f"{result['batch_size']}, {result['precision']} on {result['device']}, "
             f"{result['threads']} threads; median of {result['rounds']} interleaved rounds; exponents "
             f"fitted over N ≥ {result['fit_min_tokens']} (– : not timed, "
             f"over {result['max_step_s']:g} s/step)", "",
             f"| mixer | ms/step at {head} | time exponent | FLOP exponent |", rule]
    for label, m in result["mixers"].items():
        cells = " | ".join(_fmt(t, ".3g") for t in m["step_ms"])
        lines.append(f"| {label} | {cells} | {_fmt(m['time_exponent'], '.2f')} | "
                     f"{_fmt(m['flop_exponent'], '.2f')} |")
    lines += ["", f"| mixer | MFLOP per image at {head} |", "|---" * (len(tokens) + 1) + "|"]
    for label, m in result["mixers"].items():
        lines.append(f"| {label} | " + " | ".join(f"{f / 1e6:.4g}" for f in m["flops_per_image"]) + " |")
    return "\n".join(lines) + "\n"


def plot_scaling(result: dict, out_dir: Path) -> list[Path]:
    """scaling.png/.svg: step time and FLOPs per image against N on log-log axes, one line per mixer,
    with dashed reference lines of slope 1 and 2 through the top-right data point."""
    from vitstudy.results.plots import MARKERS, colors, pyplot, save

    plt = pyplot()
    tokens = result["tokens"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    palette = colors(len(result["mixers"]))
    panels = ((axes[0], "step_ms", "time_exponent", "ms per step (forward + backward)"),
              (axes[1], "flops_per_image", "flop_exponent", "FLOPs per image (forward + backward)"))
    for ax, key, fit, ylabel in panels:
        top = []
        for i, (label, m) in enumerate(result["mixers"].items()):
            pts = [(n, v) for n, v in zip(tokens, m[key], strict=True) if v]
            if not pts:
                continue
            top.append(pts[-1])
            exp = m[fit]
            ax.plot(*zip(*pts, strict=True), marker=MARKERS[i % len(MARKERS)], color=palette[i],
                    label=f"{label} (slope {exp:.2f})" if exp is not None else label)
        n1, v1 = max(top)
        for k, style in ((1, ":"), (2, "--")):
            ax.plot(tokens, [1.5 * v1 * (n / n1) ** k for n in tokens], style, color="0.4", linewidth=1,
                    label=f"∝ N{'²' if k == 2 else ''}")
        ax.set(xscale="log", yscale="log", xlabel="tokens N", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"token mixer cost vs N ({result['dim']} wide, {result['precision']}, {result['device']}, "
                 f"{result['threads']} threads; slopes fitted over N ≥ {result['fit_min_tokens']})",
                 fontsize=10)
    out_dir.mkdir(parents=True, exist_ok=True)
    return save(fig, out_dir / "scaling")
