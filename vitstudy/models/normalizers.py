"""Attention normalisers: what turns the scaled scores q·k/√d into attention weights.

Softmax is the transformer's choice (Vaswani et al. 2017); its replacements (ReLU, LayerNorm,
sigmoid, ...) are the axis studied by Zhou et al. 2023, Wortsman et al. 2023 and Ramapuram et al. 2024.
Each normaliser is a module `forward(scores: (B, h, N, N)) -> weights: (B, h, N, N)`. A normaliser
that computes exactly `softmax(scale · q·k)` says so through `fused_scale`, which lets the attention
mixer use the fused kernel (`scaled_dot_product_attention`) for it; every other returns None.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Softmax(nn.Module):
    """softmax(scores / temperature) over the key axis."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"softmax temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores / self.temperature).softmax(dim=-1)

    def fused_scale(self, head_dim: int) -> float | None:
        """The `scale` of scaled_dot_product_attention that computes this normaliser."""
        return 1.0 / (math.sqrt(head_dim) * self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
