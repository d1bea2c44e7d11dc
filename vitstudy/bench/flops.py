"""FLOPs of a training step, counted rather than timed: torch's FlopCounterMode, deterministic, on the
meta device where nothing runs. Matrix products and convolutions (the model-FLOPs convention; attention
counted as its two products whichever kernel runs), plus the window sums of average pooling, which the
counter leaves out, and with the weight gradient of grouped convolutions counted once (torch counts it
`groups` times). Used by the utilisation and scaling parts of `vitstudy bench`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from vitstudy.bench.common import RECIPE
from vitstudy.config.spec import ModelSpec
from vitstudy.models.build import build_model
from vitstudy.training.step import cross_entropy


def _pool_flops(x_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    """Average pooling: one add per window element per output (the window mean of dwsa, pool mixer)."""
    k = list(kernel_size) * (2 if len(kernel_size) == 1 else 1)
    return math.prod(out_shape) * math.prod(k)


def _pool_backward_flops(grad_shape, x_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    return _pool_flops(x_shape, kernel_size, out_shape=grad_shape)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each of the input and the weight gradient of a convolution costs its forward again. (torch's
    own formula counts the weight gradient of a grouped convolution `groups` times over: 25× the
    forward for dwsa's depthwise convolution at 24 channels.)"""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (bool(output_mask[0]) + bool(output_mask[1]))


EXTRA_FLOPS = {torch.ops.aten.avg_pool2d: _pool_flops,
               torch.ops.aten.avg_pool2d_backward: _pool_backward_flops,
               torch.ops.aten.convolution_backward: _conv_backward_flops}


def step_flops(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward (with cross-entropy) and one backward of `model` on this batch, as counted
    by FlopCounterMode (matmuls, convolutions, attention products) plus `EXTRA_FLOPS` (average pooling,
    grouped-convolution gradients). Run it on meta tensors to count without computing."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
        loss = cross_entropy(model(images), labels, RECIPE.label_smoothing)
        forward = counter.get_total_flops()
        loss.backward()
    return {"forward": forward, "backward": counter.get_total_flops() - forward}


def model_step_flops(spec: ModelSpec, batch_size: int) -> dict[str, int]:
    """`step_flops` of the model of `spec` on a batch, built on the meta device."""
    with torch.device("meta"):
        model = build_model(spec)
        images = torch.empty(batch_size, spec.in_chans, spec.img_size, spec.img_size)
        labels = torch.zeros(batch_size, dtype=torch.long)
    return step_flops(model, images, labels)
