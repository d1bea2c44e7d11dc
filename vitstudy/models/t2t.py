"""Tokens-to-Token tokenizer `t2t` (Yuan et al. 2021, "Tokens-to-Token ViT"; official code
yitu-opensource/T2T-ViT, models/t2t_vit.py, token_performer.py, token_transformer.py).

Instead of one hard split, the image is soft-split (overlapping windows) again and again; between two
splits a T2T layer re-mixes the tokens and narrows them to a small width, and the tokens are folded back
into an image for the next split. At 224 px with the paper's splits:

    image (B, 3, 224, 224)
      soft split 0: Unfold(7, 4, 2)           -> (B, 3136, 147)    56×56 grid, 3·7·7 values per token
      T2T layer 147 -> 64, fold to an image   -> (B, 64, 56, 56)
      soft split 1: Unfold(3, 2, 1)           -> (B, 784, 576)     28×28 grid, 64·3·3 values
      T2T layer 576 -> 64, fold to an image   -> (B, 64, 28, 28)
      soft split 2: Unfold(3, 2, 1)           -> (B, 196, 576)     14×14 grid
      linear projection 576 -> D              -> (B, 196, D)

What varies (ModelSpec `t2t_*` options): the T2T layer (`performer`: single-head Performer with fixed
random features, the `t2t_vit_*` models; `transformer`: single-head softmax attention with MLP ratio 1,
the `t2t_vit_t_*` models), the token width (64), the number of random features (32), and the kernels,
strides and paddings of the splits (any number of splits; `soft_split.py` refuses chains whose grid is not
whole). Both T2T layers change the width, so their skip connection is `v + proj(attention)`, not
`x + ...`. Details follow the official code: LayerNorm eps 1e-5, the Performer's kqv has a bias and its
projection and MLP output have dropout 0.1; the transformer layer's qkv has no bias and its scale is
(input width)^-1/2. The Performer's random matrix is a persistent buffer (saved in checkpoints, never
trained); `counted_buffers` tells `vitstudy.models.cost` to count it, as the paper's parameter counts do (the
official code stores it as a frozen nn.Parameter).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from vitstudy.config.soft_split import soft_split_sides


class TokenPerformer(nn.Module):
    """Single-head Performer layer (Choromanski et al. 2021, FAVOR+ with positive random features) that
    maps tokens of width `in_dim` to width `dim`. Cost is linear in the number of tokens N."""

    counted_buffers = ("features",)

    def __init__(self, in_dim: int, dim: int, num_features: int = 32, dropout: float = 0.1):
        super().__init__()
        self.dim, self.num_features, self.eps = dim, num_features, 1e-8
        self.norm1 = nn.LayerNorm(in_dim)
        self.kqv = nn.Linear(in_dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim, drop=(0.0, dropout))
        self.register_buffer("features", torch.empty(num_features, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draws the fixed random projection ω (m, dim): orthogonal rows scaled by √m, as the official code
        (the layers are initialised as such)."""
        nn.init.orthogonal_(self.features)
        self.features.mul_(math.sqrt(self.num_features))

    def positive_features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x) = exp(ωx − |x|²/2) / √m, so that E[φ(q)·φ(k)] = exp(q·k)."""
        wx = x @ self.features.T  # (B, N, m)
        return torch.exp(wx - x.square().sum(-1, keepdim=True) / 2) / math.sqrt(self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, q, v = self.kqv(self.norm1(x)).split(self.dim, dim=-1)  # (B, N, dim) each
        kp, qp = self.positive_features(k), self.positive_features(q)  # (B, N, m) each
        norm = qp @ kp.sum(dim=1)[:, :, None]  # (B, N, 1): φ(q_i)·Σ_j φ(k_j)
        kv = v.transpose(1, 2) @ kp  # (B, dim, m): Σ_j v_j φ(k_j)ᵀ
        y = (qp @ kv.transpose(1, 2)) / (norm + self.eps)  # (B, N, dim)
        x = v + self.drop(self.proj(y))  # the width changed: v is the skip connection
        return x + self.mlp(self.norm2(x))


class TokenTransformer(nn.Module):
    """Single-head softmax-attention layer with MLP ratio 1 that maps width `in_dim` to `dim`."""

    def __init__(self, in_dim: int, dim: int, mlp_ratio: float = 1.0):
        super().__init__()
        self.scale = in_dim ** -0.5  # the official code's head_dim is the input width (one head)
        self.norm1 = nn.LayerNorm(in_dim)
        self.qkv = nn.Linear(in_dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).unsqueeze(1).chunk(3, dim=-1)  # (B, 1, N, dim) each: one head
        o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, 1, N, dim); fused where it can
        x = (v + self.proj(o)).squeeze(1)  # (B, N, dim); the width changed: v is the skip connection
        return x + self.mlp(self.norm2(x))


T2T_LAYERS = {"performer": TokenPerformer, "transformer": TokenTransformer}


class T2TEmbed(nn.Module):
    """Soft split → (T2T layer → fold → soft split)* → linear projection to `embed_dim`.
    Same contract as PatchEmbed; `patch_size` must equal the product of the strides (the total stride)."""

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        *,
        layer: str = "performer",
        token_dim: int = 64,
        kernels: tuple[int, ...] = (7, 3, 3),
        strides: tuple[int, ...] = (4, 2, 2),
        paddings: tuple[int, ...] = (2, 1, 1),
        num_features: int = 32,
    ):
        super().__init__()
        self.sides = soft_split_sides(img_size, kernels, strides, paddings)  # e.g. [56, 28, 14]
        if patch_size != math.prod(strides):
            raise ValueError(f"patch_size {patch_size} must equal the product of the soft-split strides "
                             f"{'·'.join(map(str, strides))} = {math.prod(strides)}")
        if layer not in T2T_LAYERS:
            raise ValueError(f"unknown T2T layer '{layer}'; valid: {', '.join(T2T_LAYERS)}")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid = (self.sides[-1], self.sides[-1])
        self.num_patches = self.grid[0] * self.grid[1]
        self.splits = nn.ModuleList(nn.Unfold(k, padding=p, stride=s)
                                    for k, s, p in zip(kernels, strides, paddings, strict=True))
        widths = [in_chans * kernels[0] ** 2] + [token_dim * k ** 2 for k in kernels[1:]]
        extra = {"num_features": num_features} if layer == "performer" else {}
        self.layers = nn.ModuleList(T2T_LAYERS[layer](w, token_dim, **extra) for w in widths[:-1])
        self.project = nn.Linear(widths[-1], embed_dim)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        B, C, H, W = img.shape
        if (H, W) != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}×{self.img_size} images, got {H}×{W}")
        x = self.splits[0](img).transpose(1, 2)  # (B, n0², C·k0²)
        for layer, split, side in zip(self.layers, self.splits[1:], self.sides[:-1], strict=True):
            x = layer(x)  # (B, side², token_dim)
            x = x.transpose(1, 2).reshape(B, -1, side, side)  # (B, token_dim, side, side)
            x = split(x).transpose(1, 2)  # (B, next_side², token_dim·k²)
        return self.project(x), self.grid  # (B, N, D)

    def extra_repr(self) -> str:
        return f"grids={[f'{s}×{s}' for s in self.sides]}"
