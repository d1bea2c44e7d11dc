"""Training augmentation, split by where it can run.

Batch operations run on whole batches on the training device, after the batch is there, whatever
pipeline produced it: random translation (a crop of the padded image), horizontal flip, timm's random
erasing, and timm's Mixup/CutMix (in the LightningModule, since it changes the targets). Per-image
operations need PIL and one image at a time: timm's RandAugment and colour jitter. A dataset that could
live on the device as tensors is served by the per-sample pipeline (DataLoader workers) when one of those
is configured, and the choice is recorded (vitstudy.data.base).

Every draw is keyed by what it is for (common random numbers, vitstudy.models.seeding), never by the
global generators that model initialisation and dropout advance: the batch operations by (seed, epoch,
batch, rank) (the DataModule gives `BatchAugment` that key's seed), the per-image ones by (seed, epoch,
rank, position in the epoch) through `KeyedPositions` and `KeyedSamples`, whatever worker draws them.
So every variant of a grid trained with one seed sees the same augmented images, and a resumed run
draws what it would have drawn.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler

from vitstudy.models.seeding import drawing_from


def shift_and_flip(x: torch.Tensor, shift: int = 0, flip: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of a batch by its own random offset in [-shift, shift]² pixels (a random
    crop of the edge-padded image) and/or mirror it left-right with probability 1/2, on the batch's
    device: (B, C, H, W) -> (B, C, H, W). Both are index maps, so together they are one gather over the
    flattened pixels, with clamped (= edge-padded) and, for mirrored images, reversed column indices: no
    padded copy, no second pass for the flip (0.45 vs 3.2 ms for pad + a four-index gather + where, on
    256 CIFAR images on a 2-core CPU)."""
    B, C, H, W = x.shape
    rows = torch.arange(H, device=x.device).expand(B, H)
    cols = torch.arange(W, device=x.device).expand(B, W)
    if shift:
        dy, dx = torch.randint(0, 2 * shift + 1, (2, B), device=x.device, generator=generator)
        rows = (rows + (dy[:, None] - shift)).clamp_(0, H - 1)
        cols = (cols + (dx[:, None] - shift)).clamp_(0, W - 1)
    if flip:
        mirrored = torch.rand(B, device=x.device, generator=generator) < 0.5
        cols = torch.where(mirrored[:, None], cols.flip(-1), cols)
    if not (shift or flip):
        return x
    pixels = (rows[:, :, None] * W + cols[:, None, :]).view(B, 1, H * W).expand(B, C, H * W)
    return x.reshape(B, C, H * W).gather(2, pixels).view(B, C, H, W)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image of a batch left-right with probability 1/2 (see shift_and_flip)."""
    return shift_and_flip(x, 0, True, generator)


@dataclass(frozen=True)
class BatchAugment:
    """The batch operations of a training pipeline, applied in this order to normalised images."""

    shift: int = 0
    flip: bool = False
    erasing: float = 0.0  # timm RandomErasing probability per image (pixel mode: normal noise)

    def __bool__(self) -> bool:
        return bool(self.shift or self.flip or self.erasing)

    def __call__(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """The augmented batch, its draws from streams seeded by `seed` (None: from the global generators,
        as `vitstudy bench` times it)."""
        generator = torch.Generator(x.device).manual_seed(seed) if seed is not None else None
        out = shift_and_flip(x, self.shift, self.flip, generator)  # a new tensor unless both are off
        if self.erasing:
            from timm.data.random_erasing import RandomErasing

            # timm erases in place, image by image, drawing from Python's random and (the noise) from
            # torch's generator of the batch's device
            erase = RandomErasing(self.erasing, mode="pixel", device=x.device)
            with drawing_from(seed, "erasing", device=x.device) if seed is not None else nullcontext():
                out = erase(out if out is not x else x.clone())
        return out


class KeyedPositions(Sampler):
    """A training sampler whose items carry their draw key: (index, epoch, rank, position in this
    process's epoch), for `KeyedSamples`. Lightning sets its epoch, as a DistributedSampler's."""

    def __init__(self, sampler: Sampler, rank: int):
        self.sampler, self.rank, self.epoch = sampler, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((index, self.epoch, self.rank, position) for position, index in enumerate(self.sampler))

    def __len__(self) -> int:
        return len(self.sampler)


class KeyedSamples(Dataset):
    """A dataset whose per-image augmentation draws from streams seeded by (seed, epoch, rank, position)
    (the items of `KeyedPositions`), not from a DataLoader worker's generators: the same images whatever
    the number of workers, in every variant, and after a resume."""

    def __init__(self, data: Dataset, seed: int):
        self.data, self.seed = data, seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int, int, int]):
        index, *draws = key
        with drawing_from(self.seed, "sample", *draws):
            return self.data[index]


@dataclass(frozen=True)
class ImageAugment:
    """Per-image PIL operations (timm's RandAugment, torchvision's ColorJitter as timm uses it)."""

    randaugment: str | None = None
    color_jitter: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.randaugment or self.color_jitter)

    def transform(self, img_size: int, mean: tuple[float, ...]):
        """A PIL → PIL transform for images of side `img_size`; `mean` (in [0, 1]) fills the corners
        RandAugment's geometric ops uncover (timm's create_transform sets the same hyper-parameters)."""
        from torchvision import transforms

        ops = []
        if self.randaugment:
            from timm.data.auto_augment import rand_augment_transform

            fill = tuple(round(255 * m) for m in mean)
            ops.append(rand_augment_transform(self.randaugment, {"translate_const": int(0.45 * img_size),
                                                                 "img_mean": fill}))
        if self.color_jitter:
            ops.append(transforms.ColorJitter(*(self.color_jitter,) * 3))
        return transforms.Compose(ops)


def build_mixup(mixup: float, cutmix: float, prob: float, switch_prob: float, label_smoothing: float,
                num_classes: int):
    """timm's Mixup/CutMix on whole batches (mode "batch": one λ per batch, as DeiT), returning soft
    targets with label smoothing folded in; None when both are off."""
    if not (mixup or cutmix):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=prob, switch_prob=switch_prob, mode="batch",
                 label_smoothing=label_smoothing, num_classes=num_classes)
