"""Absolute position encodings, added to the token sequence (class token included).

`learned`: one trained vector per token (ViT, Dosovitskiy et al. 2021); `sinusoid`: the fixed 1-D table
of Vaswani et al. 2017 over the token index, as T2T-ViT uses (Yuan et al. 2021); `none`: nothing, the
lower bound. Relative encodings live inside the mixers that use them.
Contract: `Position(dim, num_tokens)`, `forward(x: (B, N, C)) -> (B, N, C)`.
"""

from __future__ import annotations

import torch
from torch import nn


class LearnedPosition(nn.Module):
    def __init__(self, dim: int, num_tokens: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_embed


def sinusoid_table(num_tokens: int, dim: int) -> torch.Tensor:
    """(num_tokens, dim): sin on even channels, cos on odd, wavelengths 2π … 10000·2π."""
    pos = torch.arange(num_tokens, dtype=torch.float64)[:, None]  # (N, 1)
    i = torch.arange(dim, dtype=torch.float64)[None, :]  # (1, D)
    angle = pos / torch.pow(10000.0, 2 * (i // 2) / dim)  # (N, D)
    table = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


class SinusoidPosition(nn.Module):
    # A fixed table, not trained; still counted as parameters by `vitstudy.models.cost`, as in T2T-ViT's
    # published counts (its code stores the table as a frozen nn.Parameter).
    counted_buffers = ("pos_embed",)

    def __init__(self, dim: int, num_tokens: int):
        super().__init__()
        self.register_buffer("pos_embed", sinusoid_table(num_tokens, dim)[None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_embed


class NoPosition(nn.Module):
    def __init__(self, dim: int, num_tokens: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


