"""Per-variant tuning (`tune:` in a manifest): every variant gets its own training recipe, picked on
validation, so that no variant wins or loses a comparison because of one shared learning rate.

    tune:
      train.lr: [1.0e-3, 3.0e-3, 1.0e-2]   # candidates: the product of these lists
      seeds: [100]                          # the tuning cells' seeds (default [0])
      metric: val/acc1                      # what picks a candidate (default); */loss is minimised

A variant is one combination of grid values (after exclude rules). Expanding it gives ordinary cells:
a *tuning cell* (`stage: "tune"`) per candidate and tune seed, whose spec is the variant's with the
candidate's values, and a *final cell* per manifest seed, whose spec is the variant's plus
`train.tune_from` (the tuning cells' run ids, in manifest order: candidates, then seeds) and
`train.tune_metric`. When a final cell starts, vitstudy.training.tune scores the candidates from the
tuning cells' records and trains at the best one's values. Only training options are tuned (never
`epochs`: every candidate gets the variant's budget), never a key the grid compares, never the test
split, and not together with `phases:`. This module checks the `tune:` section and builds the specs;
no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from vitstudy.config import manifest_grid, manifest_rules
from vitstudy.config.errors import Bad, CellError, SpecError, explain, shown
from vitstudy.config.spec import RunSpec, TrainSpec, rule_set, unknown_option
from vitstudy.registry import unknown_name

# what may pick a candidate: a final validation metric, or one at the best-validation epoch (`best:`)
METRICS = ("val/acc1", "val/acc5", "val/loss", "val/ema_acc1", "val/ema_acc5", "val/ema_loss",
           "best:val/acc1", "best:val/acc5", "best:val/loss")
DEFAULT_METRIC = "val/acc1"
# train options a candidate may not set: the budget, and what phases and tuning set themselves
UNTUNABLE = ("epochs", "init_from", "transfer", "transfer_mask_value", "tune_from", "tune_metric")


@dataclass(frozen=True)
class TuneRule:
    """A manifest's `tune:`: the candidates (each the (key, value, YAML path) triples it sets, in manifest
    order), the tuning cells' seeds and the metric that picks a candidate."""

    candidates: tuple[manifest_grid.Option, ...]
    seeds: tuple[int, ...]
    metric: str

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _, _ in self.candidates[0]) if self.candidates else ()


def metric_mode(metric: str) -> Literal["min", "max"]:
    """Losses are minimised, accuracies maximised."""
    return "min" if metric.endswith("loss") else "max"


def read(value: Any, grid_keys: list[str], phases: bool, bad: Bad) -> TuneRule | None:
    """The checked `tune:` section (None without one), reporting every problem through `bad`."""
    if value is None:
        return None
    if not isinstance(value, dict):
        bad(("tune",), "tune is a mapping of train options to lists of candidate values, plus optional "
                       "seeds and metric, e.g. {train.lr: [1.0e-3, 3.0e-3], seeds: [100], metric: val/acc1}")
        return None
    if phases:
        bad(("tune",), "tune together with phases is not supported: tune a one-phase grid "
                       "(phase 2 would need its own candidates)")
    seeds = manifest_rules.seeds(value.get("seeds", [0]), ("tune", "seeds"), bad)
    metric = _metric(value.get("metric", DEFAULT_METRIC), bad)
    factors = [_factor(key, values, grid_keys, bad) for key, values in value.items()
               if key not in ("seeds", "metric")]
    if not factors:
        bad(("tune",), "tune names at least one train option and its candidates, e.g. "
                       "train.lr: [1.0e-3, 3.0e-3, 1.0e-2]")
    return TuneRule(tuple(manifest_grid.combos([f for f in factors if f])), tuple(seeds), metric)


def _metric(metric: Any, bad: Bad) -> str:
    if isinstance(metric, str) and metric.removeprefix("best:").startswith("test/"):
        bad(("tune", "metric"), f"{shown(metric)}: the test split never picks a candidate (the test score "
                                f"would be tuned on itself); use a validation metric: {', '.join(METRICS)}")
    elif metric not in METRICS:
        bad(("tune", "metric"), unknown_name("tuning metric", metric, METRICS))
    return str(metric)


def _factor(key: Any, values: Any, grid_keys: list[str], bad: Bad) -> manifest_grid.Factor:
    """One tuned key's candidates as a factor (see vitstudy.config.manifest_grid); [] when it is bad."""
    path = ("tune", key)
    section, _, fld = str(key).partition(".")
    if section != "train" or not fld:
        bad(path, "tuned keys are train options (train.lr, train.weight_decay, ...), plus `seeds` and "
                  "`metric`: tuning picks each variant's training recipe, the grid picks the variants")
    elif fld not in TrainSpec.model_fields:
        bad(path, unknown_option("train", fld))
    elif rule_set("train", fld):
        bad(path, f"{rule_set('train', fld)}, so it is not tuned")
    elif fld in UNTUNABLE:
        bad(path, f"train.{fld} cannot be tuned (epochs: every candidate trains on the variant's budget; "
                  "transfer_mask_value: a phase rule sets it)")
    elif key in grid_keys:
        bad(path, f"{key} is a grid axis: a key is either compared across the grid or tuned per variant, "
                  "not both")
    elif not isinstance(values, list) or not values:
        bad(path, f"{shown(values)}: a tuned key takes a non-empty list of candidate values")
    elif len({repr(v) for v in values}) != len(values):
        bad(path, f"{shown(values)} repeats a candidate")
    else:
        return [((key, v, path + (i,)),) for i, v in enumerate(values)]
    return []


def tuning_spec(variant: RunSpec, candidate: manifest_grid.Option, seed: int, metric: str) -> RunSpec:
    """A tuning cell: the variant's resolved spec with one candidate's values, at a tune seed."""
    data = variant.model_dump(mode="json")
    data.update(seed=seed, stage="tune")
    for key, value, _ in candidate:
        data["train"][key.partition(".")[2]] = value
    paths = {key.partition(".")[2]: path for key, _, path in candidate}
    try:
        spec = RunSpec(**data)
    except ValidationError as e:
        raise CellError([(_candidate_path(err, paths), "tuning candidate: " + explain(err, TrainSpec))
                         for err in e.errors()]) from None
    if "ema_" in metric and spec.train.ema_decay is None:
        raise CellError([(("tune", "metric"), f"{metric} needs train.ema_decay (the EMA weights' metrics)")])
    return spec


def _candidate_path(err: dict, paths: dict[str, tuple]) -> tuple:
    """The YAML path of the candidate value at fault: the field's (an item of a list at its index), or
    for a check across fields the first of them the candidate sets; else `tune`."""
    loc, cause = err["loc"], err.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):
        return next((paths[f] for f in cause.fields if f in paths), ("tune",))
    if len(loc) > 1 and str(loc[1]) in paths:
        return paths[str(loc[1])] + tuple(x for x in loc[2:] if isinstance(x, int))
    return ("tune",)


def final_spec(variant: RunSpec, tune_from: tuple[str, ...], metric: str) -> RunSpec:
    """A final cell: the variant's spec, told which tuning cells pick its values (vitstudy.training.tune)."""
    data = variant.model_dump(mode="json")
    data["train"].update(tune_from=list(tune_from), tune_metric=metric)
    return RunSpec(**data)
