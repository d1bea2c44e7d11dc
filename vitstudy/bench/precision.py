"""`vitstudy bench precision`: training-step throughput of ViT-Ti (32 px, 4 px patches) in fp32 and under
bf16 autocast (Kalamkar et al. 2019, bfloat16 for deep learning), and their ratio (issue 8 asks
bf16 ≥ 1.8× fp32 on a 2-core CPU). Two identically initialised models take the cell's own training
step (vitstudy.bench.common) in interleaved rounds; the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import statistics

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
from vitstudy.models.build import build_model


def bench_precision(size: BenchSize = VIT_TINY, rounds: int = 7, min_time: float = 0.5,
                    device: str | torch.device = "cpu", required: float = 1.8) -> dict:
    """Training images/s of ViT-Ti in fp32 and under bf16 autocast (two identically initialised
    models), and bf16/fp32 as the median over rounds of the per-round ratio of step times."""
    device = torch.device(device)
    spec = tiny_spec(size)
    images, labels = random_batch(spec, size.batch_size, device)
    models, cells, calls = {}, {}, {}
    for p in PRECISIONS:
        torch.manual_seed(0)
        models[p] = build_model(spec).to(device)
        cells[p] = train_step(models[p], images, labels, p)
        calls[p] = calibrate(cells[p], min_time, device)[1]
    times = interleaved(cells, calls, rounds, device)
    per_round = [t32 / t16 for t32, t16 in zip(times["fp32"], times["bf16"], strict=True)]
    ratio = statistics.median(per_round)
    return {"part": "precision", "model": "vit_tiny", "size": size.__dict__, "describe": size.describe(),
            "precisions": list(PRECISIONS), **machine(device, rounds, min_time), "calls_per_round": calls,
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
