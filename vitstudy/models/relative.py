"""Learned 2-D relative position bias, one table per head (Shaw et al. 2018; Swin, Liu et al. 2021;
BEiT's prefix-token entries). Zhou et al. 2023 find that with relative position, softmax in ViT can be
replaced by ReLU or LayerNorm. The bias for query i and key j depends only on their offset on the
token grid: b[h, i, j] = table[h, Δrow(i, j), Δcol(i, j)], added to the scores before the normaliser.
Class (prefix) tokens have no grid position; they get three learned scalars per head: prefix→patch,
patch→prefix and prefix→prefix.
"""

from __future__ import annotations

import torch
from torch import nn


class RelativePositionBias(nn.Module):
    def __init__(self, num_heads: int, grid: tuple[int, int], num_prefix_tokens: int = 0):
        super().__init__()
        H, W = grid
        self.num_heads, self.grid, self.num_prefix_tokens = num_heads, grid, num_prefix_tokens
        self.table = nn.Parameter(torch.empty((2 * H - 1) * (2 * W - 1), num_heads))
        rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, HW)
        rel = coords[:, :, None] - coords[:, None, :]  # (2, HW, HW): offset query − key
        index = (rel[0] + H - 1) * (2 * W - 1) + (rel[1] + W - 1)  # (HW, HW) into the table
        self.register_buffer("index", index, persistent=False)
        self.prefix = nn.Parameter(torch.empty(3, num_heads)) if num_prefix_tokens else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.table, std=0.02)
        if self.prefix is not None:
            nn.init.zeros_(self.prefix)

    def forward(self) -> torch.Tensor:
        """The bias (h, N, N), N = num_prefix_tokens + H·W."""
        bias = self.table[self.index].permute(2, 0, 1)  # (h, HW, HW)
        p = self.num_prefix_tokens
        if not p:
            return bias
        h, n = self.num_heads, bias.shape[-1]
        to_patch, from_patch, among = (self.prefix[i][:, None, None] for i in range(3))  # (h, 1, 1)
        top = torch.cat([among.expand(h, p, p), to_patch.expand(h, p, n)], dim=-1)  # (h, p, N)
        rest = torch.cat([from_patch.expand(h, n, p), bias], dim=-1)  # (h, HW, N)
        return torch.cat([top, rest], dim=1)  # (h, N, N)
