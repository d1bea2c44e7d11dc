"""Model cost without training: parameter count and MACs.

MACs are the multiply-accumulates of every linear and convolution layer plus the two attention matrix
products (q·kᵀ and weights·v), for one image; normalisations, activations and additions are not
counted (the convention of the papers' tables and of fvcore/timm). For a Performer (T2T-ViT's T2T layer)
the "attention products" are its linear-in-N matrix products: the random-feature maps ω·q and ω·k, the
normaliser φ(q)·Σφ(k), φ(k)ᵀ·v and φ(q)·(φ(k)ᵀv); the exponential is not counted. Params count
every parameter, trainable or frozen, plus the fixed tables modules declare (`count_params`). MACs are
counted by torch's FlopCounterMode on a model built on the meta device, so profiling a 300M-parameter
model allocates nothing and takes well under a second.

A training run records its model's cost in every metrics.json it writes (running, done), and a grid trains
every model spec once per seed: `cached_cost` counts each spec once per process (0.05-0.1 s a count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from vitstudy.config.spec import ModelSpec
from vitstudy.models.build import build_model


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int

    def as_dict(self) -> dict:
        return asdict(self)


def model_cost(spec: ModelSpec) -> Cost:
    with torch.device("meta"):
        model = build_model(spec)
        img = torch.empty(1, spec.in_chans, spec.img_size, spec.img_size)
    params = count_params(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(img)
    return Cost(params=params, macs=counter.get_total_flops() // 2)


_COSTS: dict[str, Cost] = {}  # spec (as JSON: every field, so two different specs never share) -> Cost


def cached_cost(spec: ModelSpec) -> Cost:
    """`model_cost`, counted once per distinct spec in this process (a Cost is frozen: safe to share). A
    spec whose model fails to build raises every time and is not kept."""
    key = spec.model_dump_json()
    if key not in _COSTS:
        _COSTS[key] = model_cost(spec)
    return _COSTS[key]


def count_params(model: torch.nn.Module) -> int:
    """Every parameter, trainable or frozen, plus the fixed tables a module lists in `counted_buffers`
    (the sinusoid position table, the Performer's random features). The papers' code stores those as
    frozen nn.Parameters and their tables count them: T2T-ViT-10 has 5.83M trainable parameters and
    5.89M with its two fixed tables, printed as 5.9M."""
    tables = sum(getattr(m, name).numel()
                 for m in model.modules() for name in getattr(m, "counted_buffers", ()))
    return sum(p.numel() for p in model.parameters()) + tables
