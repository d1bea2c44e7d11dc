"""DataModules on real files: digits' fixed split, and ImageNet's folder layout built on disk here."""

import numpy as np
import pytest
import torch
from PIL import Image

from vitstudy.data.base import DigitsDataModule, build_datamodule, random_shift
from vitstudy.data.folder import ImageNetDataModule


def test_digits_split_is_fixed_stratified_and_disjoint():
    a, b = DigitsDataModule(img_size=16), DigitsDataModule(img_size=16)
    a.setup()
    b.setup()
    sizes = {k: len(v) for k, v in a.splits.items()}
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    for k in a.splits:
        torch.testing.assert_close(a.splits[k].tensors[0], b.splits[k].tensors[0])
    assert a.splits["train"].tensors[0].shape[1:] == (1, 16, 16)
    counts = torch.bincount(a.splits["test"].tensors[1], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: 360 / 10 per class, ±1
    # disjoint: no test image appears in train
    train = {t.numpy().tobytes() for t in a.splits["train"].tensors[0]}
    assert not any(t.numpy().tobytes() in train for t in a.splits["test"].tensors[0][:50])


def test_random_shift_moves_each_image_by_at_most_the_shift():
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0  # a single bright pixel in the centre
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    rows, cols = (y[:, 0] == 1).nonzero()[:, 1], (y[:, 0] == 1).nonzero()[:, 2]
    assert ((rows - 4).abs() <= 2).all() and ((cols - 4).abs() <= 2).all()
    assert len({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}) > 5  # offsets vary


def _image_folder(root, classes=3, per_class=4, size=40):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / "imagenet" / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size, size + 5, 3), dtype=np.uint8)).save(d / f"{i}.JPEG",
                                                                                               format="PNG")


def test_imagenet_reads_the_standard_folder_layout(tmp_path):
    _image_folder(tmp_path)
    dm = build_datamodule("imagenet", img_size=32, batch_size=4, root=str(tmp_path), num_workers=0)
    assert isinstance(dm, ImageNetDataModule)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.long
    assert len(dm.splits["train"]) == 12 and dm.splits["test"] is dm.splits["val"]
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape == (4, 3, 32, 32) and yv.tolist() == [0, 0, 0, 0]  # sorted, class folder 0 first


def test_missing_imagenet_says_where_to_put_it(tmp_path):
    dm = build_datamodule("imagenet", img_size=32, batch_size=4, root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"imagenet/train.*imagenet/val.*cannot be downloaded"):
        dm.prepare_data()
