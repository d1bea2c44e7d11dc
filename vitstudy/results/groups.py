"""Rows of a table: the runs of one cell across seeds, grouped by the axes that vary.

With a manifest, a run's axes are the manifest's (dotted key, value) pairs; from a results folder alone
they are inferred: the flattened spec keys whose values differ between runs (seed, grid name and
logging aside, and for a tuned grid the values its tuning chose), a preset named instead of the fields
it fixes. Statistics over a row count only the finished seeds: mean and sample standard deviation
(n − 1); a row also gives each finished seed's value, which paired comparisons match on
(vitstudy.results.stats).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vitstudy.results.runs import Run


@dataclass
class Group:
    """One row: the runs of one cell across seeds."""

    label: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [v for r in self.runs if r.status == "done" and (v := r.value(metric)) is not None]

    def seeded(self, metric: str) -> list[tuple[Any, float]]:
        """(seed, value) of each finished run."""
        return [((r.record.get("spec") or {}).get("seed"), v) for r in self.runs
                if r.status == "done" and (v := r.value(metric)) is not None]

    def mean(self, metric: str) -> float | None:
        vals = self.values(metric)
        return statistics.fmean(vals) if vals else None

    def std(self, metric: str) -> float | None:
        vals = self.values(metric)
        return statistics.stdev(vals) if len(vals) > 1 else None

    def cost(self, key: str) -> float | None:
        """Params and MACs from any record (known before training); measured ones averaged over seeds."""
        vals = self.values(key) or [v for r in self.runs if (v := r.value(key)) is not None]
        if not vals and key in ("params", "macs") and self.runs:
            return _static_cost(self.runs[0].record.get("spec")).get(key)
        return statistics.fmean(vals) if vals else None

    def split_size(self, split: str) -> int | None:
        """Images in a split ("test") as the finished runs used them; None where unknown (older records)."""
        sizes = {(r.record.get("split_sizes") or {}).get(split) for r in self.runs if r.status == "done"}
        sizes.discard(None)
        return sizes.pop() if len(sizes) == 1 else None

    def tuned(self, key: str) -> list[Any]:
        """The values the tuning chose for `key` (e.g. train.lr) in this row, several where seeds disagree."""
        return list(dict.fromkeys(keys[key] for r in self.runs
                                  if key in (keys := (r.record.get("tuned") or {}).get("keys") or {})))

    def tuned_edges(self, key: str) -> list[tuple[Any, str]]:
        """(value, "smallest" | "largest") for each chosen value of `key` at an end of the range tuned."""
        edges = {}
        for r in self.runs:
            tuned = r.record.get("tuned") or {}
            if key in tuned.get("edge", ()):
                tried = [c["values"][key] for c in tuned.get("candidates", []) if key in c.get("values", {})]
                value = tuned["keys"][key]
                edges[value] = "smallest" if value <= min(tried, default=value) else "largest"
        return list(edges.items())

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.runs)

    @property
    def expect(self) -> dict[str, float]:
        return next((r.expect for r in self.runs if r.expect), {})

    @property
    def source(self) -> str | None:
        return next((r.source for r in self.runs if r.source), None)


def _static_cost(spec: dict | None) -> dict:
    """Params and MACs of a cell that has not run (counted on the meta device, no training)."""
    try:
        from vitstudy.config.spec import ModelSpec
        from vitstudy.models.cost import model_cost

        return model_cost(ModelSpec(**spec["model"])).as_dict()
    except Exception:  # noqa: BLE001 - a spec from an older version: its cost is simply unknown
        return {}


def group_runs(runs: list[Run]) -> tuple[list[str], list[Group]]:
    """The axes that name rows and the rows, in first-appearance order."""
    if runs and all(r.axes is not None for r in runs):
        axes = list(dict.fromkeys(k for r in runs for k, _ in r.axes))
        labels = [dict(r.axes) for r in runs]
    else:
        tuned = {k for r in runs for k in (r.record.get("tuned") or {}).get("keys") or {}}
        flats = [_identity(r.record.get("spec") or {}, tuned) for r in runs]
        keys = sorted({k for f in flats for k in f})
        axes = [k for k in keys if len({f.get(k) for f in flats}) > 1]
        if "model.preset" in axes:  # a preset determines its own fields: name it, not them
            axes = ["model.preset"] + [k for k in axes if k != "model.preset" and not _determined(flats, k)]
        labels = [{k: f.get(k) for k in axes} for f in flats]
    groups: dict[tuple, Group] = {}
    for run, label in zip(runs, labels, strict=True):
        key = tuple((k, hashable(label.get(k))) for k in axes)
        groups.setdefault(key, Group({k: label.get(k) for k in axes})).runs.append(run)
    return axes, list(groups.values())


def _flatten(spec: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


NOT_IDENTITY = ("seed", "grid", "stage", "train.tune_from", "train.tune_metric")


def _identity(spec: dict, tuned: set[str]) -> dict[str, Any]:
    """The flattened spec without what does not change a result's row: seed, grid name, logging, the
    tuning's bookkeeping and the values it chose (`tuned` keys, a column of their own)."""
    flat = _flatten(spec)
    return {k: v for k, v in flat.items()
            if k not in NOT_IDENTITY and k not in tuned and not k.startswith("log.")}


def _determined(flats: list[dict], key: str) -> bool:
    seen: dict = {}
    for f in flats:
        value = hashable(f.get(key))
        if seen.setdefault(hashable(f.get("model.preset")), value) != value:
            return False
    return True


def hashable(v: Any) -> Any:
    """An axis value usable as a key (a list becomes a tuple)."""
    return tuple(v) if isinstance(v, list) else v


def short_axis(axis: str) -> str:
    """The last part of a dotted axis name, as tables and plots show it: model.head -> head."""
    return axis.rsplit(".", 1)[-1]


class UnknownAxis(ValueError):
    """A name (`name`) that is no axis of the runs; the message lists those that are."""

    def __init__(self, name: str, axes: list[str]):
        super().__init__(f"unknown axis '{name}'; the axes that vary here: {', '.join(axes) or 'none'}")
        self.name = name


def resolve_axes(names: list[str], axes: list[str]) -> list[str]:
    """Dotted axis names from user names: a full key (model.head) or its last part (head)."""
    out = []
    for name in names:
        match = [a for a in axes if a == name or short_axis(a) == name]
        if not match:
            raise UnknownAxis(name, axes)
        out.append(match[0])
    return out


def axis_value(value: Any) -> str:
    """An axis value as a table shows it: an option a variant does not have (None) is a dash."""
    return "–" if value is None else str(value)
