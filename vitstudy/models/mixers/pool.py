"""Average pooling minus identity (PoolFormer, Yu et al. 2022, "MetaFormer Is Actually What You Need"):
a parameter-free token mixer, the lower bound that asks how much of a ViT is its general shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitstudy.models.mixers import from_grid, to_grid


class PoolMixer(nn.Module):
    def __init__(self, dim: int, grid: tuple[int, int], num_prefix_tokens: int, pool_size: int = 3):
        super().__init__()
        if pool_size % 2 == 0:
            raise ValueError(f"pool_size must be odd (same-size output), got {pool_size}")
        self.num_prefix_tokens, self.pool_size = num_prefix_tokens, pool_size

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        g = to_grid(x, grid, self.num_prefix_tokens)  # (B, C, H, W)
        pooled = F.avg_pool2d(g, self.pool_size, stride=1, padding=self.pool_size // 2,
                              count_include_pad=False)
        return from_grid(pooled - g, self.num_prefix_tokens)  # (B, N, C)
