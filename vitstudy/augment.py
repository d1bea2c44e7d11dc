"""Training augmentation, split by where it can run.

Batch operations run on whole batches on the training device, after the batch is there, whatever
pipeline produced it: random translation (a crop of the padded image), horizontal flip, timm's random
erasing, and timm's Mixup/CutMix (in the LightningModule, since it changes the targets). Per-image
operations need PIL and one image at a time: timm's RandAugment and colour jitter. A dataset that could
live on the device as tensors is served by the per-sample pipeline (DataLoader workers) when one of those
is configured, and the choice is recorded (vitstudy.data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of a batch by its own random offset in [-shift, shift]² pixels: a random
    crop of the replicate-padded image, done for the whole batch in one gather on its device."""
    B, C, H, W = x.shape
    padded = F.pad(x, (shift,) * 4, mode="replicate")  # (B, C, H+2s, W+2s)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, B, 1), device=x.device, generator=generator)
    rows = (dy + torch.arange(H, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx + torch.arange(W, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[b, c, rows, cols]  # (B, C, H, W)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image of a batch left-right with probability 1/2: (B, C, H, W) -> (B, C, H, W)."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=generator) < 0.5
    return torch.where(flip, x.flip(-1), x)


@dataclass(frozen=True)
class BatchAugment:
    """The batch operations of a training pipeline, applied in this order to normalised images."""

    shift: int = 0
    flip: bool = False
    erasing: float = 0.0  # timm RandomErasing probability per image (pixel mode: normal noise)

    def __bool__(self) -> bool:
        return bool(self.shift or self.flip or self.erasing)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift:
            x = random_shift(x, self.shift)
        if self.flip:
            x = random_flip(x)
        if self.erasing:
            from timm.data.random_erasing import RandomErasing

            # timm erases in place, image by image, with noise drawn on the batch's device
            x = RandomErasing(self.erasing, mode="pixel", device=x.device)(x.clone())
        return x


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
