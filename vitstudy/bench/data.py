"""`vitstudy bench data`: samples per second of the device-resident pipeline (index slices of a tensor
plus batched translation and flip, vitstudy.data.base.DeviceBatches; airbench's recipe, Jordan 2024)
against torchvision's per-sample pipeline (PIL images, RandomCrop(padding) + RandomHorizontalFlip +
ToTensor + Normalize, DataLoader workers) at CIFAR size, with the same augmentation; random pixels stand
in for CIFAR so that nothing needs downloading. A ratio measured in one process, epochs alternating.
"""

from __future__ import annotations

import statistics
import time

import torch

from vitstudy.data.augment import BatchAugment
from vitstudy.training.throughput import sync


class _PILImages(torch.utils.data.Dataset):
    """uint8 HWC images as PIL, through a torchvision transform: the per-sample pipeline."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def bench_data(n: int = 10_000, batch_size: int = 256, workers: int | None = None, rounds: int = 3,
               device: str = "cpu") -> dict:
    """Training samples per second, device-resident vs per-sample DataLoader, at CIFAR size (32×32×3)
    with the same augmentation (4-px translation and a horizontal flip) and normalisation."""
    from torchvision import transforms

    from vitstudy.data.base import DeviceBatches, loader_workers

    g = torch.Generator().manual_seed(0)
    hwc = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    mean, std = 0.5, 0.25
    workers = loader_workers() if workers is None else workers
    dev = torch.device(device)
    per_sample = torch.utils.data.DataLoader(
        _PILImages(hwc.numpy(), labels, transforms.Compose([
            transforms.RandomCrop(32, padding=4, padding_mode="edge"), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize((mean,) * 3, (std,) * 3)])),
        batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
        pin_memory=dev.type == "cuda")
    x = ((hwc.permute(0, 3, 1, 2).float().div(255) - mean) / std).contiguous()  # as TensorDataModule holds it
    resident = DeviceBatches(x, labels, batch_size, torch.utils.data.RandomSampler(range(n)), lambda: dev)
    augment = BatchAugment(shift=4, flip=True)

    def epoch(batches, prepare) -> tuple[int, float]:
        """(samples served, seconds) for one epoch of training batches, ready on the device."""
        samples, start = 0, time.perf_counter()
        for xb, yb in batches:
            prepare(xb, yb)
            samples += len(yb)
        sync(dev)
        return samples, time.perf_counter() - start

    pipelines = {"device_resident": (resident, lambda xb, yb: augment(xb)),
                 "per_sample_dataloader": (per_sample, lambda xb, yb: (xb.to(dev, non_blocking=True),
                                                                        yb.to(dev, non_blocking=True)))}
    for batches, prepare in pipelines.values():  # warm-up: workers started, tensors on the device
        epoch(batches, prepare)
    samples: dict[str, int] = {}
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, (batches, prepare) in pipelines.items():
            samples[name], seconds = epoch(batches, prepare)
            rates[name].append(samples[name] / seconds)
    ratio = statistics.median(a / b for a, b in zip(rates["device_resident"], rates["per_sample_dataloader"],
                                                     strict=True))
    return {"n": n, "batch_size": batch_size, "workers": workers, "rounds": rounds, "device": device,
            "threads": torch.get_num_threads(), "samples_per_epoch": samples,
            "samples_per_s": {k: statistics.median(v) for k, v in rates.items()}, "ratio": ratio}


def format_data(result: dict) -> str:
    r = result["samples_per_s"]
    return "\n".join([
        f"data pipeline at CIFAR size (32×32×3, translation + flip, normalised), {result['n']} samples, "
        f"batch {result['batch_size']}, {result['device']}; per-sample DataLoader with {result['workers']} "
        f"workers; median of {result['rounds']} epochs", "",
        "| pipeline | samples/s |", "|---|---:|",
        f"| device-resident batches | {r['device_resident']:,.0f} |",
        f"| torchvision per-sample DataLoader | {r['per_sample_dataloader']:,.0f} |",
        f"| ratio | {result['ratio']:.1f}× |"]) + "\n"
