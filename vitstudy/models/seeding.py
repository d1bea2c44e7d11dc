"""Common random numbers: every random draw of a run keyed by (run seed, what it is for), not by how many
draws came before it.

Two variants of a grid trained with the same seed should differ only by what the variants change, so
that a difference paired by seed carries no other noise. With one global stream they would not: a model
with another mixer consumes another number of values while it is built, so its head, its patch
embedding and every augmentation after would come from another part of the stream. Here

- `init_weights` initialises every module that owns parameters in a fork of the RNG seeded from
  (seed, the module's qualified name): a parameter's initial value is a function of the seed, its name,
  its shape and its module's type only, so two variants start from the same value of every parameter
  they share by name and shape (tokenizer, position, class token, head, the blocks' MLPs and norms).
  Each module keeps its own distribution: timm's ViT initialisation for linear layers (truncated normal,
  std 0.02, zero bias), the module's `reset_parameters` for the rest;
- augmentation draws come from `drawing_from(seed, what, epoch, batch, ...)` (vitstudy.data.augment,
  vitstudy.data.base, vitstudy.training.system): every variant sees the same shifted, flipped, erased and
  mixed batches, and a resumed run draws what it would have drawn. The data order is keyed by the
  samplers (vitstudy.data.base).

Weights loaded afterwards (timm's, a phase-1 run's, a checkpoint) replace the initial ones as before.
"""

from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager, nullcontext
from typing import Iterator

import numpy as np
import torch
from torch import nn

CPU = torch.device("cpu")


def stable_seed(*key: int | str) -> int:
    """A 63-bit seed from ints and strings, the same in every process and Python run (Python's hash() of
    a string is salted per process)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextmanager
def drawing_from(*key: int | str, device: torch.device = CPU) -> Iterator[None]:
    """Inside, torch's generators (the CPU's and `device`'s), NumPy's and Python's global ones draw from
    streams seeded by `key`; after, each continues as if nothing had been drawn. For libraries that draw
    from the global generators (timm's RandomErasing and Mixup, torchvision's and timm's PIL transforms).
    On an accelerator, its current device is the one seeded (Lightning makes the training device current)."""
    seed = stable_seed(*key)
    accelerator = [device] if device.type != "cpu" else []
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=accelerator, device_type=device.type):
        torch.default_generator.manual_seed(seed)
        if accelerator:
            torch.get_device_module(device.type).manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def init_weights(model: nn.Module, seed: int | None = None) -> None:
    """(Re-)initialise every module of `model` that owns parameters: linear layers as timm's ViT does,
    every other module by its own `reset_parameters` (which resets the module's own parameters and
    random buffers, not its children's). With a seed, each module draws from a fork of the CPU's RNG
    (models are built on the CPU) seeded from (seed, its qualified name); without, from the global RNG in
    module order."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or hasattr(module, "reset_parameters"):
            with drawing_from("init", seed, name) if seed is not None else nullcontext():
                _init_module(module)
        elif next(module.parameters(recurse=False), None) is not None:
            raise TypeError(f"{name or 'the model'} ({type(module).__name__}) owns parameters but has no "
                            "reset_parameters(): give it one, so that seeded initialisation covers them")


def _init_module(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):  # timm's ViT: truncated normal weights, zero biases
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    else:
        module.reset_parameters()
