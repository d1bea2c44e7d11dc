"""Multi-head self-attention with a pluggable score normaliser (ViT, Dosovitskiy et al. 2021).

    o = proj( normaliser(q kᵀ / √d) v ),   q, k, v = split(qkv(x))

Two paths compute the same thing: the fused kernel (`F.scaled_dot_product_attention`), usable only
when the normaliser is a softmax, and the explicit one (two matmuls around the normaliser), which
works for every normaliser. `path="auto"` picks per call from the device and dtype (never through a
process-wide switch, since one grid mixes variants) and records the choice in `self.path_taken`.
Weight names (qkv, proj) follow timm so checkpoints map one to one.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitstudy.models.normalizers import Softmax

Path = Literal["auto", "fused", "explicit"]


def prefer_fused(x: torch.Tensor) -> bool:
    """Whether the fused kernel is the faster path for this input.

    Measured (benchmarks/attention_paths.py): on CUDA the fused kernel wins; on CPU the explicit
    matmuls win in bf16 by several times and are on par or better in fp32 at ViT sizes.
    """
    return x.device.type == "cuda"


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        grid: tuple[int, int],
        num_prefix_tokens: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        normalizer: Callable[[], nn.Module] = Softmax,
        path: Path = "auto",
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads {num_heads} does not divide dim {dim}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.normalizer = normalizer()
        self.proj = nn.Linear(dim, dim)
        fused_scale = getattr(self.normalizer, "fused_scale", lambda _: None)(self.head_dim)
        if path == "fused" and fused_scale is None:
            raise ValueError(f"path='fused' needs a softmax normaliser, got {type(self.normalizer).__name__}")
        self.path, self.fused_scale = path, fused_scale
        self.path_taken: str | None = None

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, h, N, hd) each
        if self._use_fused(x):
            self.path_taken = "fused"
            o = F.scaled_dot_product_attention(q, k, v, scale=self.fused_scale)  # (B, h, N, hd)
        else:
            self.path_taken = "explicit"
            scores = (q * self.scale) @ k.transpose(-2, -1)  # (B, h, N, N)
            o = self.normalizer(scores) @ v  # (B, h, N, hd)
        return self.proj(o.transpose(1, 2).reshape(B, N, C))  # (B, N, C)

    def _use_fused(self, x: torch.Tensor) -> bool:
        if self.fused_scale is None or self.path == "explicit":
            return False
        return self.path == "fused" or prefer_fused(x)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, path={self.path}"
