"""Named model configurations of the papers' models, as data (like timm's registered configs).

A preset is a dict of model-spec arguments; a manifest or `vitstudy profile` may override any of them
(image size and class count above all). `published` records the figures printed in the paper, at
224 px and 1000 classes, so tests and `vitstudy profile` can check that we reproduce them.
This module imports no torch: the manifest layer validates preset names with it.
"""

from __future__ import annotations

from typing import Any


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

# Feed-forward-only and attention-only models (Melas-Kyriazi 2021, Table 1 and §3.4). The FF block runs
# the feature MLP first, then the token MLP with a token-axis LayerNorm (official LinearBlock); the
# class token is kept and mixed. `num_heads` is unused by patch_mlp.
_FF = {"mixer": "patch_mlp", "block_order": "mlp_first", "token_mlp_ratio": 4.0}
FF_PRESETS: dict[str, dict[str, Any]] = {
    "ff_tiny": {
        "args": _vit(192, 12, 3, **_FF),
        "summary": "feed-forward only, tiny: token MLP replaces attention (T = 197)",
        "paper": "Melas-Kyriazi 2021",
        "published": {"params": 7.7e6, "top1": 61.4},
    },
    "ff_base": {
        "args": _vit(768, 12, 12, **_FF),
        "summary": "feed-forward only, base (T = 197)",
        "paper": "Melas-Kyriazi 2021",
        "published": {"params": 62e6, "top1": 74.9},
    },
    "ff_large": {
        "args": _vit(1024, 24, 16, patch_size=32, **_FF),
        "summary": "feed-forward only, large, 32×32 patches (T = 50)",
        "paper": "Melas-Kyriazi 2021",
        "published": {"params": 206e6, "top1": 71.4},
    },
    "vit_large_patch32": {
        "args": _vit(1024, 24, 16, patch_size=32),
        "summary": "ViT-L/32, the attention baseline of the large FF model",
        "paper": "Dosovitskiy et al. 2021; Melas-Kyriazi 2021 Table 1",
        "published": {"params": 306e6, "top1": 71.2},
    },
    "attn_only_tiny": {
        "args": _vit(192, 12, 3, channel_mixer="attention"),
        "summary": "attention only, tiny: the feature MLP replaced by attention over the feature axis",
        "paper": "Melas-Kyriazi 2021 §3.4 (stopped at 100 epochs)",
        "published": {"params": 4.0e6, "top1": 28.2},
    },
}

# Tokens-to-Token ViT (Yuan et al. 2021, Table 2 and §4; official code yitu-opensource/T2T-ViT) and its
# deep-narrow ablation. Backbone: class token, fixed sinusoid position, no qkv bias, class-token head;
# tokenizer `t2t` with the paper's soft splits (7/3/3, 4/2/2, 2/1/1; patch_size 16 = their total stride)
# and token width 64. Params include the two fixed tables (sinusoid, Performer features), as the paper's
# do. MACs of 7 and 12 differ from the printed 1.1G / 1.8G by +4.3% / −2.1%: they agree to the printed
# digit, and no count of the published architecture is within 2% of both (results/profile/t2t_vit.md).
# T2T-ViT-24's printed 13.8G is 1.0% above our 13.66G and 0.14G off its printed digit; it contradicts the
# paper's own 15.0G for T2T-ViT_t-24 (the two differ only in the T2T layers, which cost 1.305G more as
# transformers at every width: 6.1 − 4.8 and 9.8 − 8.5 in the paper), so it stays in `paper_size`.
_T2T = {"tokenizer": "t2t", "position": "sinusoid", "qkv_bias": False, "head": "cls"}


def _t2t(layer: str, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float) -> dict:
    return _vit(embed_dim, depth, num_heads, mlp_ratio=mlp_ratio, t2t_layer=layer, **_T2T)


def _t2t_entry(name: str, layer: str, dims: tuple, params: float, macs: float, top1: float,
               macs_to_printed_digit: bool = True) -> dict:
    D, L, h, r = dims
    entry = {"args": _t2t(layer, D, L, h, r),
             "summary": f"{name}: T2T module ({layer}), {D} wide, {L} deep, {h} heads, MLP ratio {r:g}",
             "paper": "Yuan et al. 2021 (T2T-ViT), Table 2",
             "published": {"params": params, "macs": macs, "top1": top1}}
    if not macs_to_printed_digit:  # printed, reproduced within 2% but not to the printed digit
        entry["paper_size"] = {"macs": entry["published"].pop("macs")}
    return entry


# The deep-narrow ablation (§4, "deep-narrow vs shallow-wide"): the paper's ViT-S/16 (timm's original
# vit_small_patch16_224: 768 wide, 8 deep, 8 heads, MLP ratio 3, no qkv bias, learned position) against
# 384 × 16 and 1024 × 4. Only width and depth are given for the two variants; we keep MLP ratio 3 and no
# qkv bias so they differ from the reference in width and depth alone, and use 64-wide heads (6 and 16;
# heads change neither params nor MACs). That gives 24.4M / 5.18G for the deep-narrow one (the paper:
# "about half" of the reference) and 44.0M / 8.74G for the shallow-wide one (the paper gives no size).
# The paper prints 48.6M / 10.1G for ViT-S/16; the architecture it names has 48.75M / 9.89G (timm lists
# the same 48.75M), so those two figures are kept as `paper_size` (within 2%), not `published` (to the
# printed digit, which tests/test_models.py checks for every preset).
# Top-1: 78.1 for ViT-S/16 (Table 2); deep-narrow +0.9 and shallow-wide −8.2 points from it (§4).
_VITS = {"qkv_bias": False, "mlp_ratio": 3.0}
T2T_PRESETS: dict[str, dict[str, Any]] = {
    "t2t_vit_7": _t2t_entry("T2T-ViT-7", "performer", (256, 7, 4, 2.0), 4.3e6, 1.1e9, 71.7),
    "t2t_vit_10": _t2t_entry("T2T-ViT-10", "performer", (256, 10, 4, 2.0), 5.9e6, 1.5e9, 75.2),
    "t2t_vit_12": _t2t_entry("T2T-ViT-12", "performer", (256, 12, 4, 2.0), 6.9e6, 1.8e9, 76.5),
    "t2t_vit_14": _t2t_entry("T2T-ViT-14", "performer", (384, 14, 6, 3.0), 21.5e6, 4.8e9, 81.5),
    "t2t_vit_19": _t2t_entry("T2T-ViT-19", "performer", (448, 19, 7, 3.0), 39.2e6, 8.5e9, 81.9),
    "t2t_vit_24": _t2t_entry("T2T-ViT-24", "performer", (512, 24, 8, 3.0), 64.1e6, 13.8e9, 82.3,
                             macs_to_printed_digit=False),
    "t2t_vit_t_14": _t2t_entry("T2T-ViT_t-14", "transformer", (384, 14, 6, 3.0), 21.5e6, 6.1e9, 81.7),
    "t2t_vit_t_19": _t2t_entry("T2T-ViT_t-19", "transformer", (448, 19, 7, 3.0), 39.2e6, 9.8e9, 82.4),
    "t2t_vit_t_24": _t2t_entry("T2T-ViT_t-24", "transformer", (512, 24, 8, 3.0), 64.1e6, 15.0e9, 82.6),
    "vit_s16_t2t": {
        "args": _vit(768, 8, 8, **_VITS),
        "summary": "ViT-S/16 of the T2T-ViT paper: 768 wide, 8 deep, MLP ratio 3 (the deep-narrow reference)",
        "paper": "Yuan et al. 2021 (T2T-ViT), Table 2 and §4; timm vit_small_patch16_224 (2020)",
        "published": {"top1": 78.1},
        "paper_size": {"params": 48.6e6, "macs": 10.1e9},
    },
    "vit_deep_narrow": {
        "args": _vit(384, 16, 6, **_VITS),
        "summary": "deep-narrow ViT/16: 384 wide, 16 deep, MLP ratio 3 (about half of vit_s16_t2t)",
        "paper": "Yuan et al. 2021 (T2T-ViT), §4 (+0.9 over ViT-S/16)",
        "published": {"top1": 79.0},
    },
    "vit_shallow_wide": {
        "args": _vit(1024, 4, 16, **_VITS),
        "summary": "shallow-wide ViT/16: 1024 wide, 4 deep, MLP ratio 3",
        "paper": "Yuan et al. 2021 (T2T-ViT), §4 (−8.2 from ViT-S/16)",
        "published": {"top1": 69.9},
    },
}

PRESETS: dict[str, dict[str, Any]] = {**VIT_PRESETS, **FF_PRESETS, **T2T_PRESETS}


def preset_args(name: str) -> dict[str, Any]:
    """The model-spec arguments of a preset (a copy). Raises UnknownNameError for a bad name."""
    from vitstudy.registry import UnknownNameError

    if name not in PRESETS:
        raise UnknownNameError("preset", name, list(PRESETS))
    return dict(PRESETS[name]["args"])
