"""Token mixers, one file each, registered by name in vitstudy/registry.py.

Contract: `Mixer(dim, grid, num_prefix_tokens, **options)`, `forward(x: (B, N, C), grid: (H, W)) ->
(B, N, C)` with N = num_prefix_tokens + H·W. The block adds the residual; the mixer only mixes.
Mixers that work on the 2-D token grid (conv, pool, dwsa's relative term) leave the prefix (class)
tokens out of the grid; `to_grid`/`from_grid` below do that one way for all.
A mixer whose own input normalisation is not the block's (e.g. over the token axis) sets
`owns_norm = True` and the block gives it its input un-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_grid(x: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """(B, p + H·W, C) -> the patch tokens as an image (B, C, H, W)."""
    B, _, C = x.shape
    return x[:, num_prefix_tokens:].transpose(1, 2).reshape(B, C, *grid)


def from_grid(y: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, p + H·W, C), prefix rows zero (the residual leaves those tokens as they were)."""
    y = y.flatten(2).transpose(1, 2)  # (B, HW, C)
    return F.pad(y, (0, 0, num_prefix_tokens, 0)) if num_prefix_tokens else y
