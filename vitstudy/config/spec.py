"""The frozen run spec: everything that determines one cell's result, validated, with a stable hash.

A RunSpec is what the manifest layer hands to an executor: the model (vitstudy.config.model_spec), the
data, the training recipe and how the run logs. Its sections are pydantic models with `extra="forbid"`,
so a misspelt option is an error rather than silently ignored, and `frozen=True`, so a spec is hashable
and cannot drift after validation. `RunSpec.digest()` hashes the *semantic* content: key order and
cosmetic sections (`log`, the grid's name) do not change it; every value that can change the result
does. Values are strict, finite and bounded (vitstudy.config.model_spec's docstring), checked against
each other across sections (a shift smaller than the image, the dataset's classes and channels), and
`train.init_from` / `train.tune_from` are run ids of the same grid folder (RUN_ID), never paths. No
torch import here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Optional

from pydantic import BeforeValidator, Field, PositiveFloat, field_validator, model_validator

from vitstudy.config.errors import SpecError, shown
from vitstudy.config.model_spec import SIZE_LIMITS, ModelSpec
from vitstudy.config.phases import MASK_VALUE, TRANSFERS
from vitstudy.config.recipes import RECIPES
from vitstudy.config.strict import StrictModel, as_tuple, listed, registry_name, upto
from vitstudy.registry import DATASETS, unknown_name

# Sections of a RunSpec that never change a result: excluded from the run id's hash.
COSMETIC_KEYS = frozenset({"grid", "log"})
SEEDS = 1 << 32  # seeds are in [0, 2³²): what numpy's and torch's generators take
# The form of a run id (vitstudy.config.cells.make_run_id): a readable part, the seed and a hash; no
# "/" and no leading ".", so a run id joined onto a grid folder names a folder inside it
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}_s[0-9]+-[0-9a-f]{8}$"
RunId = Annotated[str, Field(pattern=RUN_ID)]
BATCH = 1 << 20  # the largest batch: a million images per step
EPOCHS = 1_000_000

DatasetName = registry_name(DATASETS)


class DataSpec(StrictModel):
    dataset: DatasetName
    batch_size: upto(BATCH) = 128
    root: str = "data"  # where datasets that live on disk are found (or downloaded to)
    num_workers: Optional[upto(1024, least=0)] = None  # per-sample pipelines' loader workers; None: automatic
    train_subset: Optional[upto(1 << 40)] = None  # use only the first N training samples (smoke grids)
    # random translation of training images, in pixels at model resolution (below model.img_size)
    shift: upto(SIZE_LIMITS["img_size"], least=0) = 0


# timm's RandAugment config: "rand" then -m<magnitude> -n<ops> -w<weights> -mstd<std> -mmax<max> -inc<0|1>
# -p<prob>, e.g. DeiT's rand-m9-mstd0.5-inc1
RANDAUGMENT = r"^rand(-(m|n|w|mstd|mmax|inc|p)[0-9.]+)*$"
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true",
                   "fsdp", "deepspeed", "xla", "xla_fsdp", "single_device", "single_xla"]


Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class TrainSpec(StrictModel):
    epochs: upto(EPOCHS) = 30
    lr: PositiveFloat = 1e-3
    min_lr: float = Field(1e-5, ge=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    betas: Annotated[tuple[Beta, Beta], BeforeValidator(as_tuple)] = (0.9, 0.999)  # AdamW's; a list in YAML
    grad_clip: Optional[PositiveFloat] = None
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true"] = "32-true"
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = "auto"
    devices: int | Literal["auto"] = 1  # how many per node; -1: all of them (Lightning's)
    strategy: Strategy = "auto"  # Lightning's: ddp for several GPUs/nodes, xla on TPUs, ...
    num_nodes: upto(1 << 16) = 1
    deterministic: bool = False
    compile: bool = False  # torch.compile the model (the first steps pay for compilation)
    # --- the DeiT recipe's pieces; `recipe` fills them with a paper's values (vitstudy.config.recipes) ---
    recipe: Optional[Literal[tuple(RECIPES)]] = None
    lr_base_batch: Optional[upto(BATCH)] = None  # lr is for this many images per step: × global batch / this
    cooldown_epochs: upto(EPOCHS, least=0) = 0  # epochs at min_lr after the cosine (T2T-ViT: 10)
    mixup: float = Field(0.0, ge=0.0)  # Mixup's Beta(α, α); 0: off (timm's Mixup)
    cutmix: float = Field(0.0, ge=0.0)  # CutMix's Beta(α, α); 0: off
    mixup_prob: float = Field(1.0, ge=0.0, le=1.0)  # chance a batch is mixed at all
    mixup_switch_prob: float = Field(0.5, ge=0.0, le=1.0)  # chance of CutMix rather than Mixup, both on
    randaugment: Optional[Annotated[str, Field(pattern=RANDAUGMENT)]] = None  # e.g. rand-m9-mstd0.5-inc1
    color_jitter: float = Field(0.0, ge=0.0)  # brightness = contrast = saturation jitter
    random_erasing: float = Field(0.0, ge=0.0, le=1.0)  # chance per image (timm's RandomErasing, pixel mode)
    repeated_aug: upto(64) = 1  # repeated augmentation: each sample this many times per epoch (timm)
    ema_decay: Optional[float] = Field(None, gt=0.0, lt=1.0)  # EMA of the weights, evaluated alongside
    # multi-phase runs (vitstudy.config.phases), set by the manifest's `phases:` rules, never by hand:
    init_from: Optional[RunId] = None  # the run id (same grid folder) whose final weights start this run
    transfer: Optional[Literal[TRANSFERS]] = None  # how those weights become ours
    # conv_to_attention: the score of every non-target key. −1e4 is exact (one-hot softmax) but saturated:
    # the attention pattern then gets no gradient. A finite value (e.g. −10) leaks ≤ N·e^m of each row's
    # weight off target and lets phase 2 learn where to attend (vitstudy.models.transfer.conv).
    transfer_mask_value: float = Field(MASK_VALUE, lt=0)
    # a tuned grid's final cell (vitstudy.config.tune), set by the manifest's `tune:`, never by hand: the run
    # ids (same grid folder, manifest order) of its tuning cells, and the validation metric that picks one
    tune_from: Optional[Annotated[tuple[RunId, ...], BeforeValidator(as_tuple)]] = None
    tune_metric: Optional[str] = None

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if value != "auto" and (type(value) is not int or not (value >= 1 or value == -1) or value > 1 << 16):
            raise SpecError(f"devices is a count ≥ 1 (at most {1 << 16}), -1 (every device) or auto, "
                            f"got {shown(value)}", "devices")
        return value

    @model_validator(mode="after")
    def _mask_needs_transfer(self) -> "TrainSpec":
        if self.transfer_mask_value != MASK_VALUE and self.transfer != "conv_to_attention":
            raise SpecError("transfer_mask_value applies only to a conv_to_attention phase "
                            f"(transfer is {self.transfer!r})", "transfer_mask_value", "transfer")
        return self

    @model_validator(mode="after")
    def _tuning_pairs(self) -> "TrainSpec":
        if (self.tune_from is None) != (self.tune_metric is None):
            raise SpecError("tune_from and tune_metric go together (both set by the manifest's `tune:`)",
                            "tune_from", "tune_metric")
        return self

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainSpec":
        if self.warmup_epochs + self.cooldown_epochs >= self.epochs:
            raise SpecError(f"warmup_epochs {self.warmup_epochs} + cooldown_epochs {self.cooldown_epochs} "
                            f"must be below epochs {self.epochs}",
                            "warmup_epochs", "cooldown_epochs", "epochs")
        return self

    @model_validator(mode="after")
    def _mixing(self) -> "TrainSpec":
        if (self.mixup_prob != 1.0 or self.mixup_switch_prob != 0.5) and not (self.mixup or self.cutmix):
            raise SpecError("mixup_prob and mixup_switch_prob need mixup or cutmix above 0",
                            "mixup_prob", "mixup_switch_prob", "mixup", "cutmix")
        return self


class LogSpec(StrictModel):
    """How a run reports; never part of the run id.

    `loggers` picks Lightning's loggers. TensorBoard (`tb/`) is always written, whatever the list says,
    because the report reads its event files; `csv` adds `csv/metrics.csv`, and `wandb` and `mlflow`
    (optional extras: `pip install "vitstudy[wandb]"`) log each cell as a run of theirs, with the spec as
    its params and metrics.json's final numbers (vitstudy.training.loggers).
    """

    every_n_steps: upto(1 << 30) = 50  # train/loss_step and lr to the loggers (Lightning's default)
    progress_bar: Optional[bool] = None  # None: only when stdout is a terminal
    loggers: listed(Literal["tensorboard", "csv", "wandb", "mlflow"], 4, least=0) = ("tensorboard",)
    project: Optional[str] = None  # W&B project / MLflow experiment; default: the grid's name
    tracking_uri: Optional[str] = None  # MLflow; default: sqlite:///<results>/<grid>/mlflow.db

    @model_validator(mode="after")
    def _installed(self) -> "LogSpec":
        import importlib.util

        for name in set(self.loggers) & {"wandb", "mlflow"}:
            if importlib.util.find_spec(name) is None:
                raise SpecError(f"logger '{name}' needs the {name} package: "
                                f"pip install \"vitstudy[{name}]\"", "loggers")
        return self


class RunSpec(StrictModel):
    grid: str
    seed: int = Field(ge=0, lt=SEEDS)
    stage: Literal["final", "tune"] = "final"  # "tune": a tuning cell of a tuned grid (vitstudy.config.tune)
    model: ModelSpec
    data: DataSpec
    train: TrainSpec = TrainSpec()
    log: LogSpec = LogSpec()

    @model_validator(mode="after")
    def _fits_the_data(self) -> "RunSpec":
        """The data's shift moves less than the image; the model has the dataset's classes and channels
        (imagefolder's classes are its folders': the manifest sets them)."""
        if self.data.shift >= self.model.img_size:
            raise SpecError(f"shift {self.data.shift} moves the whole {self.model.img_size}-px image out of "
                            f"view; it must be below model.img_size", "data.shift", "model.img_size")
        meta = DATASETS.entry(self.data.dataset).meta
        for fld in ("num_classes", "in_chans"):
            if meta.get(fld) is not None and getattr(self.model, fld) != meta[fld]:
                raise SpecError(f"{fld} {getattr(self.model, fld)} contradicts dataset "
                                f"'{self.data.dataset}', which has {meta[fld]}; leave it unset (it comes "
                                "from the dataset)",
                                f"model.{fld}", "data.dataset")
        return self

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
# Set only by a manifest's rules, never by hand (vitstudy.config.manifest): field -> the rule that sets it
_PHASE = "the phase rule itself (the manifest's phases:)"
_TUNE = "the tune rule itself (the manifest's tune:)"
RULE_SET = {"init_from": _PHASE, "transfer": _PHASE, "tune_from": _TUNE, "tune_metric": _TUNE}


def rule_set(section: str, fld: str) -> str | None:
    """Why `section.fld` cannot be set by hand (defaults, a grid axis, smoke, a phase rule's sections),
    or None when it can."""
    if section == "train" and fld in RULE_SET:
        return f"train.{fld} is set by {RULE_SET[fld]}, never by hand"
    return None


def unknown_option(section: str, fld: Any) -> str:
    """The message for an option `section` does not have: the section it belongs to, when it is another
    section's ("epochs is a train option, not a data option"), else the closest of this section's."""
    home = next((s for s, cls in SECTIONS.items() if s != section and fld in cls.model_fields), None)
    if home is None:
        return unknown_name(f"{section} option", fld, SECTIONS[section].model_fields)
    if home == "train" and fld in RULE_SET:
        return f"{fld} is a train option set by {RULE_SET[fld]}, not a {section} option"
    return f"{fld} is a {home} option, not a {section} option: set {home}.{fld}"
