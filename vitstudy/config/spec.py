"""The frozen run spec: everything that determines one cell's result, validated, with a stable hash.

A RunSpec is what the manifest layer hands to an executor: the model (vitstudy.config.model_spec), the
data, the training recipe and how the run logs. Its sections are pydantic models with `extra="forbid"`,
so a misspelt option is an error rather than silently ignored, and `frozen=True`, so a spec is hashable
and cannot drift after validation. `RunSpec.digest()` hashes the *semantic* content: key order and
cosmetic sections (`log`, the grid's name) do not change it; every value that can change the result
does. No torch import here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from vitstudy.config.model_spec import ModelSpec, StrictModel, registry_name
from vitstudy.config.phases import MASK_VALUE, TRANSFERS
from vitstudy.config.recipes import RECIPES
from vitstudy.registry import DATASETS

# Sections of a RunSpec that never change a result: excluded from the run id's hash.
COSMETIC_KEYS = frozenset({"grid", "log"})

DatasetName = registry_name(DATASETS)


class DataSpec(StrictModel):
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


class TrainSpec(StrictModel):
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
    recipe: Optional[Literal[tuple(RECIPES)]] = None
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
    transfer: Optional[Literal[TRANSFERS]] = None  # how those weights become ours
    # conv_to_attention: the score of every non-target key. −1e4 is exact (one-hot softmax) but saturated:
    # the attention pattern then gets no gradient. A finite value (e.g. −10) leaks ≤ N·e^m of each row's
    # weight off target and lets phase 2 learn where to attend (vitstudy.models.transfer.conv).
    transfer_mask_value: float = Field(MASK_VALUE, lt=0)
    # a tuned grid's final cell (vitstudy.config.tune), set by the manifest's `tune:`, never by hand: the run
    # ids (same grid folder, manifest order) of its tuning cells, and the validation metric that picks one
    tune_from: Optional[tuple[str, ...]] = None
    tune_metric: Optional[str] = None

    @model_validator(mode="after")
    def _mask_needs_transfer(self) -> "TrainSpec":
        if self.transfer_mask_value != MASK_VALUE and self.transfer != "conv_to_attention":
            raise ValueError("transfer_mask_value applies only to a conv_to_attention phase "
                             f"(transfer is {self.transfer!r})")
        return self

    @model_validator(mode="after")
    def _tuning_pairs(self) -> "TrainSpec":
        if (self.tune_from is None) != (self.tune_metric is None):
            raise ValueError("tune_from and tune_metric go together (both set by the manifest's `tune:`)")
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


class LogSpec(StrictModel):
    """How a run reports; never part of the run id.

    `loggers` picks Lightning's loggers. TensorBoard (`tb/`) is always written, whatever the list says,
    because the report reads its event files; `csv` adds `csv/metrics.csv`, and `wandb` and `mlflow`
    (optional extras: `pip install "vitstudy[wandb]"`) log each cell as a run of theirs, with the spec as
    its params and metrics.json's final numbers (vitstudy.training.loggers).
    """

    every_n_steps: PositiveInt = 50  # train/loss_step and lr to the loggers (Lightning's default)
    progress_bar: Optional[bool] = None  # None: only when stdout is a terminal
    loggers: tuple[Literal["tensorboard", "csv", "wandb", "mlflow"], ...] = ("tensorboard",)
    project: Optional[str] = None  # W&B project / MLflow experiment; default: the grid's name
    tracking_uri: Optional[str] = None  # MLflow; default: sqlite:///<results>/<grid>/mlflow.db

    @model_validator(mode="after")
    def _installed(self) -> "LogSpec":
        import importlib.util

        for name in set(self.loggers) & {"wandb", "mlflow"}:
            if importlib.util.find_spec(name) is None:
                raise ValueError(f"logger '{name}' needs the {name} package: "
                                 f"pip install \"vitstudy[{name}]\"")
        return self


class RunSpec(StrictModel):
    grid: str
    seed: int = Field(ge=0)
    stage: Literal["final", "tune"] = "final"  # "tune": a tuning cell of a tuned grid (vitstudy.config.tune)
    model: ModelSpec
    data: DataSpec
    train: TrainSpec = TrainSpec()
    log: LogSpec = LogSpec()

    def semantic(self) -> dict[str, Any]:
        """The spec as plain data without its cosmetic sections, and without options left at their
        declared defaults (so adding a new option with a default keeps every existing run id)."""
        return self.model_dump(mode="json", exclude=set(COSMETIC_KEYS), exclude_defaults=True)

    def depends_on(self) -> tuple[str, ...]:
        """The run ids (same grid folder) that must have finished before this cell starts: its phase 1
        (train.init_from) and its tuning cells (train.tune_from)."""
        return ((self.train.init_from,) if self.train.init_from else ()) + (self.train.tune_from or ())

    def digest(self, length: int = 8) -> str:
        blob = json.dumps(self.semantic(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:length]


# A manifest's sections (its `defaults`, grid keys `section.field`, smoke and phase overrides): the
# RunSpec fields that are spec sections, and their types.
SECTIONS: dict[str, type[StrictModel]] = {"model": ModelSpec, "data": DataSpec, "train": TrainSpec,
                                          "log": LogSpec}
