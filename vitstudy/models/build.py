"""The one place that turns a ModelSpec into constructor arguments of the ViT body."""

from __future__ import annotations

from functools import partial

from vitstudy.models.vit import VisionTransformer
from vitstudy.registry import HEADS, MIXERS, NORMALIZERS, POSITIONS, TOKENIZERS
from vitstudy.spec import ModelSpec


def mixer_layer(spec: ModelSpec):
    """The mixer class with its spec-derived options bound (the body adds dim, grid, prefix)."""
    entry = MIXERS.entry(spec.mixer)
    kwargs = {}
    if entry.meta.get("uses_heads"):
        kwargs.update(num_heads=spec.num_heads, qkv_bias=spec.qkv_bias)
    if entry.meta.get("uses_normalizer"):
        kwargs.update(normalizer=NORMALIZERS.get(spec.normalizer), path=spec.attn_path)
    return partial(MIXERS.get(spec.mixer), **kwargs)


def tokenizer_layer(spec: ModelSpec):
    """The tokenizer class with its spec-derived options bound; the body calls it as
    `tokenizer_layer(img_size, patch_size, in_chans, embed_dim)`."""
    return TOKENIZERS.get(spec.tokenizer)


def build_model(spec: ModelSpec) -> VisionTransformer:
    return VisionTransformer(
        img_size=spec.img_size,
        patch_size=spec.patch_size,
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        mlp_ratio=spec.mlp_ratio,
        tokenizer_layer=tokenizer_layer(spec),
        position_layer=POSITIONS.get(spec.position),
        mixer_layer=mixer_layer(spec),
        pool_layer=HEADS.get(spec.head),
        drop_path_rate=spec.drop_path,
        layer_scale=spec.layer_scale,
    )


def resolve_model(preset: str | None = None, **overrides) -> ModelSpec:
    """A ModelSpec from a preset name plus overrides (what `vitstudy profile` and tests use)."""
    from vitstudy.models.presets import MODEL_DEFAULTS, preset_args

    args = dict(MODEL_DEFAULTS)
    if preset is not None:
        args.update(preset_args(preset))
    args.update({k: v for k, v in overrides.items() if v is not None})
    return ModelSpec(preset=preset, **args)
