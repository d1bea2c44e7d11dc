"""The model section of a run spec: which components (tokenizer, position, mixer, normaliser, channel
mixer, head) and which of their options, validated without torch.

The components are the registries' names (vitstudy.registry); a component's options are the ModelSpec
fields its registry entry lists in meta `options`, and each option belongs to the components that list
it. Options the papers' presets set for every model (`SHARED_OPTIONS`: ViT's heads, qkv bias, MLP ratio,
attention path) may stay on a model whose components ignore them; `canonical_options` resets such an
option to its unset value, so that it cannot give one model two run ids. Any other option set for a
component that does not take it is an error.

Values are strict (vitstudy.config.strict.StrictModel): no value is converted into another type (a bool
is not an int, "3" is not a number, 3.5 is not an int), with two exceptions that lose nothing: an int
where a float is expected (`lr: 1`, as YAML writes it) and a list where a tuple is expected (YAML and
JSON have no tuples). Every float is finite, and every size lies between 1 and a bound generous for
research (`SIZE_LIMITS`) that keeps a typo from asking for a model no machine could hold or even count. A
check across fields raises errors.SpecError naming the fields at fault, so the manifest layer reports it
at the line of the value that set them.
"""

from __future__ import annotations

from math import prod
from typing import Annotated, Any, Literal, Mapping, Optional

from pydantic import Field, PositiveFloat, model_validator

from vitstudy.config.errors import SpecError
from vitstudy.config.strict import StrictModel, listed, registry_name, upto
from vitstudy.registry import CHANNEL_MIXERS, HEADS, MIXERS, NORMALIZERS, POSITIONS, TOKENIZERS

# The largest value of each size (a token grid side, a width, a kernel): ViT-22B is 6144 wide and 48
# deep; a 255×255 kernel makes 65,025 heads in the conv → attention transfer, within num_heads' bound.
SIZE_LIMITS = {"img_size": 8192, "in_chans": 1024, "num_classes": 1_000_000, "width": 65536, "depth": 1000,
               "ratio": 256, "kernel": 255, "splits": 8}
MAX_TOKENS = 1 << 20  # (img_size / patch_size)²: a 1024×1024 token grid
Width = upto(SIZE_LIMITS["width"])
Kernel = upto(SIZE_LIMITS["kernel"])
Ratio = Annotated[float, Field(gt=0, le=SIZE_LIMITS["ratio"])]


TokenizerName = registry_name(TOKENIZERS)
PositionName = registry_name(POSITIONS)
MixerName = registry_name(MIXERS)
NormalizerName = registry_name(NORMALIZERS)
HeadName = registry_name(HEADS)
ChannelMixerName = registry_name(CHANNEL_MIXERS)

# The value of every ModelSpec field that has no default, when neither the preset nor the manifest sets
# it (ViT-Ti/16 at 224 px on ImageNet). These fields stay required, without a default in the class:
# the run id hashes the spec without its default values, so these are in every hash, and giving one a
# default would change every existing run id. A test checks that the keys are the required fields.
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
    "head": "cls",
    "drop_path": 0.0,
}

# Set by every preset, read by some components only (attention and dwsa: num_heads, qkv_bias; attention:
# attn_path; the `mlp` channel mixer: mlp_ratio); see canonical_options.
SHARED_OPTIONS = ("num_heads", "qkv_bias", "mlp_ratio", "attn_path")


class ModelSpec(StrictModel):
    """A fully resolved model: preset values merged under the manifest's overrides."""

    preset: Optional[str] = None
    img_size: upto(SIZE_LIMITS["img_size"])
    patch_size: upto(SIZE_LIMITS["img_size"])
    in_chans: upto(SIZE_LIMITS["in_chans"])
    num_classes: upto(SIZE_LIMITS["num_classes"])
    embed_dim: Width
    depth: upto(SIZE_LIMITS["depth"])
    num_heads: Width
    mlp_ratio: Ratio
    qkv_bias: bool
    tokenizer: TokenizerName
    position: PositionName
    mixer: MixerName
    normalizer: Optional[NormalizerName] = None  # None for mixers without one; attention: softmax
    head: HeadName
    drop_path: float = Field(ge=0.0, lt=1.0)
    layer_scale: Optional[PositiveFloat] = None
    attn_path: Literal["auto", "fused", "explicit"] = "auto"
    # --- token-mixer, normaliser and block options: each belongs to the components whose registry
    # entry lists it in meta["options"]; setting one for another component is an error -------------
    rel_pos: Optional[bool] = None  # learned 2-D relative position (attention, dwsa); None: mixer default
    head_dim: Optional[Width] = None  # attention: head width; None: embed_dim / num_heads
    null_key: bool = False  # attention: a zero key/value with a learned per-query score (CMHSA)
    window: Optional[Kernel] = None  # dwsa: local window (odd); None: global
    kernel_size: Kernel = 3  # conv: kernel (odd)
    conv_groups: Literal["full", "depthwise"] = "full"  # conv: C→C or per channel
    pool_size: Kernel = 3  # pool: window (odd)
    token_mlp_ratio: Ratio = 4.0  # patch_mlp: hidden width T → rT → T
    temperature: PositiveFloat = 1.0  # softmax normaliser
    sigmoid_bias: Optional[float] = None  # sigmoid normaliser: None = −log N
    learnable_bias: bool = False  # sigmoid normaliser: learn the bias per head
    channel_mixer: ChannelMixerName = "mlp"  # the block's second sub-layer
    block_order: Literal["mixer_first", "mlp_first"] = "mixer_first"
    # --- tokenizer options (T2T, issue 6) go here, each with a default --------------------------------
    # used by tokenizers whose registry entry has meta soft_split (t2t); Yuan et al. 2021's values
    t2t_layer: Literal["performer", "transformer"] = "performer"  # the layer between soft splits
    t2t_dim: Width = 64  # token width inside the T2T module
    t2t_features: Width = 32  # performer: number of fixed random features
    t2t_kernels: listed(Kernel, SIZE_LIMITS["splits"]) = (7, 3, 3)  # one per soft split
    t2t_strides: listed(Kernel, SIZE_LIMITS["splits"]) = (4, 2, 2)  # product = patch_size (the total stride)
    t2t_paddings: listed(upto(SIZE_LIMITS["kernel"], least=0), SIZE_LIMITS["splits"]) = (2, 1, 1)

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        """Fill mixer-dependent defaults so equal models get equal specs (and run ids): attention's
        normaliser defaults to softmax; `rel_pos` equal to the mixer's default is stored as None."""
        if isinstance(data, dict) and data.get("mixer") in MIXERS:
            meta = MIXERS.entry(data["mixer"]).meta
            data = dict(data)
            if meta.get("normalizer") and data.get("normalizer") is None:
                data["normalizer"] = "softmax"
            if data.get("rel_pos") is not None and data["rel_pos"] is meta.get("rel_pos"):  # 0 is no bool
                data["rel_pos"] = None
        return data

    @model_validator(mode="after")
    def _soft_splits(self) -> "ModelSpec":
        """T2T: the soft-split chain must give a whole token grid, and patch_size must be its total
        stride; t2t_* options set away from their defaults need a soft-split tokenizer."""
        t2t = [f for f in type(self).model_fields if f.startswith("t2t_")]
        if not TOKENIZERS.entry(self.tokenizer).meta.get("soft_split"):
            changed = [f for f in t2t if self._is_set(f)]
            if changed:
                users = [e.name for e in TOKENIZERS.entries() if e.meta.get("soft_split")]
                raise SpecError(f"{', '.join(changed)} apply to tokenizer {', '.join(users)}, "
                                f"not to tokenizer '{self.tokenizer}'", *changed, "tokenizer")
            return self
        from vitstudy.config.soft_split import soft_split_sides

        try:
            soft_split_sides(self.img_size, self.t2t_kernels, self.t2t_strides, self.t2t_paddings)
        except ValueError as e:
            raise SpecError(str(e), "t2t_kernels", "t2t_strides", "t2t_paddings", "img_size") from None
        if self.patch_size != prod(self.t2t_strides):
            raise SpecError(f"tokenizer '{self.tokenizer}': patch_size {self.patch_size} must equal the "
                            f"product of t2t_strides {'·'.join(map(str, self.t2t_strides))} = "
                            f"{prod(self.t2t_strides)} (the tokenizer's total stride)",
                            "patch_size", "t2t_strides")
        return self

    @model_validator(mode="after")
    def _combinations(self) -> "ModelSpec":
        """Refuse component combinations that make no sense, before anything runs, saying what would be
        valid."""
        mixer = MIXERS.entry(self.mixer).meta
        with_norm = [e.name for e in MIXERS.entries() if e.meta.get("normalizer")]
        if self.normalizer is not None and not mixer.get("normalizer"):
            raise SpecError(f"normalizer '{self.normalizer}' given to mixer '{self.mixer}', which has "
                            f"none; mixers with a normalizer: {', '.join(with_norm)}", "normalizer", "mixer")
        if self.rel_pos and mixer.get("rel_pos") is None:
            ok = [e.name for e in MIXERS.entries() if e.meta.get("rel_pos") is not None]
            raise SpecError(f"rel_pos: mixer '{self.mixer}' has no attention over a token grid to bias; "
                            f"valid for: {', '.join(ok)}", "rel_pos", "mixer")
        if self.head == "cls" and not mixer.get("mixes_prefix"):
            raise SpecError(f"head 'cls' with mixer '{self.mixer}': the class token is not on the token "
                            "grid, so it would never see the image; use head: gap", "head", "mixer")
        return self

    @model_validator(mode="after")
    def _options(self) -> "ModelSpec":
        """An option set away from its default must belong to one of the chosen components; sizes that
        keep the token grid must be odd; `mlp_first` needs a channel mixer."""
        read = options_read(self.model_dump())
        for option, users in _option_users().items():
            if option not in read and self._is_set(option):
                names = ", ".join(f"{kind} '{name}'" for kind, name in users)
                raise SpecError(f"{option} applies only to {names}; this model has mixer '{self.mixer}', "
                                f"normalizer '{self.normalizer}', channel_mixer '{self.channel_mixer}'",
                                option, *dict.fromkeys(kind.replace(" ", "_") for kind, _ in users))
        for option in ("kernel_size", "pool_size", "window"):
            value = getattr(self, option)
            if value is not None and value % 2 == 0:
                raise SpecError(f"{option} must be odd (same-size output), got {value}", option)
        if self.block_order == "mlp_first" and self.channel_mixer == "none":
            raise SpecError("block_order mlp_first needs a channel mixer (channel_mixer is 'none')",
                            "block_order", "channel_mixer")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        if self.img_size % self.patch_size:
            raise SpecError(
                f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}; "
                f"valid patch sizes: {_divisors(self.img_size)}", "patch_size", "img_size")
        if (self.img_size // self.patch_size) ** 2 > MAX_TOKENS:
            raise SpecError(
                f"img_size {self.img_size} / patch_size {self.patch_size} makes a "
                f"{self.img_size // self.patch_size}² token grid; at most {MAX_TOKENS:,} tokens (1024²): "
                f"patch_size ≥ {-(-self.img_size // 1024)}", "patch_size", "img_size")
        if "num_heads" in MIXERS.entry(self.mixer).meta["options"] and self.embed_dim % self.num_heads \
                and self.head_dim is None:
            raise SpecError(
                f"num_heads {self.num_heads} does not divide embed_dim {self.embed_dim}; valid: "
                f"{_divisors(self.embed_dim)[:12]}", "num_heads", "embed_dim")
        return self

    def _is_set(self, option: str) -> bool:
        return getattr(self, option) != type(self).model_fields[option].default


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _option_users() -> dict[str, list[tuple[str, str]]]:
    """option -> the (kind, name) of every component that takes it, shared options left out."""
    users: dict[str, list[tuple[str, str]]] = {}
    for registry in (MIXERS, NORMALIZERS, CHANNEL_MIXERS, TOKENIZERS):
        for entry in registry.entries():
            for option in entry.meta.get("options", ()):
                if option not in SHARED_OPTIONS:
                    users.setdefault(option, []).append((registry.kind, entry.name))
    return users


def options_read(model: Mapping[str, Any]) -> set[str] | None:
    """The options the model's chosen components read (their registry meta `options`), from ModelSpec
    fields as data; None when a component's name is not registered (validation says so)."""
    fields = ModelSpec.model_fields
    chosen = [(MIXERS, model.get("mixer")), (NORMALIZERS, model.get("normalizer")),
              (CHANNEL_MIXERS, model.get("channel_mixer", fields["channel_mixer"].default)),
              (TOKENIZERS, model.get("tokenizer"))]
    read: set[str] = set()
    for registry, name in chosen:
        if name is None and registry is NORMALIZERS:
            continue  # no normaliser (attention's None becomes softmax, which reads no shared option)
        if name not in registry:
            return None
        read.update(registry.entry(name).meta.get("options", ()))
    return read


def canonical_options(model: dict[str, Any], unset: Mapping[str, Any]) -> dict[str, Any]:
    """`model` (ModelSpec fields as data) with each shared option that none of its chosen components
    reads set to `unset`'s value (the value when the manifest does not set it: its defaults', else the
    preset's, else MODEL_DEFAULTS'), or dropped to the field's default. Two cells that differ only in such
    an option (a pool mixer with num_heads 2 and 4) then get one spec and one run id."""
    read = options_read(model)
    if read is None:
        return model
    out = dict(model)
    for option in SHARED_OPTIONS:
        if option in read or option not in out:
            continue
        if option in unset:
            out[option] = unset[option]
        elif not ModelSpec.model_fields[option].is_required():
            del out[option]
    return out
