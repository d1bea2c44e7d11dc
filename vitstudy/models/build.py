"""The one place that turns a ModelSpec into constructor arguments of the ViT body."""

from __future__ import annotations

from functools import partial

from vitstudy.config.spec import ModelSpec
from vitstudy.models.vit import VisionTransformer
from vitstudy.registry import CHANNEL_MIXERS, HEADS, MIXERS, NORMALIZERS, POSITIONS, TOKENIZERS


def _options(entry, spec: ModelSpec) -> dict:
    """The spec fields a component's constructor takes (its registry meta names them)."""
    return {option: getattr(spec, option) for option in entry.meta.get("options", ())}


def mixer_layer(spec: ModelSpec):
    """The mixer class with its spec-derived options bound (the body adds dim, grid, prefix)."""
    entry = MIXERS.entry(spec.mixer)
    kwargs = _options(entry, spec)
    if entry.meta.get("normalizer"):
        norm = NORMALIZERS.entry(spec.normalizer)
        kwargs["normalizer"] = partial(NORMALIZERS.get(spec.normalizer), **_options(norm, spec))
    if entry.meta.get("rel_pos") is not None:
        kwargs["rel_pos"] = spec.rel_pos if spec.rel_pos is not None else entry.meta["rel_pos"]
    return partial(MIXERS.get(spec.mixer), **kwargs)


def channel_layer(spec: ModelSpec):
    """The block's second sub-layer with its options bound, or None."""
    cls = CHANNEL_MIXERS.get(spec.channel_mixer)
    return partial(cls, **_options(CHANNEL_MIXERS.entry(spec.channel_mixer), spec)) if cls else None


def tokenizer_layer(spec: ModelSpec):
    """The tokenizer class with its spec-derived options bound; the body calls it as
    `tokenizer_layer(img_size, patch_size, in_chans, embed_dim)`."""
    if TOKENIZERS.entry(spec.tokenizer).meta.get("soft_split"):
        return partial(TOKENIZERS.get(spec.tokenizer), layer=spec.t2t_layer, token_dim=spec.t2t_dim,
                       kernels=spec.t2t_kernels, strides=spec.t2t_strides, paddings=spec.t2t_paddings,
                       num_features=spec.t2t_features)
    return TOKENIZERS.get(spec.tokenizer)


def build_model(spec: ModelSpec, seed: int | None = None) -> VisionTransformer:
    """The model of a spec; with `seed`, initialised from it alone (vitstudy.models.seeding), so the
    models of a grid's variants start equal wherever they have the same parameters."""
    return VisionTransformer(
        img_size=spec.img_size,
        patch_size=spec.patch_size,
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        tokenizer_layer=tokenizer_layer(spec),
        position_layer=POSITIONS.get(spec.position),
        mixer_layer=mixer_layer(spec),
        channel_layer=channel_layer(spec),
        block_order=spec.block_order,
        pool_layer=HEADS.get(spec.head),
        drop_path_rate=spec.drop_path,
        layer_scale=spec.layer_scale,
        init_seed=seed,
    )


def resolve_model(preset: str | None = None, **overrides) -> ModelSpec:
    """A ModelSpec from a preset name plus overrides (what `vitstudy profile` and tests use)."""
    from vitstudy.config.model_spec import MODEL_DEFAULTS
    from vitstudy.config.presets import preset_args

    args = dict(MODEL_DEFAULTS)
    if preset is not None:
        args.update(preset_args(preset))
    args.update({k: v for k, v in overrides.items() if v is not None})
    return ModelSpec(preset=preset, **args)
