"""Model cost without training: parameter count and MACs.

MACs are the multiply-accumulates of every linear and convolution layer plus the two attention matrix
products (q·kᵀ and weights·v), for one image; normalisations, activations and additions are not
counted (the convention of the papers' tables and of fvcore/timm). They are counted by torch's
FlopCounterMode on a model built on the meta device, so profiling a 300M-parameter model allocates
nothing and takes well under a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from vitstudy.models.build import build_model
from vitstudy.spec import ModelSpec


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
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(img)
    return Cost(params=params, macs=counter.get_total_flops() // 2)


def human(n: float, unit: str = "") -> str:
    """5717416 -> '5.7M'; 1253683200 -> '1.25G' (three significant figures at most)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"
