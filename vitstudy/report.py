"""Comparison tables from the files on disk alone (never an executor's memory), so a report works
while a grid runs, after a crash, and on results copied back from a cluster.

One row per cell without its seed: mean ± sample std over the finished seeds, n, params and MACs.
The columns that name a row are the spec keys whose values differ between rows.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vitstudy.profile import human

METRIC = "test/acc1"


@dataclass
class Row:
    key: tuple[tuple[str, Any], ...]  # the flattened spec without seed
    values: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    params: int | None = None
    macs: int | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def load_records(grid_dir: Path, cells: Iterable[tuple[str, dict]] | None = None) -> list[dict]:
    """The metrics.json records under a grid folder. With `cells` ((run_id, spec) pairs, e.g. from a
    manifest), exactly those runs in that order, a cell without files counting as pending."""
    grid_dir = Path(grid_dir)
    if cells is None:
        cells = [(p.parent.name, None) for p in sorted(grid_dir.glob("*/metrics.json"))]
    records = []
    for run_id, spec in cells:
        try:
            records.append(json.loads((grid_dir / run_id / "metrics.json").read_text()))
        except FileNotFoundError:
            if spec is not None:
                records.append({"run_id": run_id, "status": "pending", "spec": spec})
    return records


def _flatten(spec: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def summarize(records: list[dict], metric: str = METRIC) -> tuple[list[str], list[Row]]:
    """Group records by spec-without-seed; return the distinguishing columns and the rows."""
    rows: dict[tuple, Row] = {}
    for rec in records:
        if rec.get("spec") is None:
            continue
        flat = _flatten(rec["spec"])
        for cosmetic in ("seed", "grid"):
            flat.pop(cosmetic, None)
        flat = {k: v for k, v in flat.items() if not k.startswith("log.")}
        key = tuple(sorted(flat.items()))
        row = rows.setdefault(key, Row(key))
        row.statuses[rec["status"]] = row.statuses.get(rec["status"], 0) + 1
        cost = rec.get("cost") or {}
        row.params, row.macs = cost.get("params", row.params), cost.get("macs", row.macs)
        if rec["status"] == "done" and metric in rec.get("metrics", {}):
            row.values.append(float(rec["metrics"][metric]))
    all_keys = {k for row in rows for k, _ in row}
    varying = [k for k in sorted(all_keys)
               if len({dict(row).get(k) for row in rows}) > 1 and k != "model.preset"]
    return varying, list(rows.values())


def markdown_table(records: list[dict], metric: str = METRIC) -> str:
    columns, rows = summarize(records, metric)
    header = [c.split(".", 1)[-1] for c in columns] + [f"{metric} (mean ± std)", "n", "params", "MACs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        d = dict(row.key)
        cells = [str(d.get(c)) for c in columns]
        result = f"{row.mean:.2f} ± {row.std:.2f}" if row.values else "–"
        other = {s: n for s, n in row.statuses.items() if s != "done"}
        if other:
            result += " (" + ", ".join(f"{n} {s}" for s, n in sorted(other.items())) + ")"
        cells += [result, str(len(row.values)),
                  human(row.params) if row.params else "–", human(row.macs) if row.macs else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
