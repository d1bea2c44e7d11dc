"""LightningDataModules: the base every dataset's module builds on, the choice between two ways of
feeding a model, and `datamodule_for`, the one place a RunSpec's data section becomes a DataModule.

Device-resident (`pipeline.mode == "device"`): a dataset small enough to hold (digits, MNIST, CIFAR, a
small image folder) is normalised and resized once, moved to the training device as two tensors, and
served as batches sliced by index there (`DeviceBatches`), augmented in whole batches on the device
(vitstudy.data.augment: translation, flip, random erasing; Mixup/CutMix in the LightningModule). No
per-sample Python, no host-to-device copy per step: airbench's recipe (Jordan 2024).
Per-sample (`"workers"`): DataLoader workers decode and transform one image at a time. Large datasets
(ImageNet) always take it; a small one takes it for its training split when the recipe asks for per-image
PIL operations (RandAugment, colour jitter), which have no batched form. Either way the training
batches then get the same batch operations on the device. The choice is automatic and recorded in the
run's metrics.json (`pipeline`).

Sampling is the same on both paths: a DistributedSampler (shuffled with the run seed and the epoch, one
shard per process under DDP) or timm's RepeatAugSampler for repeated augmentation, so both paths see the
same samples in the same order for the same seed and epoch, whatever the model. Augmentation draws are
keyed the same way (vitstudy.data.augment): training batch b of epoch e is augmented from a stream seeded
by (seed, e, b, rank), counted here as the batches arrive.

A dataset's class count and channels are its registry entry's (vitstudy.registry.DATASETS meta, which
the manifest validates with); a folder dataset is given the class count of the model it feeds. Every
DataModule serves images of `in_chans` channels with labels below `num_classes`, and says so in setup
when its data does not. Downloads happen in `prepare_data` (one process per node), splits in `setup`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, TensorDataset

from vitstudy.config.spec import RunSpec
from vitstudy.data.augment import BatchAugment, ImageAugment, KeyedPositions, KeyedSamples
from vitstudy.models.seeding import stable_seed

SPLIT_SEED = 0  # the data split never depends on the run seed
# epoch e of seed s shuffles with e + s·stride, so no two (seed, epoch) share an order (with s + e, seed 1's
# epoch 0 would be seed 0's epoch 1)
SEED_STRIDE = 100_003


class SeededEpochs(Sampler):
    """A sampler keyed by the epoch alone (timm's RepeatAugSampler) made to depend on the run seed too."""

    def __init__(self, sampler, seed: int):
        self.sampler, self.seed = sampler, seed

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch + self.seed * SEED_STRIDE)

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def epoch_sampler(n: int, train: bool, seed: int, rank: int = 0, world: int = 1,
                  repeated_aug: int = 1) -> Sampler:
    """Process `rank`'s indices of a split of n samples (see SplitDataModule.sampler); a packed run
    (vitstudy.training.pack) draws each member's order with it."""
    if train and repeated_aug > 1:
        from timm.data.distributed_sampler import RepeatAugSampler

        return SeededEpochs(RepeatAugSampler(range(n), num_replicas=world, rank=rank,
                                             num_repeats=repeated_aug), seed)
    return DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=train, seed=seed * SEED_STRIDE)


def augment_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """The seed of the augmentation draws of training batch `batch` of `epoch` on process `rank`."""
    return stable_seed(seed, "batch", epoch, batch, rank)


class DeviceBatches:
    """Batches sliced by index from (images, labels) tensors that live on the training device; an
    iterable Lightning consumes like a DataLoader. `sampler` gives the indices of one epoch (and this
    process's shard); `epoch()` keys its shuffle; `device()` says where the tensors go (moved once)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, sampler: Sampler,
                 device: Callable[[], torch.device] = lambda: torch.device("cpu"),
                 epoch: Callable[[], int] = lambda: 0):
        # `indices`, not `sampler`: Lightning would take an object with a sampler for a DataLoader
        self.x, self.y, self.batch_size, self.indices = x, y, batch_size, sampler
        self.device, self.epoch = device, epoch

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.device()
        if self.x.device != device:
            self.x, self.y = self.x.to(device), self.y.to(device)
        if hasattr(self.indices, "set_epoch"):
            self.indices.set_epoch(self.epoch())
        idx = torch.tensor(list(self.indices), dtype=torch.long, device=device)
        for start in range(0, len(idx), self.batch_size):
            j = idx[start:start + self.batch_size]
            yield self.x[j], self.y[j]


class PerSampleImages(Dataset):
    """The per-sample path for a dataset held as tensors: native-size uint8 images → PIL → per-image
    augmentation → tensor, normalised and resized exactly as the device path does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform, mean: float, std: float,
                 img_size: int):
        self.images, self.labels, self.transform = images, labels, transform  # images: (N, C, H, W) uint8
        self.mean, self.std, self.img_size = mean, std, img_size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms.functional import pil_to_tensor, to_pil_image

        img = self.transform(to_pil_image(self.images[i]))
        x = (pil_to_tensor(img).float().div_(255) - self.mean) / self.std
        return resize(x[None], self.img_size)[0], self.labels[i]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, S, S) → (B, C, size, size), bilinear (antialiased when shrinking); unchanged at size S."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=x.shape[-1] > size,
                         align_corners=False)


def loader_workers() -> int:
    """DataLoader workers when data.num_workers is unset: the usable cores, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # macOS
    return min(8, cores or 1)


class SplitDataModule(L.LightningDataModule):
    """A DataModule with train/val/test splits of (in_chans, img_size, img_size) images and labels below
    num_classes, served by `_loader(name, train)`, with the sampling and the batch augmentation both
    pipelines share. `pipeline` records how training batches are made."""

    def __init__(self, img_size: int, batch_size: int = 128, train_subset: int | None = None, shift: int = 0,
                 flip: bool = False, random_erasing: float = 0.0, randaugment: str | None = None,
                 color_jitter: float = 0.0, repeated_aug: int = 1, seed: int = 0,
                 num_workers: int | None = None, *, num_classes: int, in_chans: int):
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.img_size, self.batch_size, self.train_subset = img_size, batch_size, train_subset
        self.augment = BatchAugment(shift=shift, flip=flip, erasing=random_erasing)
        self.image_augment = ImageAugment(randaugment=randaugment, color_jitter=color_jitter)
        self.repeated_aug, self.seed, self.num_workers = repeated_aug, seed, num_workers
        self.pipeline: dict = {}
        self.splits: dict[str, Dataset] = {}
        self._batch_drawn = (-1, -1)  # (epoch, batch) of the last training batch augmented

    def _loader(self, name: str, train: bool):
        raise NotImplementedError

    def train_dataloader(self):
        self._batch_drawn = (-1, -1)  # a new fit counts its batches from the start
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def sampler(self, n: int, train: bool) -> Sampler:
        """This process's indices of a split of n samples: shuffled per (seed, epoch) for training,
        in order for evaluation; one shard per process under DDP (evaluation shards padded by repeats
        to equal length, as Lightning's own distributed sampler does)."""
        return epoch_sampler(n, train, self.seed, *self._rank_world(), repeated_aug=self.repeated_aug)

    def workers_loader(self, data: Dataset, train: bool) -> DataLoader:
        """The per-sample path: DataLoader workers over `data` with the shared sampler; for training, each
        sample's augmentation keyed by its position in the epoch (vitstudy.data.augment)."""
        workers = self.num_workers if self.num_workers is not None else loader_workers()
        sampler = self.sampler(len(data), train)
        if train:
            data, sampler = KeyedSamples(data, self.seed), KeyedPositions(sampler, self._rank_world()[0])
        return DataLoader(data, batch_size=self.batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)

    def split_sizes(self) -> dict[str, int]:
        """Images in each split as training and evaluation use them (after `train_subset`)."""
        return {name: len(self.splits[name]) for name in ("train", "val", "test")}

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """(images, labels) to `device`; device-resident batches are already there, and skip the
        generic collection walk Lightning would do on every step."""
        x, y = batch
        if x.device == device:
            return batch
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Training batches get the batch augmentation, drawn from a stream seeded by (seed, epoch,
        batch, rank): Lightning hands them over in order, so the batch is counted here."""
        if self.augment and self.trainer is not None and self.trainer.training:
            epoch, (last_epoch, last) = self._epoch(), self._batch_drawn
            self._batch_drawn = (epoch, last + 1 if epoch == last_epoch else 0)
            x, y = batch
            return self.augment(x, self.augment_seed(*self._batch_drawn)), y
        return batch

    def augment_seed(self, epoch: int, batch: int) -> int:
        """The seed of the augmentation draws of this process's training batch `batch` of `epoch`."""
        return augment_seed(self.seed, epoch, batch, self._rank_world()[0])


_LOADED: dict[tuple, dict] = {}  # TensorDataModule._loaded: (class, load key) -> load()'s splits


class TensorDataModule(SplitDataModule):
    """A dataset held as tensors: `load()` gives every split at native size; `setup` normalises
    (statistics of the training split) and resizes them to the model's size once. Training takes the
    per-sample path only when per-image PIL augmentation is configured; evaluation is always sliced
    from the device tensors."""

    def __init__(self, img_size: int, batch_size: int = 128, train_subset: int | None = None,
                 shift: int = 0, pipeline: str = "auto", **options):
        super().__init__(img_size, batch_size, train_subset, shift, **options)
        if pipeline not in ("auto", "device", "workers"):
            raise ValueError(f"pipeline must be auto, device or workers, got {pipeline!r}")
        self.force = pipeline
        self.splits: dict[str, TensorDataset] = {}  # normalised, at model size, on the CPU until served
        self.per_sample: PerSampleImages | None = None

    def load(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(images (N, C, S, S) in [0, 1] at native size, labels (N,)) for "train", "val", "test"."""
        raise NotImplementedError

    def load_key(self) -> tuple | None:
        """What `load()` depends on besides the class, for a dataset worth keeping between the cells of
        one process (a grid trains them all on one dataset: read and split it once); None: load anew."""
        return None

    def _loaded(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """`load()`, or the splits the last module with this class and load key loaded (at most one
        dataset is kept). setup never writes into these tensors, only makes new ones from them."""
        key = self.load_key()
        if key is None:
            return self.load()
        key = (type(self), *key)
        if key not in _LOADED:
            _LOADED.clear()
            _LOADED[key] = self.load()
        return dict(_LOADED[key])

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = self._loaded()
        self._check(raw)
        if self.train_subset:
            raw["train"] = tuple(t[: self.train_subset] for t in raw["train"])
        mean, std = raw["train"][0].mean().item(), raw["train"][0].std().item()  # of the training split
        for name, (x, y) in raw.items():
            self.splits[name] = TensorDataset(resize((x - mean) / std, self.img_size).contiguous(), y)
        x, y = raw["train"]
        mode = self.force if self.force != "auto" else "workers" if self.image_augment else "device"
        if mode == "workers":
            images = x.mul(255).round_().clamp_(0, 255).to(torch.uint8)  # exact for 8-bit sources
            transform = self.image_augment.transform(x.shape[-1], (mean,) * x.shape[1])
            self.per_sample = PerSampleImages(images, y, transform, mean, std, self.img_size)
        held = sum(t.element_size() * t.nelement() for s in self.splits.values() for t in s.tensors)
        self.pipeline = {
            "mode": mode,
            "reason": ("per-image RandAugment / colour jitter need PIL, one image at a time"
                       if mode == "workers" and self.image_augment else
                       f"{len(y)} training images held as tensors on the training device"
                       if mode == "device" else "forced"),
            "held_mib": round(held / 2**20, 1),
        }

    def _check(self, raw: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """The loaded images must have the channels, and the labels lie below the class count, of the
        model they are for."""
        for name, (x, y) in raw.items():
            top = int(y.max()) if len(y) else -1
            if x.shape[1] != self.in_chans or top >= self.num_classes:
                raise ValueError(f"{type(self).__name__}: the {name} split has {x.shape[1]}-channel images "
                                 f"and labels up to {top}, but the model takes {self.in_chans} channels "
                                 f"and {self.num_classes} classes")

    def _loader(self, name: str, train: bool):
        if train and self.per_sample is not None:
            return self.workers_loader(self.per_sample, train)
        x, y = self.splits[name].tensors
        return DeviceBatches(x, y, self.batch_size, self.sampler(len(y), train), self._device, self._epoch)


def build_datamodule(dataset: str, img_size: int, batch_size: int, train_subset: int | None = None,
                     shift: int = 0, root: str = "data", num_workers: int | None = None,
                     num_classes: int | None = None, **options) -> L.LightningDataModule:
    """The dataset's DataModule, with the channels and (unless `num_classes` is given: the model's) the
    class count of its registry entry; datasets read from disk also get their folder. `options`: the
    augmentation and sampling settings of SplitDataModule (flip, random_erasing, randaugment, ...)."""
    from vitstudy.registry import DATASETS

    meta = DATASETS.entry(dataset).meta
    num_classes = meta["num_classes"] if num_classes is None else num_classes
    if num_classes is None:
        raise ValueError(f"dataset '{dataset}' takes its classes from its folders: give num_classes "
                         "(model.num_classes in a manifest)")
    kwargs = dict(img_size=img_size, batch_size=batch_size, train_subset=train_subset, shift=shift,
                  num_workers=num_workers, num_classes=num_classes, in_chans=meta["in_chans"], **options)
    if meta.get("on_disk"):
        kwargs.update(root=root)
    return DATASETS.get(dataset)(**kwargs)


def datamodule_for(spec: RunSpec) -> L.LightningDataModule:
    """The DataModule a RunSpec trains on: its data section, the model's image size and class count,
    and the training recipe's augmentation and sampling."""
    d, t = spec.data, spec.train
    return build_datamodule(d.dataset, spec.model.img_size, d.batch_size, d.train_subset, d.shift, d.root,
                            d.num_workers, spec.model.num_classes, random_erasing=t.random_erasing,
                            randaugment=t.randaugment, color_jitter=t.color_jitter,
                            repeated_aug=t.repeated_aug, seed=spec.seed)
