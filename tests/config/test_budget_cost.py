"""Budgets solved with the real cost counter (vitstudy.models.cost): every variant of the default grid
within 5% of the baseline's params, no valid neighbour closer; depth as the adjusted option; the
reference as a number and as a named variant."""

from functools import lru_cache
from pathlib import Path

import pytest

from vitstudy.config.manifest import parse
from vitstudy.config.model_spec import ModelSpec
from vitstudy.models.cost import model_cost

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_GRID = (ROOT / "experiments.yaml").read_text()
MATCHED = DEFAULT_GRID + """
budget:
  cost: params
  adjust: model.embed_dim
  reference: baseline
  tolerance: 0.05
"""


def variants(grid) -> dict:
    """axes -> one cell of each variant (its seed-0 cell)."""
    return {c.axes: c for c in grid.cells if c.spec.seed == 0}


@lru_cache(maxsize=None)
def cost_of(model: ModelSpec):
    """model_cost, each model once for the whole file (the solver's own cache lives one parse)."""
    return model_cost(model)


def params(model: ModelSpec) -> int:
    return cost_of(model).params


def counted_cost():
    calls = []

    def cost(model: ModelSpec):
        calls.append(model)
        return cost_of(model)

    return cost, calls


def test_every_variant_of_the_default_grid_within_5_percent_of_the_baseline():
    cost, calls = counted_cost()
    grid = parse(MATCHED, ROOT / "experiments.yaml", cost=cost)
    cells = variants(grid)
    assert len(cells) == 12 and len(grid.cells) == 60  # 12 variants × 5 seeds
    baseline = cells[(("model.mixer", "attention"), ("model.normalizer", "softmax"))]
    reference = params(baseline.spec.model)
    assert baseline.spec.model.embed_dim == 48  # the reference variant keeps its own value
    for cell in cells.values():
        count = params(cell.spec.model)
        assert abs(count / reference - 1) <= 0.05, (cell.axes, count, reference)
        assert (cell.budget.reference, cell.budget.achieved) == (reference, count)
    widths = {c.axes[0][1]: c.spec.model.embed_dim for c in cells.values()}
    assert widths["patch_mlp"] > 48 and widths["pool"] > 48 and widths["conv"] < 48  # sizes did move
    assert len(calls) == len(set(calls)) and len(calls) <= 7 + 5 * 4  # a handful per variant, not hundreds
    for cell in {c.spec.model.mixer: c for c in cells.values()}.values():  # no valid width next to the
        for neighbour in (_valid_width(cell.spec.model, -1), _valid_width(cell.spec.model, +1)):
            # one found is closer
            assert abs(params(neighbour) / reference - 1) >= abs(cell.budget.deviation), (cell.axes, neighbour)


def _valid_width(model: ModelSpec, step: int) -> ModelSpec:
    """The model at the nearest embed_dim below (step -1) or above (+1) its own that validates."""
    width = model.embed_dim + step
    while True:
        try:
            return ModelSpec(**{**model.model_dump(), "embed_dim": width})
        except ValueError:  # heads do not divide it
            width += step


THREE = DEFAULT_GRID.split("\ngrid:")[0] + """
grid:
  model.mixer: [attention, pool, conv]
"""


def test_depth_as_the_adjusted_option():
    text = THREE.replace("depth: 3", "depth: 6") + "budget: {cost: params, adjust: model.depth, tolerance: 0.15}\n"
    cells = variants(parse(text, "depth.yaml", cost=cost_of))
    depth = {c.spec.model.mixer: c.spec.model.depth for c in cells.values()}
    assert depth["attention"] == 6 and depth["pool"] > 6 and depth["conv"] < 6
    reference = params(cells[(("model.mixer", "attention"),)].spec.model)
    for cell in cells.values():
        assert abs(params(cell.spec.model) / reference - 1) <= 0.15


@pytest.mark.parametrize("reference", ["5.0e5", "{model.mixer: conv}"])
def test_reference_as_a_number_and_as_a_named_variant(reference):
    text = THREE + f"budget: {{cost: macs, adjust: model.embed_dim, reference: {reference}}}\n"
    cells = {c.spec.model.mixer: c for c in variants(parse(text, "ref.yaml", cost=cost_of)).values()}
    conv = next(c.spec.model for c in parse(THREE, "ref.yaml").cells if c.spec.model.mixer == "conv")
    target = 5.0e5 if reference == "5.0e5" else cost_of(conv).macs
    for cell in cells.values():
        assert abs(cost_of(cell.spec.model).macs / target - 1) <= 0.05, cell.axes
        assert cell.budget.reference == target
    assert (cells["conv"].spec.model.embed_dim == 48) == reference.startswith("{")  # the named one keeps it
