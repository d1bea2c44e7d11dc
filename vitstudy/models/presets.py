"""Named model configurations of the papers' models, as data (like timm's registered configs).

A preset is a dict of model-spec arguments; a manifest or `vitstudy profile` may override any of them
(image size and class count above all). `published` records the figures printed in the paper, at
224 px and 1000 classes, so tests and `vitstudy profile` can check that we reproduce them.
This module imports no torch: the manifest layer validates preset names with it.
"""

from __future__ import annotations

from typing import Any

# Every model-spec field and its value when neither the preset nor the manifest sets it.
MODEL_DEFAULTS: dict[str, Any] = {
    "img_size": 224,
    "patch_size": 16,
    "in_chans": 3,
    "num_classes": 1000,
    "embed_dim": 192,
    "depth": 12,
    "num_heads": 3,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "tokenizer": "patch",
    "position": "learned",
    "mixer": "attention",
    "normalizer": "softmax",
    "head": "cls",
    "drop_path": 0.0,
    "layer_scale": None,
    "attn_path": "auto",
}


def _vit(embed_dim: int, depth: int, num_heads: int, patch_size: int = 16, **kw: Any) -> dict:
    return {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads,
            "patch_size": patch_size, **kw}


# name -> {"args": model-spec overrides, "summary", "paper", "published": {params, macs, top1}}
VIT_PRESETS: dict[str, dict[str, Any]] = {
    "vit_micro": {
        "args": _vit(64, 4, 4, patch_size=4, img_size=16, mlp_ratio=2.0),
        "summary": "a 4-block, 64-wide ViT with 4×4 patches on 16×16 images (digits, smoke grids)",
        "paper": "vitstudy",
        "published": {},
    },
    "vit_tiny": {
        "args": _vit(192, 12, 3),
        "summary": "ViT-Ti/16",
        "paper": "Steiner et al. 2021 (AugReg); timm vit_tiny_patch16_224",
        "published": {"params": 5.7e6, "macs": 1.3e9},
    },
    "vit_small": {
        "args": _vit(384, 12, 6),
        "summary": "ViT-S/16",
        "paper": "Steiner et al. 2021 (AugReg); timm vit_small_patch16_224",
        "published": {"params": 22e6, "macs": 4.6e9},
    },
    "vit_base": {
        "args": _vit(768, 12, 12),
        "summary": "ViT-B/16",
        "paper": "Dosovitskiy et al. 2021",
        "published": {"params": 86e6, "macs": 17.6e9, "top1": 77.9},
    },
    "deit_tiny": {
        "args": _vit(192, 12, 3),
        "summary": "DeiT-Ti: ViT-Ti/16 trained with the DeiT recipe",
        "paper": "Touvron et al. 2021 (DeiT)",
        "published": {"params": 5.7e6, "macs": 1.3e9, "top1": 72.2},
    },
    "deit_small": {
        "args": _vit(384, 12, 6),
        "summary": "DeiT-S: ViT-S/16 trained with the DeiT recipe",
        "paper": "Touvron et al. 2021 (DeiT)",
        "published": {"params": 22e6, "macs": 4.6e9, "top1": 79.9},
    },
    "deit_base": {
        "args": _vit(768, 12, 12),
        "summary": "DeiT-B: ViT-B/16 trained with the DeiT recipe",
        "paper": "Touvron et al. 2021 (DeiT)",
        "published": {"params": 86e6, "macs": 17.6e9, "top1": 81.8},
    },
}

# Feed-forward-only and attention-only models (Melas-Kyriazi 2021): see FF_PRESETS below.
FF_PRESETS: dict[str, dict[str, Any]] = {}

# Tokens-to-Token ViT (Yuan et al. 2021) and its deep-narrow ablation.
T2T_PRESETS: dict[str, dict[str, Any]] = {}

PRESETS: dict[str, dict[str, Any]] = {**VIT_PRESETS, **FF_PRESETS, **T2T_PRESETS}


def preset_args(name: str) -> dict[str, Any]:
    """The model-spec arguments of a preset (a copy). Raises UnknownNameError for a bad name."""
    from vitstudy.registry import UnknownNameError

    if name not in PRESETS:
        raise UnknownNameError("preset", name, list(PRESETS))
    return dict(PRESETS[name]["args"])
