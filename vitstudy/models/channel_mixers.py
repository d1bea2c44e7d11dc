"""Channel mixers: the second sub-layer of a block, which mixes the features of each token.

`mlp`: the transformer's feed-forward layer C → r·C → C with GELU (weight names fc1/fc2 as timm's).
`attention`: attention over the feature axis, the "attention-only" model of Melas-Kyriazi 2021 §3.4
(the feature MLP replaced by attention across features; the channels become the sequence, the T tokens
their width; one head, since T is usually prime; LayerNorm over the token axis; no code was released,
these are our choices). `none`: no channel mixer (the block has only its token mixer).
Contract, as token mixers: `ChannelMixer(dim, grid, num_prefix_tokens, ...)`, `forward(x: (B, N, C))`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from vitstudy.models.mixers.attention import Attention


class FeatureMLP(nn.Module):
    def __init__(self, dim: int, grid: tuple[int, int] | None = None, num_prefix_tokens: int = 0,
                 mlp_ratio: float = 4.0, act_layer: Callable[[], nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.act = act_layer()
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FeatureAttention(nn.Module):
    owns_norm = True

    def __init__(self, dim: int, grid: tuple[int, int], num_prefix_tokens: int):
        super().__init__()
        self.num_tokens = num_prefix_tokens + grid[0] * grid[1]
        self.norm = nn.LayerNorm(self.num_tokens, eps=1e-6)
        self.attn = Attention(self.num_tokens, grid, 0, num_heads=1)  # one head over the features (§3.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm(x.transpose(1, 2)), grid=None)  # (B, C, T): C features attend
        return y.transpose(1, 2)  # (B, T, C)


none = None  # the registry's "none" channel mixer: the block has no second sub-layer
