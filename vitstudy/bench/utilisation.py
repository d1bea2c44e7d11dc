"""`vitstudy bench utilisation`: the FLOP/s a training step achieves (model FLOPs per step, counted by
vitstudy.bench.flops, over its median time) divided by the matmul peak measured in the same run, for the
default grid's model and ViT-Ti, per precision: how much of the machine a step uses (the model FLOPs
utilisation of Chowdhery et al. 2022, PaLM, against a measured rather than a datasheet peak).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable

import torch

from vitstudy.bench.common import (
    PRECISIONS,
    VIT_TINY,
    BenchSize,
    calibrate,
    interleaved,
    machine,
    random_batch,
    tiny_spec,
    train_step,
)
from vitstudy.bench.flops import model_step_flops
from vitstudy.config.spec import ModelSpec
from vitstudy.models.build import build_model
from vitstudy.models.cost import model_cost


def utilisation_models(size: BenchSize = VIT_TINY,
                       manifest: str | Path = "experiments.yaml") -> dict[str, tuple[ModelSpec, int]]:
    """label -> (spec, batch size): the default grid's model at its batch size, and ViT-Ti at `size`."""
    from vitstudy.config import manifest as manifests

    cell = manifests.load(manifest, cost=model_cost).cells[0].spec
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
            cells[f"{label} {p}"] = train_step(model, *random_batch(spec, batch_size, device), p)
    for label, (spec, batch_size) in models.items():
        flops[label], batch[label] = model_step_flops(spec, batch_size), batch_size
    for name, fn in cells.items():
        calls[name] = calibrate(fn, min_time, device)[1]
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
            **machine(device, rounds, min_time), "calls_per_round": calls,
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
