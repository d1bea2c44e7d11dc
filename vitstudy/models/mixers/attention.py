"""Multi-head self-attention with a pluggable score normaliser (ViT, Dosovitskiy et al. 2021).

    o = proj( normaliser(q kᵀ / √d + b) v ),   q, k, v = split(qkv(x)),  b: optional relative bias

Two paths compute the same thing: the fused kernel (`F.scaled_dot_product_attention`), usable only
when the normaliser is a softmax, and the explicit one (two matmuls around the normaliser), which
works for every normaliser. `attn_path="auto"` picks per call from the device and dtype (never through
a process-wide switch, since one grid mixes variants) and records the choice in `self.path_taken`.
Weight names (qkv, proj) follow timm so checkpoints map one to one.

Two options serve the exact conv → attention transfer of Li et al. 2021 (vitstudy.models.transfer),
both off by default so every other model is unchanged: `head_dim` decouples the head width from
dim / num_heads (the value path is num_heads·head_dim wide, `proj` maps it back to dim), and
`null_key` appends one key whose key and value are zero and whose score is a learned bias per
(head, query), `null_bias` (h, N): a head can put its weight on "nothing" (output 0), which is how a
one-hot head reproduces the convolution's zero padding at the border and the unmixed class token.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitstudy.models.normalizers import Softmax
from vitstudy.models.relative import RelativePositionBias

Path = Literal["auto", "fused", "explicit"]


def prefer_fused(q: torch.Tensor) -> bool:
    """Whether the fused kernel is the faster path for these queries.

    Measured on a 2-core AVX-512 CPU (training step, B=64, 3 heads of 64): fused 56.6 ms vs explicit
    73.6 ms in fp32 at N=197, but in bf16 fused 72.7 ms vs explicit 50.4 ms (28.0 vs 6.7 ms at N=65).
    On CUDA the fused (flash / memory-efficient) kernels win.
    """
    return q.device.type == "cuda" or q.dtype in (torch.float32, torch.float64)


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        grid: tuple[int, int] | None,
        num_prefix_tokens: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        normalizer: Callable[..., nn.Module] = Softmax,
        attn_path: Path = "auto",
        rel_pos: bool = False,
        head_dim: int | None = None,
        null_key: bool = False,
    ):
        super().__init__()
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"num_heads {num_heads} does not divide dim {dim}")
            head_dim = dim // num_heads
        self.num_heads, self.head_dim = num_heads, head_dim
        self.scale = self.head_dim ** -0.5
        inner = num_heads * head_dim  # the width of q, k and v (dim unless head_dim is given)
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        num_tokens = num_prefix_tokens + grid[0] * grid[1] if grid else 1
        self.normalizer = normalizer(num_heads=num_heads, num_tokens=num_tokens)
        self.rel_pos = None
        if rel_pos:
            if not grid:
                raise ValueError("a relative position bias needs a token grid")
            self.rel_pos = RelativePositionBias(num_heads, grid, num_prefix_tokens)
        # the null key's score for each (head, query); its key and value are zero
        self.null_bias = nn.Parameter(torch.zeros(num_heads, num_tokens)) if null_key else None
        self.proj = nn.Linear(inner, dim)
        fused_scale = getattr(self.normalizer, "fused_scale", lambda _: None)(self.head_dim)
        if attn_path == "fused" and fused_scale is None:
            name = type(self.normalizer).__name__
            raise ValueError(f"attn_path='fused' needs a softmax normaliser, got {name}")
        self.path, self.fused_scale = attn_path, fused_scale
        self.path_taken: str | None = None

    def reset_parameters(self) -> None:
        """The null key's bias (qkv, proj, the normaliser and the relative table initialise their own)."""
        if self.null_bias is not None:
            nn.init.zeros_(self.null_bias)

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, h, N, hd) each
        bias = self.rel_pos() if self.rel_pos is not None else None  # (h, N, N)
        if self.null_bias is not None:
            k, v = F.pad(k, (0, 0, 0, 1)), F.pad(v, (0, 0, 0, 1))  # (B, h, N+1, hd): zero null key
            bias = bias if bias is not None else k.new_zeros(self.num_heads, N, N)
            bias = torch.cat([bias, self.null_bias[:, :N, None]], dim=-1)  # (h, N, N+1)
        if self._use_fused(q):
            self.path_taken = "fused"
            # softmax((q·k/√d + b) / t) = softmax(q·k · fused_scale + b · fused_scale/scale)
            mask = bias * (self.fused_scale / self.scale) if bias is not None else None
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.fused_scale)
        else:
            self.path_taken = "explicit"
            scores = (q * self.scale) @ k.transpose(-2, -1)  # (B, h, N, N)
            if bias is not None:
                scores = scores + bias
            o = self.normalizer(scores) @ v  # (B, h, N, hd)
        return self.proj(o.transpose(1, 2).reshape(B, N, -1))  # (B, N, C)

    def _use_fused(self, q: torch.Tensor) -> bool:
        if self.fused_scale is None or self.path == "explicit":
            return False
        return self.path == "fused" or prefer_fused(q)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, path={self.path}"
