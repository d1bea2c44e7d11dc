"""A packed run's checkpoints: one per member, in the member's own run folder, so that every cell owns its
files whatever it was trained with.

`last.ckpt` holds a member after its latest finished epoch: "epoch" (that epoch's index) and
"global_step" as Lightning writes them (vitstudy.training.callbacks.checkpoint_position reads both),
"state_dict" with the model's parameters under "model." (as the LightningModule's, so phase 2 and every
reader of a Lightning checkpoint load it alike), and "vitstudy_pack": the optimizer moments, the
validation history and best epoch, the throughput counters and the RNG state.

Members write one after another, so a pack killed at an epoch's end may leave some members one epoch
ahead. Each member therefore keeps its previous checkpoint as `prev.ckpt` (renamed, not copied, before
the new one is written): every member can be rolled back to the pack's earliest finished epoch, which is
where the pack resumes (`common_epoch`). A member with a checkpoint that cannot be read (cut short) has
none to resume from: it restarts from scratch (vitstudy.runfolder.recover clears its folder first).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vitstudy import runfolder
from vitstudy.runfolder import CKPT_FILE, PREV_FILE

PACK_KEY = "vitstudy_pack"


def is_pack_checkpoint(path: Path) -> bool:
    """Whether `path` is a member checkpoint of a packed run (not a Lightning Trainer's, nor a file that
    cannot be read: training it alone records why)."""
    return PACK_KEY in (_read(path) or {})


def _read(path: Path) -> dict | None:
    """A checkpoint's contents (memory-mapped), or None when it is missing or unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - missing, truncated, not a checkpoint, from an incompatible torch
        return None


def started_in_pack(run_dir: Path) -> bool:
    """Whether a cell's checkpoints are a pack member's: it must resume in a pack."""
    return any(is_pack_checkpoint(Path(run_dir) / name) for name in (CKPT_FILE, PREV_FILE))


def saved_epochs(run_dir: Path) -> dict[int, Path]:
    """{finished epochs: checkpoint} of a member's last.ckpt and prev.ckpt (packed ones only); none when
    one of its checkpoints cannot be read."""
    if runfolder.damaged_checkpoints(run_dir):
        return {}
    out = {}
    for name in (PREV_FILE, CKPT_FILE):
        path = Path(run_dir) / name
        state = _read(path)
        if state is not None and PACK_KEY in state:
            out[int(state["epoch"]) + 1] = path
    return out


def common_epoch(run_dirs: list[Path]) -> int | None:
    """The finished epochs every member can resume from (0: a fresh start), or None when the members'
    checkpoints are too far apart to train together (the executor then packs them apart)."""
    saved = [saved_epochs(d) for d in run_dirs]
    epoch = min((max(s) if s else 0) for s in saved)
    return epoch if all(epoch in s or (epoch == 0 and not s) for s in saved) else None


def save_member(run_dir: Path, state: dict) -> None:
    """Write a member's checkpoint as last.ckpt, keeping the one it replaces as prev.ckpt."""
    last = Path(run_dir) / CKPT_FILE
    if last.exists():
        os.replace(last, Path(run_dir) / PREV_FILE)
    runfolder.atomic_write(last, lambda f: torch.save(state, f))


def load_member(run_dir: Path, epochs: int) -> dict:
    """The member's checkpoint after `epochs` finished epochs."""
    return torch.load(saved_epochs(run_dir)[epochs], map_location="cpu", weights_only=True)


def drop_previous(run_dir: Path) -> None:
    """A finished member needs no roll-back point."""
    (Path(run_dir) / PREV_FILE).unlink(missing_ok=True)
