"""LightningDataModules. Small datasets are held as tensors and served in whole batches by index
(no per-sample Python pipeline), following airbench.

`digits`: scikit-learn's load_digits, 1,797 real 8×8 handwritten digits (Alpaydin & Kaynak, UCI) that
ship with scikit-learn, so the default grid runs offline. A fixed stratified split (independent of the
run seed, so every cell sees the same test set): 1,257 train / 180 val / 360 test.
`synthetic`: one fixed random prototype image per class plus Gaussian noise; learnable and
deterministic at any image size, for smoke grids and benchmarks.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

SPLIT_SEED = 0  # the data split never depends on the run seed


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


class SplitDataModule(L.LightningDataModule):
    """A DataModule whose three splits are served by one `_loader(name, shuffle)`."""

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class TensorDataModule(SplitDataModule):
    """Serves (images, labels) tensors for train/val/test in batches sliced by index; training
    batches are augmented on the device after transfer (`shift`: random translation in pixels)."""

    num_classes: int
    in_chans: int

    def __init__(self, img_size: int, batch_size: int = 128, train_subset: int | None = None,
                 shift: int = 0):
        super().__init__()
        self.img_size, self.batch_size, self.train_subset = img_size, batch_size, train_subset
        self.shift = shift
        self.splits: dict[str, TensorDataset] = {}

    def load(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(images (N, C, S, S) at native size, labels (N,)) for "train", "val", "test"."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = self.load()
        mean, std = raw["train"][0].mean(), raw["train"][0].std()  # statistics of the training split
        for name, (x, y) in raw.items():
            if name == "train" and self.train_subset:
                x, y = x[: self.train_subset], y[: self.train_subset]
            x = (x - mean) / std
            if x.shape[-1] != self.img_size:
                x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear",
                                  antialias=x.shape[-1] > self.img_size, align_corners=False)
            self.splits[name] = TensorDataset(x.contiguous(), y)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.shift and self.trainer is not None and self.trainer.training:
            x, y = batch
            return random_shift(x, self.shift), y
        return batch

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        data = self.splits[name]
        sampler = RandomSampler(data) if shuffle else SequentialSampler(data)
        # batch_size=None: the dataset is indexed with a whole list of indices, one slice per batch
        return DataLoader(data, sampler=BatchSampler(sampler, self.batch_size, drop_last=False),
                          batch_size=None)



class DigitsDataModule(TensorDataModule):
    num_classes, in_chans = 10, 1

    def load(self):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
        y = torch.tensor(digits.target, dtype=torch.long)
        idx = torch.arange(len(y)).numpy()
        rest, test = train_test_split(idx, test_size=360, stratify=y, random_state=SPLIT_SEED)
        train, val = train_test_split(rest, test_size=180, stratify=y[rest], random_state=SPLIT_SEED)
        return {name: (x[i], y[i]) for name, i in (("train", train), ("val", val), ("test", test))}


class SyntheticDataModule(TensorDataModule):
    num_classes, in_chans = 10, 3
    sizes = {"train": 1000, "val": 200, "test": 200}

    def __init__(self, img_size: int, batch_size: int = 128, train_subset: int | None = None,
                 shift: int = 0, noise: float = 1.0):
        super().__init__(img_size, batch_size, train_subset, shift)
        self.noise = noise

    def load(self):
        g = torch.Generator().manual_seed(SPLIT_SEED)
        coarse = torch.randn(self.num_classes, self.in_chans, 4, 4, generator=g)
        protos = F.interpolate(coarse, size=(self.img_size,) * 2, mode="bilinear", align_corners=False)
        out = {}
        for name, n in self.sizes.items():
            y = torch.randint(self.num_classes, (n,), generator=g)
            out[name] = (protos[y] + self.noise * torch.randn(n, *protos.shape[1:], generator=g), y)
        return out


def build_datamodule(dataset: str, img_size: int, batch_size: int, train_subset: int | None = None,
                     shift: int = 0, root: str = "data", num_workers: int = 0) -> L.LightningDataModule:
    """The dataset's DataModule; datasets read from disk also get their folder and loader workers."""
    from vitstudy.registry import DATASETS

    kwargs = dict(img_size=img_size, batch_size=batch_size, train_subset=train_subset, shift=shift)
    if DATASETS.entry(dataset).meta.get("on_disk"):
        kwargs.update(root=root, num_workers=num_workers)
    return DATASETS.get(dataset)(**kwargs)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageNetDataModule(SplitDataModule):
    """ImageNet-1k from the standard folder layout `<root>/imagenet/{train,val}/<wnid>/*.JPEG`,
    read by DataLoader workers (too large to hold as tensors). Training: random-resized crop
    (bicubic) and horizontal flip; evaluation: resize to img_size/0.875 and centre crop. The test
    split is the validation set, as in every paper that reports ImageNet top-1. ImageNet cannot be
    downloaded automatically: a missing folder is an error that says where to put it."""

    num_classes, in_chans = 1000, 3

    def __init__(self, img_size: int = 224, batch_size: int = 256, train_subset: int | None = None,
                 shift: int = 0, root: str = "data", num_workers: int = 8):
        super().__init__()
        self.img_size, self.batch_size, self.train_subset = img_size, batch_size, train_subset
        self.root, self.num_workers = root, num_workers
        self.splits: dict = {}

    def prepare_data(self) -> None:
        from pathlib import Path

        base = Path(self.root) / "imagenet"
        missing = [s for s in ("train", "val") if not (base / s).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"ImageNet not found: {', '.join(str(base / s) for s in missing)} missing. Put the "
                f"standard layout under {base}/ (train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, val sorted "
                "into class folders); it cannot be downloaded automatically (image-net.org). "
                "`data.root` in the manifest sets the parent folder.")

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from pathlib import Path

        from torchvision import datasets, transforms
        from torchvision.transforms import InterpolationMode

        self.prepare_data()
        norm = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_tf = transforms.Compose([
            transforms.RandomResizedCrop(self.img_size, interpolation=InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
        eval_tf = transforms.Compose([
            transforms.Resize(int(self.img_size / 0.875), interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(self.img_size), transforms.ToTensor(), norm])
        base = Path(self.root) / "imagenet"
        train = datasets.ImageFolder(str(base / "train"), transform=train_tf)
        if self.train_subset:
            train = torch.utils.data.Subset(train, range(min(self.train_subset, len(train))))
        val = datasets.ImageFolder(str(base / "val"), transform=eval_tf)
        self.splits = {"train": train, "val": val, "test": val}

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.splits[name], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0, drop_last=shuffle)

