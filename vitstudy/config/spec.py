"""The frozen run spec: everything that determines one cell's result, validated, with a stable hash.

A RunSpec is what the manifest layer hands to an executor. Its sections are pydantic models with
`extra="forbid"`, so a misspelt option is an error rather than silently ignored, and `frozen=True`, so a
spec is hashable and cannot drift after validation. `RunSpec.digest()` hashes the *semantic* content:
key order and cosmetic sections (`log`, the grid's name) do not change it; every value that can change
the result does. No torch import here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from vitstudy.config.phases import MASK_VALUE
from vitstudy.registry import (
    CHANNEL_MIXERS,
    DATASETS,
    HEADS,
    MIXERS,
    NORMALIZERS,
    POSITIONS,
    TOKENIZERS,
    Registry,
)

# Sections of a RunSpec that never change a result: excluded from the run id's hash.
COSMETIC_KEYS = frozenset({"grid", "log"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def _name_in(registry: Registry) -> Any:
    """A str type that must be a name in `registry` (the error lists the valid names)."""

    def check(value: str) -> str:
        registry.entry(value)
        return value

    return Annotated[str, AfterValidator(check)]


TokenizerName = _name_in(TOKENIZERS)
PositionName = _name_in(POSITIONS)
MixerName = _name_in(MIXERS)
NormalizerName = _name_in(NORMALIZERS)
HeadName = _name_in(HEADS)
ChannelMixerName = _name_in(CHANNEL_MIXERS)
DatasetName = _name_in(DATASETS)


_SHARED_OPTIONS = ("num_heads", "qkv_bias", "mlp_ratio", "attn_path")  # set by presets, harmless unused


def _component_options() -> dict[str, list[tuple[str, str]]]:
    """option -> the (kind, name) of every component that takes it, from the registries' meta."""
    users: dict[str, list[tuple[str, str]]] = {}
    for registry in (MIXERS, NORMALIZERS, CHANNEL_MIXERS):
        for entry in registry.entries():
            for option in entry.meta.get("options", ()):
                if option not in _SHARED_OPTIONS:
                    users.setdefault(option, []).append((registry.kind, entry.name))
    return users


class ModelSpec(_Strict):
    """A fully resolved model: preset values merged under the manifest's overrides."""

    preset: Optional[str] = None
    img_size: PositiveInt
    patch_size: PositiveInt
    in_chans: PositiveInt
    num_classes: PositiveInt
    embed_dim: PositiveInt
    depth: PositiveInt
    num_heads: PositiveInt
    mlp_ratio: PositiveFloat
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
    head_dim: Optional[PositiveInt] = None  # attention: head width; None: embed_dim / num_heads
    null_key: bool = False  # attention: a zero key/value with a learned per-query score (CMHSA)
    window: Optional[PositiveInt] = None  # dwsa: local window (odd); None: global
    kernel_size: PositiveInt = 3  # conv: kernel (odd)
    conv_groups: Literal["full", "depthwise"] = "full"  # conv: C→C or per channel
    pool_size: PositiveInt = 3  # pool: window (odd)
    token_mlp_ratio: PositiveFloat = 4.0  # patch_mlp: hidden width T → rT → T
    temperature: PositiveFloat = 1.0  # softmax normaliser
    sigmoid_bias: Optional[float] = None  # sigmoid normaliser: None = −log N
    learnable_bias: bool = False  # sigmoid normaliser: learn the bias per head
    channel_mixer: ChannelMixerName = "mlp"  # the block's second sub-layer
    block_order: Literal["mixer_first", "mlp_first"] = "mixer_first"
    # --- tokenizer options (T2T, issue 6) go here, each with a default --------------------------------
    # used by tokenizers whose registry entry has meta soft_split (t2t); Yuan et al. 2021's values
    t2t_layer: Literal["performer", "transformer"] = "performer"  # the layer between soft splits
    t2t_dim: PositiveInt = 64  # token width inside the T2T module
    t2t_features: PositiveInt = 32  # performer: number of fixed random features
    t2t_kernels: tuple[PositiveInt, ...] = (7, 3, 3)  # one per soft split
    t2t_strides: tuple[PositiveInt, ...] = (4, 2, 2)  # product = patch_size (the total stride)
    t2t_paddings: tuple[Annotated[int, Field(ge=0)], ...] = (2, 1, 1)

    @model_validator(mode="after")
    def _soft_splits(self) -> "ModelSpec":
        """T2T: the soft-split chain must give a whole token grid, and patch_size must be its total
        stride; t2t_* options set away from their defaults need a soft-split tokenizer."""
        t2t = [f for f in type(self).model_fields if f.startswith("t2t_")]
        if not TOKENIZERS.entry(self.tokenizer).meta.get("soft_split"):
            changed = [f for f in t2t if getattr(self, f) != type(self).model_fields[f].default]
            if changed:
                users = [e.name for e in TOKENIZERS.entries() if e.meta.get("soft_split")]
                raise ValueError(f"{', '.join(changed)} apply to tokenizer {', '.join(users)}, "
                                 f"not to tokenizer '{self.tokenizer}'")
            return self
        from math import prod

        from vitstudy.config.soft_split import soft_split_sides

        soft_split_sides(self.img_size, self.t2t_kernels, self.t2t_strides, self.t2t_paddings)
        if self.patch_size != prod(self.t2t_strides):
            raise ValueError(f"tokenizer '{self.tokenizer}': patch_size {self.patch_size} must equal the "
                             f"product of t2t_strides {'·'.join(map(str, self.t2t_strides))} = "
                             f"{prod(self.t2t_strides)} (the tokenizer's total stride)")
        return self


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
            if data.get("rel_pos") is not None and data["rel_pos"] == meta.get("rel_pos"):
                data["rel_pos"] = None
        return data

    @model_validator(mode="after")
    def _combinations(self) -> "ModelSpec":
        """Refuse combinations that make no sense, before anything runs, saying what would be valid."""
        mixer = MIXERS.entry(self.mixer).meta
        with_norm = [e.name for e in MIXERS.entries() if e.meta.get("normalizer")]
        if self.normalizer is not None and not mixer.get("normalizer"):
            raise ValueError(f"normalizer '{self.normalizer}' given to mixer '{self.mixer}', which has "
                             f"none; mixers with a normalizer: {', '.join(with_norm)}")
        if self.rel_pos and mixer.get("rel_pos") is None:
            ok = [e.name for e in MIXERS.entries() if e.meta.get("rel_pos") is not None]
            raise ValueError(f"rel_pos: mixer '{self.mixer}' has no attention over a token grid to bias; "
                             f"valid for: {', '.join(ok)}")
        if self.head == "cls" and not mixer.get("mixes_prefix"):
            raise ValueError(f"head 'cls' with mixer '{self.mixer}': the class token is not on the token "
                             "grid, so it would never see the image; use head: gap")
        # an option set away from its default must belong to one of the chosen components
        chosen = {(MIXERS.kind, self.mixer), (NORMALIZERS.kind, self.normalizer),
                  (CHANNEL_MIXERS.kind, self.channel_mixer)}
        for option, users in _component_options().items():
            if self._is_set(option) and not chosen & set(users):
                names = ", ".join(f"{kind} '{name}'" for kind, name in users)
                raise ValueError(f"{option} applies only to {names}; this model has mixer '{self.mixer}', "
                                 f"normalizer '{self.normalizer}', channel_mixer '{self.channel_mixer}'")
        for option in ("kernel_size", "pool_size", "window"):
            value = getattr(self, option)
            if value is not None and value % 2 == 0:
                raise ValueError(f"{option} must be odd (same-size output), got {value}")
        if self.block_order == "mlp_first" and self.channel_mixer == "none":
            raise ValueError("block_order mlp_first needs a channel mixer (channel_mixer is 'none')")
        return self

    def _is_set(self, option: str) -> bool:
        return getattr(self, option) != type(self).model_fields[option].default

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}; "
                f"valid patch sizes: {[p for p in range(1, self.img_size + 1) if self.img_size % p == 0]}")
        if ("num_heads" in MIXERS.entry(self.mixer).meta["options"] and self.embed_dim % self.num_heads
                and getattr(self, "head_dim", None) is None):
            raise ValueError(
                f"num_heads {self.num_heads} does not divide embed_dim {self.embed_dim}; valid: "
                f"{[h for h in range(1, self.embed_dim + 1) if self.embed_dim % h == 0][:12]}")
        return self


class DataSpec(_Strict):
    dataset: DatasetName
    batch_size: PositiveInt = 128
    root: str = "data"  # where datasets that live on disk are found (or downloaded to)
    num_workers: Optional[int] = Field(None, ge=0)  # per-sample pipelines' loader workers; None: automatic
    train_subset: Optional[PositiveInt] = None  # use only the first N training samples (smoke grids)
    shift: int = Field(0, ge=0)  # random translation of training images, in pixels at model resolution


# timm's RandAugment config: "rand" then -m<magnitude> -n<ops> -w<weights> -mstd<std> -mmax<max> -inc<0|1>
# -p<prob>, e.g. DeiT's rand-m9-mstd0.5-inc1
RANDAUGMENT = r"^rand(-(m|n|w|mstd|mmax|inc|p)[0-9.]+)*$"
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true",
                   "fsdp", "deepspeed", "xla", "xla_fsdp", "single_device", "single_xla"]


class TrainSpec(_Strict):
    epochs: PositiveInt = 30
    lr: PositiveFloat = 1e-3
    min_lr: float = Field(1e-5, ge=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: Optional[PositiveFloat] = None
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true"] = "32-true"
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = "auto"
    devices: int | Literal["auto"] = 1
    strategy: Strategy = "auto"  # Lightning's: ddp for several GPUs/nodes, xla on TPUs, ...
    num_nodes: PositiveInt = 1
    deterministic: bool = False
    compile: bool = False  # torch.compile the model (the first steps pay for compilation)
    # --- the DeiT recipe's pieces; `recipe` fills them with a paper's values (vitstudy.config.recipes) ---
    recipe: Optional[Literal["deit", "t2t"]] = None
    lr_base_batch: Optional[PositiveInt] = None  # lr is for this many images per step: × global batch / this
    cooldown_epochs: int = Field(0, ge=0)  # epochs at min_lr after the cosine (T2T-ViT: 10)
    mixup: float = Field(0.0, ge=0.0)  # Mixup's Beta(α, α); 0: off (timm's Mixup)
    cutmix: float = Field(0.0, ge=0.0)  # CutMix's Beta(α, α); 0: off
    mixup_prob: float = Field(1.0, ge=0.0, le=1.0)  # chance a batch is mixed at all
    mixup_switch_prob: float = Field(0.5, ge=0.0, le=1.0)  # chance of CutMix rather than Mixup, both on
    randaugment: Optional[Annotated[str, Field(pattern=RANDAUGMENT)]] = None  # e.g. rand-m9-mstd0.5-inc1
    color_jitter: float = Field(0.0, ge=0.0)  # brightness = contrast = saturation jitter
    random_erasing: float = Field(0.0, ge=0.0, le=1.0)  # chance per image (timm's RandomErasing, pixel mode)
    repeated_aug: PositiveInt = 1  # repeated augmentation: each sample this many times per epoch (timm)
    ema_decay: Optional[float] = Field(None, gt=0.0, lt=1.0)  # EMA of the weights, evaluated alongside
    # multi-phase runs (vitstudy.config.phases), set by the manifest's `phases:` rules, never by hand:
    init_from: Optional[str] = None  # the run id (same grid folder) whose final weights start this run
    transfer: Optional[Literal["conv_to_attention", "copy"]] = None  # how those weights become ours
    # conv_to_attention: the score of every non-target key. −1e4 is exact (one-hot softmax) but saturated:
    # the attention pattern then gets no gradient. A finite value (e.g. −10) leaks ≤ N·e^m of each row's
    # weight off target and lets phase 2 learn where to attend (vitstudy.models.transfer.conv).
    transfer_mask_value: float = Field(MASK_VALUE, lt=0)

    @model_validator(mode="after")
    def _mask_needs_transfer(self) -> "TrainSpec":
        if self.transfer_mask_value != MASK_VALUE and self.transfer != "conv_to_attention":
            raise ValueError("transfer_mask_value applies only to a conv_to_attention phase "
                             f"(transfer is {self.transfer!r})")
        return self

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainSpec":
        if self.warmup_epochs + self.cooldown_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} + cooldown_epochs {self.cooldown_epochs} "
                             f"must be below epochs {self.epochs}")
        return self

    @model_validator(mode="after")
    def _mixing(self) -> "TrainSpec":
        if (self.mixup_prob != 1.0 or self.mixup_switch_prob != 0.5) and not (self.mixup or self.cutmix):
            raise ValueError("mixup_prob and mixup_switch_prob need mixup or cutmix above 0")
        return self


class LogSpec(_Strict):
    """How a run reports; never part of the run id.

    `loggers` picks Lightning's loggers. TensorBoard (`tb/`) is always written, whatever the list says,
    because the report reads its event files; `csv` adds `csv/metrics.csv`, and `wandb` and `mlflow`
    (optional extras: `pip install "vitstudy[wandb]"`) send the same metrics to those services.
    """

    every_n_steps: PositiveInt = 50  # train/loss_step and lr to the loggers (Lightning's default)
    progress_bar: Optional[bool] = None  # None: only when stdout is a terminal
    loggers: tuple[Literal["tensorboard", "csv", "wandb", "mlflow"], ...] = ("tensorboard",)
    project: Optional[str] = None  # W&B project / MLflow experiment; default: the grid's name
    tracking_uri: Optional[str] = None  # MLflow; default: file:<results>/<grid>/mlruns

    @model_validator(mode="after")
    def _installed(self) -> "LogSpec":
        import importlib.util

        for name in set(self.loggers) & {"wandb", "mlflow"}:
            if importlib.util.find_spec(name) is None:
                raise ValueError(f"logger '{name}' needs the {name} package: "
                                 f"pip install \"vitstudy[{name}]\"")
        return self


class RunSpec(_Strict):
    grid: str
    seed: int = Field(ge=0)
    model: ModelSpec
    data: DataSpec
    train: TrainSpec = TrainSpec()
    log: LogSpec = LogSpec()

    def semantic(self) -> dict[str, Any]:
        """The spec as plain data without its cosmetic sections, and without options left at their
        declared defaults (so adding a new option with a default keeps every existing run id)."""
        return self.model_dump(mode="json", exclude=set(COSMETIC_KEYS), exclude_defaults=True)

    def digest(self, length: int = 8) -> str:
        blob = json.dumps(self.semantic(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:length]
