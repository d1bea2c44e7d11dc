"""Attention normalisers: what turns the scaled scores s = q·k/√d (+ position bias) into weights.

Softmax is the transformer's choice (Vaswani et al. 2017). Its replacements are the axis studied by
Zhou et al. 2023 (ReLU, LayerNorm: "normalisation matters but need not be softmax"), Wortsman et al. 2023
(`L^-1 · h(s)` for h in relu, relu², gelu, softplus: dividing by the sequence length L is what makes
them train) and Ramapuram et al. 2024 (sigmoid with bias −log N).

Every normaliser is a module built as `Normalizer(num_heads, num_tokens, **its options)` with
`forward(scores: (B, h, N, N)) -> weights: (B, h, N, N)`. A normaliser that computes exactly
`softmax(scale · q·k)` says so through `fused_scale(head_dim)`, which lets the attention mixer use the
fused kernel for it; for every other `fused_scale` is None and the explicit path is taken.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Softmax(nn.Module):
    """softmax(s / temperature) over the key axis."""

    def __init__(self, num_heads: int = 1, num_tokens: int = 1, temperature: float = 1.0):
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


class _LengthScaled(nn.Module):
    """h(s) / N, N the number of keys (Wortsman et al. 2023, α = 1)."""

    def __init__(self, num_heads: int = 1, num_tokens: int = 1):
        super().__init__()

    def activation(self, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return self.activation(scores) / scores.shape[-1]


class ReLU(_LengthScaled):
    """relu(s) / N."""

    def activation(self, scores):
        return F.relu(scores)


class ReLU2(_LengthScaled):
    """relu(s)² / N."""

    def activation(self, scores):
        return F.relu(scores).square()


class Softplus(_LengthScaled):
    """softplus(s) / N."""

    def activation(self, scores):
        return F.softplus(scores)


class GELU(_LengthScaled):
    """gelu(s) / N."""

    def activation(self, scores):
        return F.gelu(scores)


class Sigmoid(nn.Module):
    """sigmoid(s + b), b = −log N by default (Ramapuram et al. 2024): with zero scores every weight is
    1/(N+1), close to softmax's 1/N. With `learnable_bias`, b is a parameter per head, initialised so."""

    def __init__(self, num_heads: int = 1, num_tokens: int = 1, sigmoid_bias: float | None = None,
                 learnable_bias: bool = False):
        super().__init__()
        self.fixed_bias = sigmoid_bias
        self.bias = None
        if learnable_bias:
            self.init_bias = sigmoid_bias if sigmoid_bias is not None else -math.log(num_tokens)
            self.bias = nn.Parameter(torch.empty(num_heads, 1, 1))
            self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.bias is not None:
            nn.init.constant_(self.bias, self.init_bias)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            b = self.bias
        elif self.fixed_bias is not None:
            b = self.fixed_bias
        else:
            b = -math.log(scores.shape[-1])
        return torch.sigmoid(scores + b)


class LayerNorm(nn.Module):
    """Each query's scores standardised over the key axis: zero mean, unit variance, no affine."""

    def __init__(self, num_heads: int = 1, num_tokens: int = 1):
        super().__init__()

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(scores, scores.shape[-1:])
