"""The feed-forward layer over the token axis of Melas-Kyriazi 2021 ("Do You Even Need Attention?"),
as in the official code (lukemelas/do-you-even-need-attention, LinearBlock):

    x = x + mlp_tokens(layernorm_T(xᵀ))ᵀ,   layernorm over the token axis (normalized_shape = T),
                                            mlp over tokens T → r·T → T with GELU (r = 4 by default).

The class token is kept and mixed like any other token, so the layer is fixed to one token count T:
the model only takes the image size it was built for. The block runs the feature MLP first
(`block_order: mlp_first`), the reverse of MLP-Mixer. This mixer owns its (token-axis) norm.
"""

from __future__ import annotations

import torch
from torch import nn

from vitstudy.models.channel_mixers import FeatureMLP


class PatchMLP(nn.Module):
    owns_norm = True

    def __init__(self, dim: int, grid: tuple[int, int], num_prefix_tokens: int,
                 token_mlp_ratio: float = 4.0):
        super().__init__()
        self.num_tokens = num_prefix_tokens + grid[0] * grid[1]
        self.norm = nn.LayerNorm(self.num_tokens, eps=1e-6)
        self.mlp = FeatureMLP(self.num_tokens, mlp_ratio=token_mlp_ratio)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if x.shape[1] != self.num_tokens:
            raise ValueError(f"patch_mlp is built for {self.num_tokens} tokens and got {x.shape[1]}: "
                             "it only takes the image size it was built for")
        y = self.mlp(self.norm(x.transpose(1, 2)))  # (B, C, T): tokens are the features here
        return y.transpose(1, 2)  # (B, T, C)
