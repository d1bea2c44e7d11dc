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

from vitstudy.registry import DATASETS, HEADS, MIXERS, NORMALIZERS, POSITIONS, TOKENIZERS, Registry

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
DatasetName = _name_in(DATASETS)


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
    normalizer: NormalizerName
    head: HeadName
    drop_path: float = Field(ge=0.0, lt=1.0)
    layer_scale: Optional[PositiveFloat] = None
    attn_path: Literal["auto", "fused", "explicit"] = "auto"
    # --- token-mixer, normaliser and block options (issue 3) go here, each with a default ----------
    # --- tokenizer options (T2T, issue 6) go here, each with a default --------------------------------


    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}; "
                f"valid patch sizes: {[p for p in range(1, self.img_size + 1) if self.img_size % p == 0]}")
        if MIXERS.entry(self.mixer).meta.get("uses_heads") and self.embed_dim % self.num_heads:
            raise ValueError(
                f"num_heads {self.num_heads} does not divide embed_dim {self.embed_dim}; valid: "
                f"{[h for h in range(1, self.embed_dim + 1) if self.embed_dim % h == 0][:12]}")
        return self


class DataSpec(_Strict):
    dataset: DatasetName
    batch_size: PositiveInt = 128
    root: str = "data"  # where datasets that live on disk are found (or downloaded to)
    num_workers: int = Field(0, ge=0)
    train_subset: Optional[PositiveInt] = None  # use only the first N training samples (smoke grids)
    shift: int = Field(0, ge=0)  # random translation of training images, in pixels at model resolution


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
    deterministic: bool = False

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainSpec":
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} must be below epochs {self.epochs}")
        return self


class LogSpec(_Strict):
    """How a run reports; never part of the run id."""

    every_n_steps: PositiveInt = 10
    progress_bar: Optional[bool] = None  # None: only when stdout is a terminal


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
