"""Multi-phase runs (Li et al. 2021's two-phase CMHSA training): what phase 2's model is, computed
without torch so the manifest layer can expand and validate phased grids instantly.

A phase-2 cell is an ordinary cell whose `train.init_from` names the phase-1 run (same grid folder)
and whose `train.transfer` names how phase 1's final weights become phase 2's initial ones:

- `conv_to_attention`: phase 1's `conv` mixers become `attention` mixers that compute exactly the same
  thing (vitstudy.models.transfer.conv): one head per kernel offset reaching the token grid, head
  width = embed_dim, relative position and a null key; every other weight is copied.
- `copy`: the same architecture, weights copied (fine-tuning with another schedule).
"""

from __future__ import annotations

from typing import Any

from vitstudy.config.errors import shown

TRANSFERS = ("conv_to_attention", "copy")
# the score of every key but a head's target in the exact conv → attention transfer: exp(MASK_VALUE) == 0
# exactly in float32, bfloat16 and float16 (train.transfer_mask_value's default)
MASK_VALUE = -1e4


def conv_offsets(kernel_size: int, grid: tuple[int, int]) -> list[tuple[int, int]]:
    """The kernel offsets (row, col) that reach a token on an H×W grid, row-major: one head each in the
    exact attention of a K×K conv (vitstudy.models.transfer.conv)."""
    r = kernel_size // 2
    rr, rc = min(r, grid[0] - 1), min(r, grid[1] - 1)
    return [(a, b) for a in range(-rr, rr + 1) for b in range(-rc, rc + 1)]


def conv_heads(kernel_size: int, grid: tuple[int, int]) -> int:
    """Heads of the exact attention for a K×K conv on an H×W token grid."""
    return len(conv_offsets(kernel_size, grid))


def transferred_model(model: dict[str, Any], transfer: str) -> dict[str, Any]:
    """Phase 2's model-spec fields from phase 1's (a ModelSpec dumped as a dict)."""
    if transfer == "copy":
        return dict(model)
    if transfer != "conv_to_attention":
        raise ValueError(f"unknown transfer {shown(transfer)}; valid: {', '.join(TRANSFERS)}")
    if model.get("mixer") != "conv":
        raise ValueError(f"transfer conv_to_attention needs phase 1's mixer to be 'conv', "
                         f"got {shown(model.get('mixer'))}")
    side = model["img_size"] // model["patch_size"]
    out = {k: v for k, v in model.items() if k not in ("kernel_size", "conv_groups", "normalizer")}
    out.update(mixer="attention", num_heads=conv_heads(model.get("kernel_size", 3), (side, side)),
               head_dim=model["embed_dim"], null_key=True, rel_pos=True)
    return out
