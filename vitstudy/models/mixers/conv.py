"""Convolution over the token grid: the phase-1 mixer of Li et al. 2021 ("Can Vision Transformers
Perform Convolution?"), where every self-attention layer is replaced by a K×K convolution; full
(C → C) or depthwise. Class tokens are not on the grid and are left unmixed: use a `gap` head."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vitstudy.models.mixers import from_grid, to_grid


class ConvMixer(nn.Module):
    def __init__(self, dim: int, grid: tuple[int, int], num_prefix_tokens: int, kernel_size: int = 3,
                 conv_groups: Literal["full", "depthwise"] = "full"):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size output), got {kernel_size}")
        self.num_prefix_tokens = num_prefix_tokens
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2,
                              groups=dim if conv_groups == "depthwise" else 1)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        y = self.conv(to_grid(x, grid, self.num_prefix_tokens))  # (B, C, H, W)
        return from_grid(y, self.num_prefix_tokens)  # (B, N, C)
