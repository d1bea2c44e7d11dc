"""No token mixing at all: the mixer returns its (normalised) input, as MetaFormer's IdentityFormer
(Yu et al. 2023). Every token is then processed alone by the MLPs: the floor of the mixer axis."""

from __future__ import annotations

import torch
from torch import nn


class IdentityMixer(nn.Module):
    def __init__(self, dim: int, grid: tuple[int, int], num_prefix_tokens: int):
        super().__init__()

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x
