"""LeCun's idx format (MNIST, Fashion-MNIST), read directly: plain or gzipped files, checked by their
own header rather than by an archive checksum (Debian's dataset-fashion-mnist recompressed the .gz files,
so their checksums differ from the upstream ones torchvision insists on, while the content is the same).

Header, big-endian: two zero bytes, a type code (0x08: unsigned byte, the only one these datasets use),
the number of dimensions, then one 4-byte size per dimension; the data follows, row-major.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

UBYTE = 0x08


def idx_file(folder: Path, name: str) -> Path | None:
    """`folder/name` or `folder/name.gz`, whichever exists (the plain file first)."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The array an idx file holds, of `ndim` dimensions (3 for images, 1 for labels), as uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != UBYTE or data[3] != ndim:
        raise ValueError(f"{path}: not an idx file of {ndim}-dimensional unsigned bytes (magic "
                         f"0x{0x800 + ndim:08x}), header {data[:4].hex() or 'empty'}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    start, size = 4 + 4 * ndim, int(np.prod(shape))
    if len(data) != start + size:
        raise ValueError(f"{path}: the header gives shape {shape} ({size:,} bytes of data) but the file "
                         f"holds {len(data) - start:,}: truncated or not this dataset")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape)
