"""vitstudy.bench.flops: the FLOPs of a training step against hand counts and against the MACs that
`vitstudy profile` reports (vitstudy.models.cost)."""

import pytest
import torch
from torch import nn

from vitstudy.bench.flops import model_step_flops, step_flops
from vitstudy.models.build import resolve_model
from vitstudy.models.cost import model_cost


def test_step_flops_match_a_hand_count():
    B, a, b, c = 5, 7, 11, 3
    model = nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c))
    flops = step_flops(model, torch.randn(B, a), torch.randint(c, (B,)))
    # forward: two matmuls; backward: both weight gradients, and the input gradient of the second
    # layer only (the images need none)
    assert flops == {"forward": 2 * B * (a * b + b * c), "backward": 2 * B * (a * b + b * c) + 2 * B * b * c}


def test_step_flops_count_a_grouped_convolution_gradient_once():
    B, C, H, k = 2, 6, 5, 3
    model = nn.Sequential(nn.Conv2d(C, C, 3, padding=1, groups=C), nn.Flatten(), nn.Linear(C * H * H, k))
    flops = step_flops(model, torch.randn(B, C, H, H), torch.randint(k, (B,)))
    conv, linear = 2 * B * H * H * C * 9, 2 * B * C * H * H * k
    # backward: the conv's weight gradient (no input gradient), the linear layer's weight and input ones
    assert flops == {"forward": conv + linear, "backward": conv + 2 * linear}


@pytest.mark.parametrize("mixer", ["attention", "dwsa", "conv"])
def test_model_step_flops_forward_is_profile_macs(mixer):
    spec = resolve_model("vit_micro", embed_dim=24, depth=2, num_heads=2, mixer=mixer, head="gap",
                         num_classes=10, in_chans=1)
    flops = model_step_flops(spec, 3)
    assert flops["forward"] == 2 * 3 * model_cost(spec).macs
    # every layer's weight gradient costs its forward again, every input gradient but the patch
    # embedding's (the images need none) once more
    assert flops["forward"] < flops["backward"] < 2 * flops["forward"]
