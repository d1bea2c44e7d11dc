"""timm → vitstudy: the baseline body given timm's weights (Dosovitskiy et al. 2021; Touvron et al. 2021).

`from_timm(model)`: the vitstudy model equivalent to a timm `VisionTransformer`, with its weights.
Users fine-tune from timm's pretrained checkpoints this way when they are online
(`from_timm(timm.create_model("deit_small_patch16_224", pretrained=True))`); the logits agree with
timm's to float tolerance. Features of timm's ViT that the vitstudy body does not have (register
tokens, qk-norm, pre-norm, attention pooling, ...) are refused by name rather than dropped silently.
"""

from __future__ import annotations

import torch
from torch import nn

from vitstudy.models.build import build_model, resolve_model
from vitstudy.models.vit import VisionTransformer


def from_timm(model: nn.Module) -> VisionTransformer:
    """Build the vitstudy model matching a timm VisionTransformer and copy its weights."""
    spec = resolve_model(**_timm_config(model))
    ours = build_model(spec)
    state = _timm_state_dict(model)
    missing, unexpected = ours.load_state_dict(state, strict=False)
    if missing or unexpected:  # a mapping gap is a bug here, never a silently random weight
        raise RuntimeError(f"timm transfer left missing={missing} unexpected={unexpected}")
    return ours.train(model.training)


def _timm_config(m: nn.Module) -> dict:
    from timm.layers import Mlp
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    if not isinstance(m, TimmViT):
        raise TypeError(f"expected a timm VisionTransformer, got {type(m).__name__}")
    block = m.blocks[0]
    unsupported = {
        "register tokens": m.num_prefix_tokens != int(m.has_class_token),
        "no_embed_class=True": m.no_embed_class and m.pos_embed is not None,
        "norm_pre": not isinstance(m.norm_pre, nn.Identity),
        "patch_embed norm": not isinstance(m.patch_embed.norm, nn.Identity),
        "dynamic_img_size": m.dynamic_img_size,
        f"global_pool={m.global_pool!r}": m.global_pool not in ("token", "avg"),
        "global_pool='avg' with a class token (vitstudy's gap head has no class token)":
            m.global_pool == "avg" and m.has_class_token,
        "global_pool='avg' without fc_norm": m.global_pool == "avg" and isinstance(m.fc_norm, nn.Identity),
        "qk_norm": not isinstance(block.attn.q_norm, nn.Identity),
        "an attention projection without bias": block.attn.proj.bias is None,
        "a non-Mlp feed-forward layer": type(block.mlp) is not Mlp,
        "a non-GELU activation": not isinstance(block.mlp.act, nn.GELU),
        "non-square images or patches": (m.patch_embed.img_size[0] != m.patch_embed.img_size[1]
                                         or m.patch_embed.patch_size[0] != m.patch_embed.patch_size[1]),
    }
    refused = [name for name, bad in unsupported.items() if bad]
    if refused:
        raise ValueError("vitstudy cannot reproduce this timm model: " + "; ".join(refused))
    dim = m.embed_dim
    ls = block.ls1
    return {
        "img_size": m.patch_embed.img_size[0],
        "patch_size": m.patch_embed.patch_size[0],
        "in_chans": m.patch_embed.proj.in_channels,
        "num_classes": m.num_classes,
        "embed_dim": dim,
        "depth": len(m.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / dim,
        "qkv_bias": block.attn.qkv.bias is not None,
        "position": "learned" if m.pos_embed is not None else "none",
        "head": "cls" if m.global_pool == "token" else "gap",
        "layer_scale": 1.0 if not isinstance(ls, nn.Identity) else None,
    }


def _timm_state_dict(m: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in m.state_dict().items():
        if key.startswith("patch_embed."):
            key = "tokenizer." + key.removeprefix("patch_embed.")
        elif key == "pos_embed":
            key = "position.pos_embed"
        elif key.startswith("fc_norm."):
            key = "norm." + key.removeprefix("fc_norm.")
        key = key.replace(".attn.", ".mixer.")
        out[key] = value
    return out
