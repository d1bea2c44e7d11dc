"""MNIST / Fashion-MNIST from idx files and `imagefolder` from PNG class folders, all written on disk here:
shapes, ranges, fixed splits, downloads in prepare_data only, offline errors, the device-or-workers
choice, and a grid cell trained on a folder."""

import gzip
import json
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from vitstudy.data import folder as data_folder
from vitstudy.data import mnist as data_mnist
from vitstudy.data.base import build_datamodule

N_TRAIN, N_TEST, VAL = 300, 100, 50


def _write_idx(raw, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's idx format: big-endian magic 2051 (uint8, 3 dims) / 2049 (uint8, 1 dim), sizes, data."""
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4i", 2051, *images.shape) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, len(labels)) + labels.tobytes())


@pytest.fixture(scope="module", params=["mnist", "fashion_mnist"])
def mnist_root(request, tmp_path_factory):
    """A few hundred random 28×28 images in `<root>/<MNIST|FashionMNIST>/raw/`, the layout torchvision checks."""
    root = tmp_path_factory.mktemp(request.param)
    raw = root / ("MNIST" if request.param == "mnist" else "FashionMNIST") / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        _write_idx(raw, prefix, images, labels)
        files[prefix] = images, labels
    return request.param, root, files


@pytest.fixture
def small_val(monkeypatch):
    monkeypatch.setattr(data_mnist, "VAL_SIZE", VAL)


def test_mnist_splits_shapes_and_values(mnist_root, small_val):
    name, root, files = mnist_root
    dm = build_datamodule(name, img_size=28, batch_size=64, root=str(root))
    raw = dm.load()
    assert {k: len(v[1]) for k, v in raw.items()} == {"train": N_TRAIN - VAL, "val": VAL, "test": N_TEST}
    x, y = raw["train"]
    assert x.shape == (N_TRAIN - VAL, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert 0 <= x.min() and x.max() <= 1 and set(y.tolist()) == set(range(10))
    # the last VAL training images are val, the t10k file is test, pixel for pixel
    images, labels = files["train"]
    torch.testing.assert_close(raw["val"][0][:, 0], torch.from_numpy(images[-VAL:]).float() / 255)
    assert raw["val"][1].tolist() == labels[-VAL:].tolist()
    torch.testing.assert_close(raw["test"][0][:, 0], torch.from_numpy(files["t10k"][0]).float() / 255)
    dm.setup()
    assert dm.pipeline["mode"] == "device"
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (64, 1, 28, 28) and yb.shape == (64,)


def test_mnist_split_does_not_depend_on_the_seed(mnist_root, small_val):
    name, root, _ = mnist_root
    a = build_datamodule(name, img_size=16, batch_size=64, root=str(root), seed=0)
    b = build_datamodule(name, img_size=16, batch_size=64, root=str(root), seed=7)
    a.setup()
    b.setup()
    for split in ("train", "val", "test"):
        torch.testing.assert_close(a.splits[split].tensors[0], b.splits[split].tensors[0])
        assert a.splits[split].tensors[0].shape[1:] == (1, 16, 16)


def test_prepare_data_downloads_only_what_no_place_holds(mnist_root, small_val, monkeypatch, tmp_path):
    """Lightning calls prepare_data in one process per node, setup in every process: only the first may
    download, and only when no place holds the files."""
    import torchvision.datasets as tvd

    name, root, files = mnist_root
    cls = getattr(tvd, "MNIST" if name == "mnist" else "FashionMNIST")
    calls = []
    monkeypatch.setattr(cls, "download", lambda self: calls.append(self.root))
    monkeypatch.setattr(data_mnist.FashionMnistDataModule, "system_dirs", ())
    dm = build_datamodule(name, img_size=28, batch_size=64, root=str(root))
    dm.prepare_data()
    dm.setup()
    assert calls == []  # the files are there
    torch.testing.assert_close(dm.splits["test"].tensors[1], torch.from_numpy(files["t10k"][1]).long())
    empty = build_datamodule(name, img_size=28, batch_size=64, root=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):  # the patched one fetched nothing
        empty.prepare_data()
    assert calls == [str(tmp_path / "empty")]


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_offline_mnist_says_where_it_looked(tmp_path, monkeypatch, name, folder):
    import torchvision.datasets as tvd

    # no network here: every mirror is a missing local file, so the download fails at once
    monkeypatch.setattr(getattr(tvd, folder), "mirrors", [f"file://{tmp_path}/offline/"])
    system = tmp_path / "usr-share"
    monkeypatch.setattr(data_mnist.FashionMnistDataModule, "system_dirs", (system,))
    dm = build_datamodule(name, img_size=28, batch_size=8, root=str(tmp_path / "data"))
    for step, why in ((dm.prepare_data, "could not be downloaded"), (dm.setup, "could not be read")):
        with pytest.raises(FileNotFoundError) as e:
            step()
        message = str(e.value)
        places = [tmp_path / "data" / folder / "raw", tmp_path / "data"] + ([system] if name != "mnist" else [])
        assert f"{folder} is in none of the places looked in ({', '.join(map(str, places))}) and {why}" in message
        assert all(f in message for f in data_mnist.FILES) and "http" in message
        assert ("apt-get install dataset-fashion-mnist" in message) == (name == "fashion_mnist")


def _gzip_tree(src, dst):
    """The idx files of `src` gzipped into `dst`, at another compression level than the originals had
    (as Debian's package recompressed Fashion-MNIST's)."""
    dst.mkdir(parents=True)
    for f in data_mnist.FILES:
        (dst / f"{f}.gz").write_bytes(gzip.compress((src / f).read_bytes(), compresslevel=1))


def test_gzipped_files_in_the_system_folder_are_found_when_data_root_holds_none(mnist_root, small_val,
                                                                                monkeypatch, tmp_path):
    name, root, files = mnist_root
    cls = data_mnist.MnistDataModule if name == "mnist" else data_mnist.FashionMnistDataModule
    system = tmp_path / "usr" / "share" / "datasets" / name
    _gzip_tree(root / cls.torchvision_class / "raw", system)
    monkeypatch.setattr(cls, "system_dirs", (system,))  # MNIST has no package; the mechanism is the same
    dm = build_datamodule(name, img_size=28, batch_size=64, root=str(tmp_path / "nothing-here"))
    dm.prepare_data()  # found: no download attempted (there is no network here)
    dm.setup()
    assert dm.pipeline["read_from"] == str(system)
    torch.testing.assert_close(dm.splits["test"].tensors[1], torch.from_numpy(files["t10k"][1]).long())
    raw = dm.load()
    torch.testing.assert_close(raw["val"][0][:, 0], torch.from_numpy(files["train"][0][-VAL:]).float() / 255)
    # a copy under data.root wins over the system's, also as plain files in data.root itself
    mine = tmp_path / "mine"
    mine.mkdir()
    for f in data_mnist.FILES:
        (mine / f).write_bytes((root / cls.torchvision_class / "raw" / f).read_bytes())
    images = files["t10k"][0].copy()
    images[0] = 255 - images[0]
    _write_idx(mine, "t10k", images, files["t10k"][1])  # a different first test image tells the copies apart
    dm = build_datamodule(name, img_size=28, batch_size=64, root=str(mine))
    dm.setup()
    assert dm.pipeline["read_from"] == str(mine)
    torch.testing.assert_close(dm.load()["test"][0][0, 0], torch.from_numpy(images[0]).float() / 255)


def test_a_bad_idx_file_names_itself_and_what_is_wrong(tmp_path):
    from vitstudy.data.idx import read_idx

    good = struct.pack(">4i", 2051, 2, 3, 3) + bytes(18)
    (tmp_path / "ok").write_bytes(good)
    assert read_idx(tmp_path / "ok", 3).shape == (2, 3, 3)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good[:-5]))
    with pytest.raises(ValueError, match=r"cut.gz: the header gives shape \(2, 3, 3\) \(18 bytes of data\) but "
                                         r"the file holds 13"):
        read_idx(tmp_path / "cut.gz", 3)
    with pytest.raises(ValueError, match=r"ok: not an idx file of 1-dimensional unsigned bytes \(magic "
                                         r"0x00000801\), header 00000803"):
        read_idx(tmp_path / "ok", 1)


DEBIAN = data_mnist.FashionMnistDataModule.system_dirs[0]
REQUIRE = os.environ.get("VITSTUDY_REQUIRE_FASHION_MNIST") == "1"  # CI installs the package: no skipping


@pytest.mark.skipif(not REQUIRE and not DEBIAN.is_dir(),
                    reason=f"no {DEBIAN} (apt-get install dataset-fashion-mnist)")
def test_the_real_fashion_mnist_from_the_debian_package(tmp_path):
    dm = build_datamodule("fashion_mnist", img_size=28, batch_size=128, root=str(tmp_path))
    dm.prepare_data()
    dm.setup()
    assert dm.pipeline["read_from"] == str(DEBIAN)
    assert dm.split_sizes() == {"train": 55000, "val": 5000, "test": 10000}
    raw = dm.load()
    for split, (x, y) in raw.items():
        assert x.shape[1:] == (1, 28, 28) and 0 <= x.min() and x.max() <= 1
        assert y.unique().tolist() == list(range(10)), split
    assert raw["test"][1].bincount().tolist() == [1000] * 10  # the official test set is balanced
    full = torch.cat([raw["train"][0], raw["val"][0]])
    assert abs(full.mean().item() - 0.2860) < 1e-3 and abs(full.std().item() - 0.3530) < 1e-3  # published
    assert raw["train"][1][:5].tolist() == [9, 0, 0, 3, 0]  # the first labels of the training file


# --- imagefolder ---------------------------------------------------------------------------------------
CLASSES, PER_CLASS = ("cat", "dog", "emu"), {"train": 6, "val": 3, "test": 2}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes of random 12×12 RGB PNGs (one grey 16×20 image among them) per train/val/test."""
    root = tmp_path_factory.mktemp("folder") / "pets"
    rng = np.random.default_rng(0)
    for split, n in PER_CLASS.items():
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (16, 20), dtype=np.uint8)).save(root / "train" / "emu" / "grey.png")
    return root


def _pixels(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def test_small_folder_is_decoded_onto_the_device(folder):
    dm = build_datamodule("imagefolder", img_size=12, batch_size=4, root=str(folder), num_classes=3)
    assert isinstance(dm, data_folder.DecodedImageFolderDataModule)
    raw = dm.load()
    assert {k: len(v[1]) for k, v in raw.items()} == {"train": 19, "val": 9, "test": 6}
    x, y = raw["train"]
    assert x.shape == (19, 3, 12, 12) and 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [0] * 6 + [1] * 6 + [2] * 7  # sorted class folders, sorted files
    torch.testing.assert_close(x[0], _pixels(folder / "train" / "cat" / "0.png"))
    assert x[18].std(0).max() == 0  # the grey image, cropped to 12×12, becomes three equal channels
    dm.setup()
    assert dm.pipeline["mode"] == "device" and "≤ 2 GiB: decoded once" in dm.pipeline["reason"]
    mean, std = x.mean(), x.std()
    torch.testing.assert_close(dm.splits["val"].tensors[0], (raw["val"][0] - mean) / std)
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (4, 3, 12, 12) and yb.dtype == torch.long


def test_without_test_folder_val_is_the_test_split(folder, tmp_path):
    import shutil

    shutil.copytree(folder / "train", tmp_path / "train")
    shutil.copytree(folder / "val", tmp_path / "val")
    dm = build_datamodule("imagefolder", img_size=8, batch_size=4, root=str(tmp_path), train_subset=5,
                          num_classes=3)
    raw = dm.load()
    assert raw["test"] is raw["val"] and len(raw["train"][1]) == 5
    assert len(set(raw["train"][1].tolist())) > 1  # a random subset, not the first class folder


def test_large_folder_is_read_by_workers(folder, monkeypatch):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    monkeypatch.setattr(data_folder, "DEVICE_BYTES", 0)
    dm = build_datamodule("imagefolder", img_size=12, batch_size=4, root=str(folder), num_workers=0,
                          num_classes=3)
    assert isinstance(dm, data_folder.ImageFolderDataModule)
    dm.setup()
    assert dm.pipeline["mode"] == "workers" and "> 0 MiB: decoded per sample" in dm.pipeline["reason"]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 12, 12) and y.dtype == torch.long and set(y.tolist()) <= {0, 1, 2}
    xv, yv = next(iter(dm.val_dataloader()))
    assert yv.tolist() == [0, 0, 0, 1]
    expected = transforms.Compose([transforms.Resize(13, interpolation=InterpolationMode.BICUBIC),
                                   transforms.CenterCrop(12), transforms.ToTensor(),
                                   transforms.Normalize(data_folder.IMAGENET_MEAN, data_folder.IMAGENET_STD)])
    torch.testing.assert_close(xv[0], expected(Image.open(folder / "val" / "cat" / "0.png").convert("RGB")))
    assert len(dm.splits["test"]) == 6


def test_folder_errors_say_what_is_wrong(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/val missing.*set data.root to the folder"):
        (tmp_path / "train").mkdir()
        build_datamodule("imagefolder", img_size=12, batch_size=4, root=str(tmp_path), num_classes=3)
    import shutil

    shutil.copytree(folder / "train", tmp_path / "x" / "train")
    shutil.copytree(folder / "val", tmp_path / "x" / "val")
    shutil.rmtree(tmp_path / "x" / "val" / "emu")
    with pytest.raises(ValueError, match=r"same class folders; 1 differ: emu"):
        build_datamodule("imagefolder", img_size=12, batch_size=4, root=str(tmp_path / "x"), num_classes=3)


GRID = """
name: pets
defaults:
  model: {{preset: vit_micro, img_size: 12, embed_dim: 16, depth: 1, num_heads: 2{classes}}}
  data: {{dataset: imagefolder, root: {root}, batch_size: 8}}
  train: {{epochs: 1, accelerator: cpu}}
  log: {{progress_bar: false}}
seeds: [0]
"""


def test_folder_manifest_needs_num_classes(folder, write_manifest):
    from vitstudy.config.manifest import ManifestError, load

    with pytest.raises(ManifestError, match=r"model.num_classes"):
        load(write_manifest(GRID.format(root=folder, classes="")))


@pytest.mark.parametrize("classes", [3, 4])
def test_folder_grid_cell_trains_or_names_the_class_mismatch(folder, write_manifest, tmp_path, classes):
    from vitstudy.config.manifest import load
    from vitstudy.training.run import run_cell

    grid = load(write_manifest(GRID.format(root=folder, classes=f", num_classes: {classes}")))
    (cell,) = grid.cells
    assert cell.spec.model.num_classes == classes and cell.spec.model.in_chans == 3
    record = run_cell(cell.spec, tmp_path / "run")
    assert record == json.loads((tmp_path / "run" / "metrics.json").read_text())
    if classes == 3:
        assert record["status"] == "done", record.get("error")
        assert 0 <= record["metrics"]["test/acc1"] <= 100
        assert record["pipeline"]["mode"] == "device" and "decoded once" in record["pipeline"]["reason"]
    else:
        assert record["status"] == "failed"
        assert "holds 3 class folders but the model has num_classes=4" in record["error"]["message"]
