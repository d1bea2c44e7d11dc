"""The cost of a manifest's rows without training, as `vitstudy profile MANIFEST` prints it: per row
(a cell, seeds aside) its parameters and MACs (vitstudy.models.cost) and its inference and training
images/s measured on random images with the cell's own training step (vitstudy.training.throughput).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vitstudy.config.manifest import load
from vitstudy.models.cost import model_cost
from vitstudy.results.format import human
from vitstudy.results.groups import group_runs, short_axis
from vitstudy.results.runs import Run
from vitstudy.training.throughput import measure_cost


@dataclass
class CostTable:
    grid: str
    device: str
    axes: list[str]  # short names, the first columns of every row
    rows: list[dict]  # the axis values and measure_cost's figures


def cost_table(manifest: Path, device: str | None = None, batch_size: int | None = None) -> CostTable:
    """Measure one model per row on `device` (default: cuda if available) with `batch_size` images
    (default: each cell's data.batch_size)."""
    grid = load(manifest, cost=model_cost)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs = [Run({"spec": c.spec.model_dump(mode="json")}, axes=tuple(c.axes)) for c in grid.cells]
    axes, groups = group_runs(runs)
    specs = {id(r.record): c.spec for r, c in zip(runs, grid.cells, strict=True)}
    rows = []
    for g in groups:
        spec = specs[id(g.runs[0].record)]
        cost = measure_cost(spec.model, batch_size or spec.data.batch_size, device, train=spec.train)
        rows.append({**{short_axis(a): g.label.get(a) for a in axes}, **cost})
    return CostTable(grid.name, device, [short_axis(a) for a in axes], rows)


def to_markdown(t: CostTable) -> str:
    """A heading line and a Markdown table: the axes, params, MACs, images/s and the batch size."""
    head = t.axes + ["params", "MACs", "infer img/s", "train img/s", "batch"]
    lines = [f"grid '{t.grid}' on {t.device}: {len(t.rows)} cells (seeds aside), random images, no training",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in t.rows:
        cells = [str(r[a]) for a in t.axes] + [human(r["params"]), human(r["macs"]),
                                               f"{r['infer_img_s']:,.0f}", f"{r['train_img_s']:,.0f}",
                                               str(r["batch_size"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
