"""MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al. 2017): 28×28 grey images of 10 classes, held as
tensors on the device (TensorDataModule).

Splits, fixed and independent of the run seed: the last 5,000 of the 60,000 training images are the
validation split (55,000 train), the official 10,000 test images the test split.

The four idx files are read directly (vitstudy.data.idx: plain or gzipped, checked by their headers),
from the first of these places that holds all four: `<data.root>/<MNIST|FashionMNIST>/raw/`
(torchvision's layout), `<data.root>/` itself, then the system's copy (Debian's `dataset-fashion-mnist`
puts Fashion-MNIST's under /usr/share/datasets/fashion-mnist/; its recompressed archives fail
torchvision's checksums, so torchvision would refuse them and try to download). A copy under data.root
wins. Where none holds them, `prepare_data` (one process per node) downloads them into
`<data.root>/<MNIST|FashionMNIST>/raw/` through torchvision; offline, the error names every place it
looked, the files, and the package that provides them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitstudy.data.base import TensorDataModule
from vitstudy.data.idx import idx_file, read_idx

VAL_SIZE = 5000
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


class MnistDataModule(TensorDataModule):
    torchvision_class = "MNIST"
    source = "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror)"
    system_dirs: tuple[Path, ...] = ()  # where an operating-system package puts the files
    package = ""  # the command that installs that package

    def __init__(self, img_size: int = 28, batch_size: int = 128, train_subset: int | None = None,
                 root: str = "data", **options):
        super().__init__(img_size, batch_size, train_subset, **options)
        self.root = Path(root)

    def places(self) -> list[Path]:
        """Where the files are looked for, in order."""
        return [self.root / self.torchvision_class / "raw", self.root, *self.system_dirs]

    def files_dir(self) -> Path | None:
        """The first place that holds all four files (each plain or gzipped), or None."""
        return next((p for p in self.places() if all(idx_file(p, f) for f in FILES)), None)

    def prepare_data(self) -> None:
        """Download the files unless some place holds them (a module already set up has read them)."""
        if self.splits or self.files_dir() is not None:
            return
        import torchvision.datasets as tvd

        cls = getattr(tvd, self.torchvision_class)
        try:
            cls(str(self.root), train=True, download=True)  # fetches all four files into <root>/<cls>/raw
        except (OSError, RuntimeError) as e:  # offline: every mirror failed (RuntimeError), or a bad file
            raise self.missing(f"could not be downloaded ({type(e).__name__}: "
                               f"{' '.join(str(e).split())[:300]})") from None

    def missing(self, why: str) -> FileNotFoundError:
        where = ", ".join(str(p) for p in self.places())
        package = f"; or install the system's copy: {self.package}" if self.package else ""
        return FileNotFoundError(
            f"{self.torchvision_class} is in none of the places looked in ({where}) and {why}. Offline, put "
            f"the four idx files in {self.root / self.torchvision_class / 'raw'}: {', '.join(FILES)} "
            f"(uncompressed, or their .gz archives from {self.source}), or set data.root to the folder "
            f"that holds them{package}")

    def load_key(self):
        folder = self.files_dir()  # its files do not change while a grid runs
        return (str(folder.resolve()) if folder else None), VAL_SIZE

    def setup(self, stage: str | None = None) -> None:
        """TensorDataModule's setup; the run's record also says which place the files came from."""
        super().setup(stage)
        self.pipeline["read_from"] = str(self.files_dir())

    def load(self):
        folder = self.files_dir()
        if folder is None:
            raise self.missing("could not be read")

        def tensors(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
            x = read_idx(idx_file(folder, f"{prefix}-images-idx3-ubyte"), 3)  # (N, 28, 28) uint8
            y = read_idx(idx_file(folder, f"{prefix}-labels-idx1-ubyte"), 1)  # (N,)
            if len(x) != len(y):
                raise ValueError(f"{folder}: {len(x)} {prefix} images but {len(y)} labels")
            return torch.from_numpy(x.copy()).unsqueeze(1).float().div_(255), torch.from_numpy(y.astype(int))

        (x, y), test_xy = tensors("train"), tensors("t10k")
        return {"train": (x[:-VAL_SIZE], y[:-VAL_SIZE]), "val": (x[-VAL_SIZE:], y[-VAL_SIZE:]),
                "test": test_xy}


class FashionMnistDataModule(MnistDataModule):
    torchvision_class = "FashionMNIST"
    source = "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)"
    system_dirs = (Path("/usr/share/datasets/fashion-mnist"),)
    package = "apt-get install dataset-fashion-mnist (Debian, Ubuntu)"
