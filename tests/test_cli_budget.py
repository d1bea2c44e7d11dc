"""`budget:` through the command: `vitstudy plan` shows each cell's solved value and how far its cost is
from the reference, and a summary line; an unreachable budget exits 2 naming the variant, the reference
and the closest reachable cost, with no traceback and nothing trained."""

from vitstudy.cli import main
from vitstudy.config.manifest import parse
from vitstudy.models.cost import model_cost

GRID = """\
defaults:
  model: {preset: vit_micro, embed_dim: 48, depth: 3, num_heads: 3, head: gap}
  data: {dataset: digits}
grid:
  model.mixer: [attention, pool]
seeds: [0, 1]
budget:
  cost: params
  adjust: model.embed_dim
"""


def test_plan_shows_solved_values_costs_and_the_worst_deviation(tmp_path, capsys):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(GRID)
    assert main(["plan", str(manifest), "--out", str(tmp_path / "results")]) == 0
    lines = capsys.readouterr().out.splitlines()
    grid = parse(GRID, manifest, cost=model_cost)
    reference = model_cost(grid.cells[0].spec.model).params
    pool = next(c for c in grid.cells if c.spec.model.mixer == "pool")
    deviation = model_cost(pool.spec.model).params / reference - 1
    assert pool.spec.model.embed_dim != 48 and abs(deviation) <= 0.05
    for cell in grid.cells:
        row = next(line for line in lines if cell.run_id in line)
        shown = f"{deviation:+.1%}" if cell.spec.model.mixer == "pool" else "+0.0%"
        assert row.endswith(f"  embed_dim {cell.spec.model.embed_dim} (budget, {shown})"), row
    assert (f"budget: params matched to {reference:,} (the first variant, model.mixer=attention) within ±5% "
            f"by model.embed_dim; worst deviation {deviation:+.1%} (m/{pool.run_id})") in lines


def test_an_unreachable_budget_exits_2_naming_variant_reference_and_closest(tmp_path, capsys):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(GRID.replace("model.embed_dim", "model.depth") + "  reference: 1000\n")
    depth_1 = model_cost(parse(GRID.split("budget:")[0].replace("depth: 3", "depth: 1"), manifest)
                         .cells[-1].spec.model).params  # pool at one block: the cheapest it can be
    for command in ("plan", "run-grid"):
        assert main([command, str(manifest), "--out", str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "nothing was run" in err
        assert (f"{manifest}:8: budget: variant model.mixer=pool: no value of model.depth (1 to 128) brings "
                f"params within 5% of the reference 1,000 (given as a number); the closest reachable is "
                f"{depth_1:,} ({depth_1 / 1000 - 1:+.1%}) at model.depth=1") in err, err
        assert "variant model.mixer=attention:" in err
    assert not (tmp_path / "results").exists()
