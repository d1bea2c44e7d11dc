"""Tokenizers: how an image becomes a sequence of tokens on a 2-D grid.

`patch`: the hard split of ViT (Dosovitskiy et al. 2021): non-overlapping p×p patches, each projected
linearly to the model width (a p×p convolution with stride p).
Contract: `Tokenizer(img_size, patch_size, in_chans, embed_dim)` with attributes `grid` (H, W) and
`num_patches`; `forward(img: (B, C, H, W)) -> (tokens: (B, H·W, D), grid: (H, W))`.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        B, C, H, W = img.shape
        if (H, W) != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}×{self.img_size} images, got {H}×{W}")
        x = self.proj(img)  # (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2), self.grid  # (B, N, D)
