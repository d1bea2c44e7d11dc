"""Depthwise self-attention (Zhou, Loy, Dai 2023, "Interpret Vision Transformers as ConvNets with
Dynamic Convolutions", §5.3): self-attention read as dynamic convolution, with the value bank dropped
and the selected keys averaged into one depthwise kernel:

    o_i = q_i ⊙ mean_j(k_j) + Σ_j p_ij k_j

p is a learned relative position embedding over the 2-D grid, one table per head, applied to the keys
(ViT selects all keys: global; Swin those of a local window: `window`). Since p_ij depends only on the
offset i − j, Σ_j p_ij k_j is a depthwise convolution of the key map with a (2H−1)×(2W−1) kernel
(global) or a window×window one (local), which is how it is computed here: O(N²·C) global, O(N·w²·C)
local, never an N×N matrix. Choices the paper leaves open (no code released): the mean in the local
case is over the window (zero padding excluded); class tokens take the global mean and get no relative
term; there is no 1/√d (the product is element-wise). `rel_pos: false` drops p (ablation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitstudy.models.mixers import from_grid, to_grid


class DepthwiseSelfAttention(nn.Module):
    def __init__(self, dim: int, grid: tuple[int, int], num_prefix_tokens: int, num_heads: int = 8,
                 qkv_bias: bool = True, rel_pos: bool = True, window: int | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads {num_heads} does not divide dim {dim}")
        if window is not None and window % 2 == 0:
            raise ValueError(f"window must be odd, got {window}")
        H, W = grid
        self.num_heads, self.num_prefix_tokens, self.window = num_heads, num_prefix_tokens, window
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.kernel = (window, window) if window else (2 * H - 1, 2 * W - 1)
        self.rel = None
        if rel_pos:
            self.rel = nn.Parameter(torch.empty(num_heads, *self.kernel))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The relative table (qk and proj are linear layers, initialised as such)."""
        if self.rel is not None:
            nn.init.trunc_normal_(self.rel, std=0.02)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        p = self.num_prefix_tokens
        q, k = self.qk(x).chunk(2, dim=-1)  # (B, N, C) each
        k_mean = k.mean(dim=1, keepdim=True).expand(B, N, C)  # global: every query, every key
        if self.window or self.rel is not None:
            k_map = to_grid(k, grid, p)  # (B, C, H, W)
        if self.window:
            local = F.avg_pool2d(k_map, self.window, stride=1, padding=self.window // 2,
                                 count_include_pad=False)  # (B, C, H, W): mean over each window
            k_mean = torch.cat([k_mean[:, :p], local.flatten(2).transpose(1, 2)], dim=1)  # (B, N, C)
        out = q * k_mean
        if self.rel is not None:
            weight = self.rel.repeat_interleave(C // self.num_heads, dim=0)[:, None]  # (C, 1, kh, kw)
            pad = (self.kernel[0] // 2, self.kernel[1] // 2)
            out = out + from_grid(F.conv2d(k_map, weight, padding=pad, groups=C), p)  # (B, N, C)
        return self.proj(out)
