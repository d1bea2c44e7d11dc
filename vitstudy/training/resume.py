"""Exact resumption of an interrupted cell from its `last.ckpt`.

Lightning's checkpoint restores the model, optimiser, schedulers, loops and callbacks, but not the
random number generators: a resumed run would shuffle its batches and draw its augmentations from the
stream of epoch 0 rather than from where the interrupted run stopped, and end with different weights.
`RngState` stores the CPU (and CUDA), Python and NumPy generator states in the checkpoint, as tensors
and plain data so that `torch.load(weights_only=True)` accepts them, and restores them when the fit
resumes; with deterministic settings on a CPU, an interrupted and resumed cell then ends with the same
metrics as an uninterrupted one (tests/test_engine.py proves it by killing a cell with SIGKILL).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RngState(Callback):
    """Saves the global torch (CPU, CUDA) and Python RNG states with every checkpoint; restores them
    on resume."""

    def state_dict(self) -> dict:
        version, state, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()  # timm's Mixup draws from NumPy
        out = {"torch": torch.get_rng_state(), "python": [version, list(state), gauss],
               "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda"] = torch.cuda.get_rng_state_all()
        return out

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "numpy" in state:
            kind, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_position(ckpt: Path) -> dict | None:
    """{"epoch", "global_step"} stored in a checkpoint (the point a resumed run starts from), or None
    when there is no checkpoint. Loaded with weights_only=True and memory-mapped."""
    ckpt = Path(ckpt)
    if not ckpt.exists():
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    return {"epoch": int(state["epoch"]), "global_step": int(state["global_step"])}
