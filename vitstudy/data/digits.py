"""The two datasets that need no download, held as tensors on the device (TensorDataModule).

`digits`: scikit-learn's load_digits, 1,797 real 8×8 handwritten digits (Alpaydin & Kaynak 1998, UCI)
that ship with scikit-learn, so the default grid runs offline. A fixed stratified split (independent of
the run seed, so every cell sees the same test set): 1,257 train / 180 val / 360 test.
`synthetic`: one fixed random prototype image per class plus Gaussian noise; learnable and
deterministic at any image size, for smoke grids and benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitstudy.data.base import SPLIT_SEED, TensorDataModule


class DigitsDataModule(TensorDataModule):
    def load_key(self):
        return ()  # always the same images and split: loaded once per process

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
    """One prototype per class (`num_classes`: the model's, the registry's 10 unless a manifest sets
    another) of `in_chans` channels (3) at the model's image size, plus noise."""

    sizes = {"train": 1000, "val": 200, "test": 200}
    noise = 1.0  # standard deviation of the pixel noise added to a prototype

    def load_key(self):
        return self.num_classes, self.in_chans, self.img_size, tuple(self.sizes.items()), self.noise

    def load(self):
        g = torch.Generator().manual_seed(SPLIT_SEED)
        coarse = torch.randn(self.num_classes, self.in_chans, 4, 4, generator=g)
        protos = F.interpolate(coarse, size=(self.img_size,) * 2, mode="bilinear", align_corners=False)
        out = {}
        for name, n in self.sizes.items():
            y = torch.randint(self.num_classes, (n,), generator=g)
            out[name] = (protos[y] + self.noise * torch.randn(n, *protos.shape[1:], generator=g), y)
        return out
