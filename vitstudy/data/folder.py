"""Datasets stored as class folders: `imagefolder` (any `<data.root>/{train,val[,test]}/<class>/*.png|jpg|…`)
and ImageNet-1k (`<data.root>/imagenet/{train,val}/<wnid>/*.JPEG`).

Labels are the sorted class-folder names of train/; val/ (and test/) must hold the same class folders.
Without test/, the test split is val/, as in every paper that reports ImageNet top-1. For `imagefolder` the
folder fixes the class count, not the registry: the manifest sets `model.num_classes`, the DataModule is
given it (vitstudy.data.base.datamodule_for), and setup checks the folder against it. `train_subset` keeps
a fixed random subset (folders are sorted by class, so the first N images would be a few classes only).

`imagefolder` picks its pipeline by size, recorded in `pipeline`: when all its images, decoded as float32
at the model's image size, fit in DEVICE_BYTES, they are decoded once (shorter side resized, centre crop)
and served from the device by TensorDataModule; otherwise, like ImageNet always, DataLoader workers decode
every sample every epoch (training: random-resized crop and flip; evaluation: resize to img_size/0.875
and centre crop).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from vitstudy.data.base import SPLIT_SEED, SplitDataModule, TensorDataModule, loader_workers

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Decoded sets up to 2 GiB go on the device: that fits beside the model on any ≥ 8 GB GPU, the one-time
# decode stays around a minute (~45k images at 64 px, ~90k at 32 px), and the float32 copies made while
# normalising (about 3× on the host during setup) fit a workstation's RAM. Larger sets stream from workers.
DEVICE_BYTES = 2 * 2**30

FOLDER_HELP = ("Put the images there as train/<class>/*.png|jpg|… and val/<class>/… (test/<class>/… "
               "optional, else val/ is also the test split), and set data.root to the folder that holds "
               "train/ and val/.")


def _size(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def _require(base: Path, what: str = "image folder", hint: str = FOLDER_HELP) -> None:
    """A missing train/ or val/ is an error that says what to put where."""
    missing = [s for s in ("train", "val") if not (base / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{what} not found: {', '.join(str(base / s) for s in missing)} missing. "
                                + hint.format(base=base))


def _folders(base: Path, what: str = "image folder", hint: str = FOLDER_HELP) -> dict:
    """torchvision ImageFolders for train, val and test (val/ again when there is no test/)."""
    from torchvision import datasets

    _require(base, what, hint)
    out = {"train": datasets.ImageFolder(str(base / "train")), "val": datasets.ImageFolder(str(base / "val"))}
    out["test"] = datasets.ImageFolder(str(base / "test")) if (base / "test").is_dir() else out["val"]
    for name, ds in out.items():
        if ds.classes != out["train"].classes:
            diff = sorted(set(ds.classes) ^ set(out["train"].classes))
            raise ValueError(f"{base / name} and {base / 'train'} must hold the same class folders; "
                             f"{len(diff)} differ: {', '.join(diff[:5])}")
    return out


def _train_indices(n: int, subset: int | None) -> list[int]:
    """The training images used: all, or a random `subset` fixed by SPLIT_SEED (not the run seed)."""
    if not subset:
        return list(range(n))
    return torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))[:subset].tolist()


def _check_classes(classes: list[str], num_classes: int, base: Path) -> None:
    """The folder's class count must be the one the DataModule was given (the model's)."""
    if num_classes != len(classes):
        raise ValueError(f"{base / 'train'} holds {len(classes)} class folders but the model has "
                         f"num_classes={num_classes}; set model.num_classes: {len(classes)} in the manifest")


def image_folder(img_size: int, batch_size: int = 128, train_subset: int | None = None, root: str = "data",
                 **options) -> L.LightningDataModule:
    """The `imagefolder` DataModule for `<root>/{train,val[,test]}/<class>/`: decoded onto the device when
    all its images fit in DEVICE_BYTES as float32 at img_size, else read by DataLoader workers."""
    data = _folders(Path(root))
    n = len(_train_indices(len(data["train"]), train_subset)) + len(data["val"])
    n += len(data["test"]) if data["test"] is not data["val"] else 0
    size = n * 3 * img_size**2 * 4
    args = dict(img_size=img_size, batch_size=batch_size, train_subset=train_subset, root=root, folders=data,
                **options)  # the folders as scanned here: a large tree is not walked twice
    if size <= DEVICE_BYTES:
        reason = f"{n} images at {img_size} px take {_size(size)} ≤ {_size(DEVICE_BYTES)}: decoded once"
        return DecodedImageFolderDataModule(reason=reason, **args)
    reason = f"{n} images at {img_size} px take {_size(size)} > {_size(DEVICE_BYTES)}: decoded per sample"
    return ImageFolderDataModule(reason=reason, **args)


class DecodedImageFolderDataModule(TensorDataModule):
    """A class-folder dataset decoded once (by the DataLoader workers): every image resized (shorter side,
    bicubic) and centre-cropped to img_size, then held as tensors like the other small datasets."""

    def __init__(self, img_size: int, batch_size: int = 128, train_subset: int | None = None,
                 root: str = "data", reason: str = "decoded once", folders: dict | None = None, **options):
        super().__init__(img_size, batch_size, train_subset, **options)
        self.base, self.reason, self.folders = Path(root), reason, folders

    def load(self):
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        data = self.folders or _folders(self.base)
        _check_classes(data["train"].classes, self.num_classes, self.base)
        tf = transforms.Compose([transforms.Resize(self.img_size, interpolation=InterpolationMode.BICUBIC),
                                 transforms.CenterCrop(self.img_size), transforms.ToTensor()])
        workers = self.num_workers if self.num_workers is not None else loader_workers()

        def decode(ds) -> tuple[torch.Tensor, torch.Tensor]:  # (N, 3, S, S) in [0, 1], (N,)
            batches = list(DataLoader(ds, batch_size=256, num_workers=workers))
            return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

        for ds in data.values():
            ds.transform = tf
        train = Subset(data["train"], _train_indices(len(data["train"]), self.train_subset))
        out = {"train": decode(train), "val": decode(data["val"])}
        out["test"] = out["val"] if data["test"] is data["val"] else decode(data["test"])
        return out

    def setup(self, stage: str | None = None) -> None:
        first = not self.splits
        super().setup(stage)
        if first:
            self.pipeline["reason"] = f"{self.reason}; {self.pipeline['reason']}"


class ImageFolderDataModule(SplitDataModule):
    """A class-folder dataset read by DataLoader workers, one sample at a time: random-resized crop
    (bicubic), horizontal flip and the recipe's per-image augmentation for training; resize to
    img_size/0.875 and centre crop for evaluation; normalised with ImageNet's mean and std. The batch
    augmentation of SplitDataModule follows on the device, as on the device path."""

    folder, what, hint = "", "image folder", FOLDER_HELP  # folder: under data.root

    def __init__(self, img_size: int = 224, batch_size: int = 256, train_subset: int | None = None,
                 root: str = "data", reason: str = "decoded per sample", folders: dict | None = None,
                 **options):
        super().__init__(img_size, batch_size, train_subset, **options)
        self.base, self.reason, self.folders = Path(root) / self.folder, reason, folders
        self.splits: dict = {}

    def prepare_data(self) -> None:
        _require(self.base, self.what, self.hint)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        data = self.folders or _folders(self.base, self.what, self.hint)
        _check_classes(data["train"].classes, self.num_classes, self.base)
        norm = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        data["train"].transform = transforms.Compose([
            transforms.RandomResizedCrop(self.img_size, interpolation=InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(), self.image_augment.transform(self.img_size, IMAGENET_MEAN),
            transforms.ToTensor(), norm])
        data["val"].transform = data["test"].transform = transforms.Compose([
            transforms.Resize(int(self.img_size / 0.875), interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(self.img_size), transforms.ToTensor(), norm])
        train = data["train"]
        if self.train_subset:
            train = Subset(train, _train_indices(len(train), self.train_subset))
        self.splits = {"train": train, "val": data["val"], "test": data["test"]}
        workers = self.num_workers if self.num_workers is not None else loader_workers()
        self.pipeline = {"mode": "workers", "reason": f"{self.reason} (num_workers={workers})"}

    def _loader(self, name: str, train: bool) -> DataLoader:
        return self.workers_loader(self.splits[name], train)


class ImageNetDataModule(ImageFolderDataModule):
    """ImageNet-1k from `<root>/imagenet/{train,val}/<wnid>/*.JPEG`, always read by DataLoader workers (1.28M
    images, ~700 GiB as float32 at 224 px). It cannot be downloaded automatically: a missing folder is an
    error that says where to put it."""

    folder, what = "imagenet", "ImageNet"
    hint = ("Put the standard layout under {base}/ (train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, val sorted "
            "into class folders); it cannot be downloaded automatically (image-net.org). `data.root` in the "
            "manifest sets the parent folder.")

    def __init__(self, img_size: int = 224, batch_size: int = 256, train_subset: int | None = None,
                 root: str = "data", **options):
        super().__init__(img_size, batch_size, train_subset, root,
                         reason="ImageNet: too large to hold decoded; decoded per sample", **options)
