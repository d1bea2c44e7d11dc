"""Start a phase-2 run from its phase-1 run's final checkpoint (Li et al. 2021's two-phase CMHSA
training; the manifest's `phases:` rules, vitstudy.config.phases). Phase 1's `last.ckpt` (its final epoch)
and resolved spec are read from `<grid folder>/<train.init_from>/`; the weights go through
`train.transfer` (`conv_to_attention`: the exact conv → attention construction; `copy`: as they are)
into the phase-2 model, whose logits then equal phase 1's final ones.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vitstudy import runfolder
from vitstudy.config.spec import ModelSpec, RunSpec
from vitstudy.models.build import build_model
from vitstudy.runfolder import CKPT_FILE


class PhaseNotDoneError(RuntimeError):
    """Phase 2 was asked to start before its phase 1 finished."""


def phase_one_dir(spec: RunSpec, run_dir: Path) -> Path:
    return Path(run_dir).parent / spec.train.init_from


def init_from_phase(model: nn.Module, spec: RunSpec, run_dir: Path) -> None:
    """Overwrite `model` (built from spec.model) with phase 1's final weights through the transfer."""
    first = phase_one_dir(spec, run_dir)
    record = runfolder.read_record(first)
    status = runfolder.record_status(record)
    if status != "done" or not (first / CKPT_FILE).exists():
        raise PhaseNotDoneError(f"phase 1 run {first} is not done (status {status!r}); "
                                "run the grid again: the executor trains phase 1 first")
    spec1 = ModelSpec(**record["spec"]["model"])
    state = torch.load(first / CKPT_FILE, map_location="cpu", weights_only=True)["state_dict"]
    source = build_model(spec1)
    source.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    if spec.train.transfer == "conv_to_attention":
        from vitstudy.models.transfer import conv_model_to_attention

        source, _ = conv_model_to_attention(source, spec1, mask_value=spec.train.transfer_mask_value)
    model.load_state_dict(source.state_dict())  # strict: a phase rule that changed shapes is an error
