"""Measured speed of a model on this machine's device: inference and training images per second with
random images, and peak memory; what `vitstudy profile MANIFEST` reports beside the static params and
MACs (vitstudy.models.cost), and every run's metrics.json for inference. A training step is timed as a
cell takes it (vitstudy.training.step: label-smoothed loss, fused AdamW with decay on weight matrices).
"""

from __future__ import annotations

import torch

from vitstudy.config.spec import ModelSpec, TrainSpec
from vitstudy.models.build import build_model
from vitstudy.models.cost import model_cost
from vitstudy.training.step import train_step

# the inference timing of every cell's record (cost.infer_img_s): one test batch, 2 untimed passes, then
# 10 timed (or 0.1 s). On a CPU the spread between repeated timings is the machine's (5-30 % on a shared
# 2-core box) with 5, 10 or 20 passes alike, so 20 passes only doubled this part of a cell's fixed cost.
CELL_INFER_TIMING = {"min_time": 0.1, "max_iters": 10}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a clock reads its end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, images: int, min_time: float, max_iters: int, warmup: int) -> float:
    """Images per second of `step()` (processing `images` images), after `warmup` untimed calls, timed
    until `min_time` seconds or `max_iters` calls have passed."""
    import time

    for _ in range(warmup):
        step()
    sync(device)
    start, iters = time.perf_counter(), 0
    while iters < max_iters and (iters == 0 or time.perf_counter() - start < min_time):
        step()
        iters += 1
        if iters % 5 == 0:
            sync(device)
    sync(device)
    return images * iters / (time.perf_counter() - start)


def inference_throughput(model: torch.nn.Module, images: torch.Tensor, autocast=None,
                         min_time: float = 0.3, max_iters: int = 50, warmup: int = 2) -> float:
    """Forward passes per second × batch size, in eval mode without autograd."""
    from contextlib import nullcontext

    was_training = model.training
    model.eval()

    def step():
        with torch.inference_mode(), (autocast() if autocast else nullcontext()):
            model(images)

    try:
        return _timed(step, images.device, len(images), min_time, max_iters, warmup)
    finally:
        model.train(was_training)


def training_throughput(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        train: TrainSpec, min_time: float = 0.3, max_iters: int = 50,
                        warmup: int = 2) -> float:
    """Training steps of a cell with recipe `train` (vitstudy.training.step.train_step: forward,
    label-smoothed cross-entropy, backward, fused AdamW step) per second × batch size, with an optimizer
    that is thrown away afterwards (the model's weights do change)."""
    step = train_step(model, images, labels, train)
    return _timed(step, images.device, len(images), min_time, max_iters, warmup)


def measure_cost(spec: ModelSpec, batch_size: int, device: str | torch.device = "cpu",
                 min_time: float = 0.3, train: TrainSpec | None = None) -> dict:
    """Params, MACs and measured inference and training images/s of a freshly built model, with
    random images, on `device`; and its peak memory there (CUDA) in MiB. Training steps are those of
    the recipe `train` (None: TrainSpec's defaults). No data, no training."""
    device = torch.device(device)
    cost = model_cost(spec).as_dict()
    model = build_model(spec).to(device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, spec.in_chans, spec.img_size, spec.img_size, generator=gen).to(device)
    labels = torch.randint(0, spec.num_classes, (batch_size,), generator=gen).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    infer = inference_throughput(model, images, min_time=min_time)
    trained = training_throughput(model, images, labels, train or TrainSpec(), min_time=min_time)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {**cost, "batch_size": batch_size, "device": device.type,
            "infer_img_s": infer, "train_img_s": trained, "peak_mem_mib": peak}
