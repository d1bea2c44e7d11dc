"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) as tensors on the device, augmented in whole batches
(airbench, Jordan 2024): random translation (`data.shift`, a crop of the padded image) and a random
horizontal flip of every training batch. CIFAR-100 is the low-data benchmark of Li et al. 2021's
two-phase CMHSA training (ablations/cmhsa.yaml).

Splits, fixed and independent of the run seed: the last 5,000 of the 50,000 training images are the
validation split (45,000 train), the official 10,000 test images the test split. The files are
torchvision's: downloaded into `<data.root>` by `prepare_data` when online (one process per node; `setup`
only reads them); offline, the error names the folder and the files to put there.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitstudy.data.base import TensorDataModule

VAL_SIZE = 5000


class CifarDataModule(TensorDataModule):
    torchvision_class, folder, archive = "CIFAR10", "cifar-10-batches-py", "cifar-10-python.tar.gz"
    files = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
             "test_batch", "batches.meta")

    def __init__(self, img_size: int = 32, batch_size: int = 128, train_subset: int | None = None,
                 shift: int = 0, root: str = "data", flip: bool = True, **options):
        super().__init__(img_size, batch_size, train_subset, shift, flip=flip, **options)
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
        except (OSError, RuntimeError) as e:  # offline (URLError is an OSError), a corrupt archive, no files
            verb = "downloaded" if download else "read"
            raise FileNotFoundError(
                f"{self.torchvision_class} is not in {self.root / self.folder} and could not be {verb} "
                f"({type(e).__name__}: {e}). Offline, put the python-version files there: "
                f"{', '.join(self.files)} (the contents of {self.archive} from "
                "https://www.cs.toronto.edu/~kriz/cifar.html), or the archive itself in "
                f"{self.root}/, and set data.root if they live elsewhere") from None

    def load_key(self):
        return str(self.root.resolve()), VAL_SIZE  # its files do not change while a grid runs

    def load(self):
        train, test = self._datasets()

        def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255)  # (N, 3, 32, 32)
            return x, torch.tensor(ds.targets, dtype=torch.long)

        (x, y), test_xy = tensors(train), tensors(test)
        return {"train": (x[:-VAL_SIZE], y[:-VAL_SIZE]), "val": (x[-VAL_SIZE:], y[-VAL_SIZE:]),
                "test": test_xy}


class Cifar100DataModule(CifarDataModule):
    torchvision_class, folder, archive = "CIFAR100", "cifar-100-python", "cifar-100-python.tar.gz"
    files = ("train", "test", "meta")
