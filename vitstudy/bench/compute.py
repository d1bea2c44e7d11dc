"""Compute benchmarks of `vitstudy bench` (issue 8), each a JSON-serialisable dict plus a markdown table:

- `bench_precision`: training-step throughput of ViT-Ti (32 px, 4 px patches) in fp32 and under bf16
  autocast, and their ratio (the issue asks bf16 ≥ 1.8× fp32 on a 2-core CPU);
- `bench_utilisation`: the FLOP/s a training step achieves divided by the matmul peak measured in the
  same run, for the default grid's model and ViT-Ti, per precision;
- `bench_scaling`: time and FLOPs of one token-mixer layer (forward + backward) against the token count
  N, with the log-log exponent fitted over the upper part of the range (attention and global dwsa ~ N²,
  windowed dwsa, conv and pool ~ N), and its plot.

Timings follow vitstudy.bench.mixers: every case is timed once per round, rounds interleave all cases (order
rotated), and figures are medians over rounds, so a burst of load on a shared machine hits every case
alike. FLOPs are counted with torch's FlopCounterMode on the meta device (deterministic, nothing runs):
matrix products and convolutions (the model-FLOPs convention; attention counted as its two products
whichever kernel runs), plus the window sums of average pooling, which the counter leaves out, and
with the weight gradient of grouped convolutions counted once (torch counts it `groups` times).
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from vitstudy.bench.mixers import LABEL_SMOOTHING, PRECISIONS, BenchSize, autocast, interleaved, train_step
from vitstudy.config.spec import ModelSpec
from vitstudy.models.build import build_model, mixer_layer, resolve_model
from vitstudy.training.throughput import sync

VIT_TINY = BenchSize()  # ViT-Ti, 32 px images, 4 px patches, batch 64


# --- shared: batches, calibration, FLOP counting (the step and the rounds: vitstudy.bench.mixers) ---------
def _batch(spec: ModelSpec, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, spec.in_chans, spec.img_size, spec.img_size, generator=g)
    labels = torch.randint(spec.num_classes, (batch_size,), generator=g)
    return images.to(device), labels.to(device)


def _calibrate(fn: Callable[[], None], min_time: float, device: torch.device) -> tuple[float, int]:
    """One warm-up call (allocator, kernels, optimizer state), then one timed call: its seconds, and
    how many calls make one measurement of at least `min_time` seconds."""
    fn()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = time.perf_counter() - start
    return seconds, max(1, math.ceil(min_time / max(seconds, 1e-7)))


def _pool_flops(x_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    """Average pooling: one add per window element per output (the window mean of dwsa, pool mixer)."""
    k = list(kernel_size) * (2 if len(kernel_size) == 1 else 1)
    return math.prod(out_shape) * math.prod(k)


def _pool_backward_flops(grad_shape, x_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    return _pool_flops(x_shape, kernel_size, out_shape=grad_shape)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each of the input and the weight gradient of a convolution costs its forward again. (torch's
    own formula counts the weight gradient of a grouped convolution `groups` times over: 25× the
    forward for dwsa's depthwise convolution at 24 channels.)"""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (bool(output_mask[0]) + bool(output_mask[1]))


EXTRA_FLOPS = {torch.ops.aten.avg_pool2d: _pool_flops,
               torch.ops.aten.avg_pool2d_backward: _pool_backward_flops,
               torch.ops.aten.convolution_backward: _conv_backward_flops}


def step_flops(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward (with cross-entropy) and one backward of `model` on this batch, as counted
    by FlopCounterMode (matmuls, convolutions, attention products) plus `EXTRA_FLOPS` (average pooling,
    grouped-convolution gradients). Run it on meta tensors to count without computing."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
        loss = F.cross_entropy(model(images), labels, label_smoothing=LABEL_SMOOTHING)
        forward = counter.get_total_flops()
        loss.backward()
    return {"forward": forward, "backward": counter.get_total_flops() - forward}


def model_step_flops(spec: ModelSpec, batch_size: int) -> dict[str, int]:
    """`step_flops` of the model of `spec` on a batch, built on the meta device."""
    with torch.device("meta"):
        model = build_model(spec)
        images = torch.empty(batch_size, spec.in_chans, spec.img_size, spec.img_size)
        labels = torch.zeros(batch_size, dtype=torch.long)
    return step_flops(model, images, labels)


def _common(device: torch.device, rounds: int, min_time: float) -> dict:
    out = {"device": device.type, "threads": torch.get_num_threads(), "rounds": rounds,
           "min_time_s": min_time, "torch": torch.__version__}
    if device.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(device)
    return out


def tiny_spec(size: BenchSize = VIT_TINY) -> ModelSpec:
    """ViT-Ti (vit_tiny preset) at the bench size: 32 px images, 4 px patches by default."""
    return resolve_model("vit_tiny", img_size=size.img_size, patch_size=size.patch_size, in_chans=3,
                         num_classes=size.num_classes, embed_dim=size.embed_dim, depth=size.depth,
                         num_heads=size.num_heads)


# --- part: precision ---------------------------------------------------------------------------------
def bench_precision(size: BenchSize = VIT_TINY, rounds: int = 7, min_time: float = 0.5,
                    device: str | torch.device = "cpu", required: float = 1.8) -> dict:
    """Training images/s of ViT-Ti in fp32 and under bf16 autocast (two identically initialised
    models), and bf16/fp32 as the median over rounds of the per-round ratio of step times."""
    device = torch.device(device)
    spec = tiny_spec(size)
    images, labels = _batch(spec, size.batch_size, device)
    models, cells, calls = {}, {}, {}
    for p in PRECISIONS:
        torch.manual_seed(0)
        models[p] = build_model(spec).to(device)
        cells[p] = train_step(models[p], images, labels, p)
        calls[p] = _calibrate(cells[p], min_time, device)[1]
    times = interleaved(cells, calls, rounds, device)
    per_round = [t32 / t16 for t32, t16 in zip(times["fp32"], times["bf16"], strict=True)]
    ratio = statistics.median(per_round)
    return {"part": "precision", "model": "vit_tiny", "size": size.__dict__, "describe": size.describe(),
            "precisions": list(PRECISIONS), **_common(device, rounds, min_time), "calls_per_round": calls,
            "attention_path": {p: sorted(set(m.attention_paths())) for p, m in models.items()},
            "step_ms": {p: 1000 * statistics.median(t) for p, t in times.items()},
            "img_per_s": {p: size.batch_size / statistics.median(t) for p, t in times.items()},
            "bf16_over_fp32": ratio, "bf16_over_fp32_per_round": per_round,
            "required": required, "meets_required": ratio >= required}


def format_precision(result: dict) -> str:
    lines = [f"training step (forward, label-smoothed CE, backward, fused AdamW) of {result['model']}, "
             f"{result['describe']}, fp32 vs bf16 autocast on {result['device']}, "
             f"{result['threads']} threads; median of {result['rounds']} interleaved rounds", "",
             "| precision | attention path | ms/step | images/s |", "|---|---|---|---|"]
    for p in result["precisions"]:
        lines.append(f"| {p} | {', '.join(result['attention_path'][p])} | {result['step_ms'][p]:.1f} | "
                     f"{result['img_per_s'][p]:.0f} |")
    verdict = "meets" if result["meets_required"] else "misses"
    lines += ["", f"bf16 / fp32 throughput: {result['bf16_over_fp32']:.2f}× ({verdict} the required "
                  f"≥ {result['required']}×)"]
    return "\n".join(lines) + "\n"


# --- part: utilisation -------------------------------------------------------------------------------
def utilisation_models(size: BenchSize = VIT_TINY,
                       manifest: str | Path = "experiments.yaml") -> dict[str, tuple[ModelSpec, int]]:
    """label -> (spec, batch size): the default grid's model at its batch size, and ViT-Ti at `size`."""
    from vitstudy.config import manifest as manifests

    cell = manifests.load(manifest).cells[0].spec
    m = cell.model
    grid = f"default grid ({m.preset} {m.embed_dim}×{m.depth}, {m.img_size}px/{m.patch_size})"
    return {grid: (m, cell.data.batch_size),
            f"vit_tiny ({size.img_size}px/{size.patch_size})": (tiny_spec(size), size.batch_size)}


def _matmul(n: int, precision: str, device: torch.device) -> Callable[[], None]:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device, dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def bench_utilisation(models: dict[str, tuple[ModelSpec, int]] | None = None, rounds: int = 5,
                      min_time: float = 0.3, peak_n: int = 2048, device: str | torch.device = "cpu") -> dict:
    """Achieved training FLOP/s (model FLOPs per step / median step time) over the peak matmul FLOP/s
    (2n³ / median time of an n×n×n matmul in that precision), per model and precision. Steps and
    matmuls are timed in the same interleaved rounds."""
    device = torch.device(device)
    models = utilisation_models() if models is None else models
    cells, calls, flops, batch = {}, {}, {}, {}
    for p in PRECISIONS:
        cells[f"peak {p}"] = _matmul(peak_n, p, device)
        for label, (spec, batch_size) in models.items():
            torch.manual_seed(0)
            model = build_model(spec).to(device)
            cells[f"{label} {p}"] = train_step(model, *_batch(spec, batch_size, device), p)
    for label, (spec, batch_size) in models.items():
        flops[label], batch[label] = model_step_flops(spec, batch_size), batch_size
    for name, fn in cells.items():
        calls[name] = _calibrate(fn, min_time, device)[1]
    times = interleaved(cells, calls, rounds, device)
    peak = {p: 2 * peak_n ** 3 / statistics.median(times[f"peak {p}"]) for p in PRECISIONS}
    rows = []
    for label in models:
        total = sum(flops[label].values())
        for p in PRECISIONS:
            t = statistics.median(times[f"{label} {p}"])
            rows.append({"model": label, "precision": p, "batch_size": batch[label],
                         "flops_per_step": total, "flops_forward": flops[label]["forward"],
                         "flops_backward": flops[label]["backward"], "step_ms": 1000 * t,
                         "achieved_flop_s": total / t, "peak_flop_s": peak[p],
                         "utilisation": total / t / peak[p]})
    return {"part": "utilisation", "precisions": list(PRECISIONS), "peak_n": peak_n,
            **_common(device, rounds, min_time), "calls_per_round": calls,
            "specs": {label: spec.model_dump(mode="json") for label, (spec, _) in models.items()},
            "peak_flop_s": peak, "rows": rows}


def format_utilisation(result: dict) -> str:
    peaks = ", ".join(f"{p} {result['peak_flop_s'][p] / 1e9:.0f} GFLOP/s" for p in result["precisions"])
    n = result["peak_n"]
    lines = [f"achieved training FLOP/s (forward + backward model FLOPs / step time) over the matmul peak "
             f"measured in the same run ({n}×{n}×{n}: {peaks}) on {result['device']}, {result['threads']} "
             f"threads; median of {result['rounds']} interleaved rounds", "",
             "| model | precision | batch | GFLOP/step | ms/step | achieved GFLOP/s | peak GFLOP/s "
             "| utilisation |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch_size']} | "
                     f"{r['flops_per_step'] / 1e9:.3g} | {r['step_ms']:.1f} | "
                     f"{r['achieved_flop_s'] / 1e9:.1f} | {r['peak_flop_s'] / 1e9:.0f} | "
                     f"{100 * r['utilisation']:.1f}% |")
    return "\n".join(lines) + "\n"


# --- part: scaling -----------------------------------------------------------------------------------
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
            seconds, calls[(label, n)] = _calibrate(step, min_time, device)
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
            "batch_size": batch_size, "precision": precision, **_common(device, rounds, min_time),
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
    from vitstudy.results.plots import MARKERS, _pyplot, _save, colors

    plt = _pyplot()
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
    return _save(fig, out_dir / "scaling")
