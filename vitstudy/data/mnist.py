"""MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al. 2017): 28×28 grey images of 10 classes, held as
tensors on the device (TensorDataModule).

Splits, fixed and independent of the run seed: the last 5,000 of the 60,000 training images are the
validation split (55,000 train), the official 10,000 test images the test split. The files are
torchvision's: downloaded into `<data.root>/<MNIST|FashionMNIST>/raw/` by `prepare_data` when online (one
process per node; `setup` only reads them); offline, the error names that folder and the four idx files
to put there.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitstudy.data.base import TensorDataModule

VAL_SIZE = 5000
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


class MnistDataModule(TensorDataModule):
    torchvision_class = "MNIST"
    source = "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror)"

    def __init__(self, img_size: int = 28, batch_size: int = 128, train_subset: int | None = None,
                 root: str = "data", **options):
        super().__init__(img_size, batch_size, train_subset, **options)
        self.root = Path(root)

    def prepare_data(self) -> None:
        """Download the files unless they are there (a module already set up has read them)."""
        if not self.splits:
            self._datasets(download=True)

    def _datasets(self, download: bool = False):
        import torchvision.datasets as tvd

        cls = getattr(tvd, self.torchvision_class)
        try:
            return cls(str(self.root), train=True, download=download), cls(str(self.root), train=False)
        except (OSError, RuntimeError) as e:  # offline: every mirror failed (RuntimeError), or a bad file
            raw, verb = self.root / self.torchvision_class / "raw", "downloaded" if download else "read"
            raise FileNotFoundError(
                f"{self.torchvision_class} is not in {raw} and could not be {verb} "
                f"({type(e).__name__}: {' '.join(str(e).split())[:300]}). Offline, put the four idx files "
                f"there: {', '.join(FILES)} (uncompressed, or their .gz archives from "
                f"{self.source}), or set data.root to the folder that holds "
                f"{self.torchvision_class}/raw/") from None

    def load_key(self):
        return str(self.root.resolve()), VAL_SIZE  # its files do not change while a grid runs

    def load(self):
        train, test = self._datasets()

        def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
            return ds.data.unsqueeze(1).float().div_(255), ds.targets.long()  # (N, 1, 28, 28), (N,)

        (x, y), test_xy = tensors(train), tensors(test)
        return {"train": (x[:-VAL_SIZE], y[:-VAL_SIZE]), "val": (x[-VAL_SIZE:], y[-VAL_SIZE:]),
                "test": test_xy}


class FashionMnistDataModule(MnistDataModule):
    torchvision_class = "FashionMNIST"
    source = "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)"
