"""`budget:` read and solved with a cost function whose answers are known (no torch): the value found is
the closest valid one (checked against every value), each distinct model is costed once and only a few
are, the solved value is in the spec and the run id, and every misuse is a ManifestError at its key."""

from types import SimpleNamespace

import pytest

from vitstudy.config.manifest import ManifestError, parse
from vitstudy.config.model_spec import ModelSpec

GRID = """\
defaults:
  model: {preset: vit_micro, embed_dim: 48, depth: 3, num_heads: 3, head: gap}
  data: {dataset: digits}
grid:
  model.mixer: [attention, pool, conv]
seeds: [0, 1]
"""
WIDTH = {"attention": 4, "pool": 0, "conv": 9}  # a block's mixer params per embed_dim²


def fake_cost(model: ModelSpec) -> SimpleNamespace:
    """Non-decreasing in embed_dim and depth, different per mixer."""
    params = model.depth * (WIDTH[model.mixer] + 8) * model.embed_dim ** 2 + 100 * model.embed_dim
    return SimpleNamespace(params=params, macs=16 * params + 7)


class Counted:
    def __init__(self):
        self.models: list[ModelSpec] = []

    def __call__(self, model: ModelSpec) -> SimpleNamespace:
        self.models.append(model)
        return fake_cost(model)


def budget(**keys) -> str:
    return "budget:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())


def solved(text: str, **kwargs) -> dict[str, object]:
    """mixer -> the first cell's Matched, and check every seed of a variant got the same."""
    grid = parse(text, "m.yaml", cost=kwargs.pop("cost", fake_cost), **kwargs)
    by_mixer: dict[str, object] = {}
    for cell in grid.cells:
        assert by_mixer.setdefault(cell.spec.model.mixer, cell.budget) == cell.budget
    return by_mixer


def brute_force(mixer: str, fld: str, target: float, cost: str = "params") -> int:
    """The valid value of `fld` whose cost is closest to `target` (the smaller on a tie), by trying all."""
    base = _model(mixer)
    best = None
    for v in range(1, 400 if fld == "embed_dim" else 128):
        try:
            model = ModelSpec(**{**base, fld: v})
        except ValueError:
            continue
        gap = abs(getattr(fake_cost(model), cost) - target)
        if best is None or gap < best[0]:
            best = (gap, v)
    return best[1]


@pytest.mark.parametrize(("fld", "target"), [("embed_dim", t) for t in (1000, 20_000, 73_457, 150_000, 1_000_003)]
                         + [("depth", t) for t in (50_000, 150_000, 1_000_003)])
def test_the_value_found_is_the_closest_valid_one(fld, target):
    matched = solved(GRID + budget(cost="params", adjust=f"model.{fld}", reference=target, tolerance=0.99))
    for mixer, m in matched.items():
        assert m.value == brute_force(mixer, fld, target), (mixer, m)
        assert m.achieved == fake_cost(ModelSpec(**{**_model(mixer), fld: m.value})).params
        assert m.reference == target and m.label == "given as a number"


def _model(mixer: str) -> dict:
    """The variant's model without a budget, as data."""
    grid = parse(GRID, "m.yaml")
    return next(c.spec.model for c in grid.cells if c.spec.model.mixer == mixer).model_dump()


def test_attention_keeps_heads_dividing_embed_dim_pool_need_not():
    # 45K: attention's cost 36·e² + 100·e is closest at e = 34, pool's 24·e² + 100·e at e = 41
    matched = solved(GRID + budget(cost="params", adjust="model.embed_dim", reference=45_000, tolerance=0.5))
    assert matched["attention"].value == 33 and matched["pool"].value == 41


def test_baseline_keeps_its_value_and_the_others_match_it():
    grid = parse(GRID + budget(cost="macs", adjust="model.embed_dim"), "m.yaml", cost=fake_cost)
    reference = fake_cost(grid.cells[0].spec.model).macs
    first = grid.cells[0].budget
    assert (first.value, first.achieved, first.reference, first.tolerance) == (48, reference, reference, 0.05)
    assert first.label == "the first variant, model.mixer=attention"
    for cell in grid.cells:  # the spec is the solved model: its cost is the one reported
        assert cell.spec.model.embed_dim == cell.budget.value
        assert fake_cost(cell.spec.model).macs == cell.budget.achieved
        assert abs(cell.budget.achieved / reference - 1) <= 0.05
    assert {c.spec.model.mixer: c.budget.value for c in grid.cells} == {
        "attention": 48, "pool": brute_force("pool", "embed_dim", reference, "macs"),
        "conv": brute_force("conv", "embed_dim", reference, "macs")}


def test_the_solved_value_is_in_the_run_id():
    plain = {c.spec.model.mixer: c.run_id for c in parse(GRID, "m.yaml").cells if c.spec.seed == 0}
    matched = {c.spec.model.mixer: c.run_id for c in parse(GRID + budget(cost="params", adjust="model.embed_dim"),
                                                          "m.yaml", cost=fake_cost).cells if c.spec.seed == 0}
    assert matched["attention"] == plain["attention"]  # the baseline keeps embed_dim 48: the same cell
    assert matched["pool"] != plain["pool"] and matched["conv"] != plain["conv"]


def test_reference_as_a_mapping_names_one_variant():
    matched = solved(GRID + budget(cost="params", adjust="model.depth", reference="{model.mixer: conv}",
                                   tolerance=0.3))
    conv = fake_cost(ModelSpec(**_model("conv"))).params
    assert matched["conv"].value == 3 and matched["conv"].reference == conv
    assert matched["conv"].label == "the variant model.mixer=conv"
    assert matched["pool"].value == brute_force("pool", "depth", conv) > 3  # cheaper blocks: more of them


def test_reference_given_as_yaml_string_number():
    # YAML 1.1 reads 2e4 (no dot) as a string
    assert solved(GRID + budget(cost="params", adjust="model.embed_dim", reference="2e4",
                                tolerance=0.2))["pool"].reference == 20_000


def test_each_model_is_costed_once_and_few_are():
    counted = Counted()
    # pool and conv split no heads: their two num_heads variants are one model (one cell), searched twice
    text = GRID.replace("[attention, pool, conv]", "[attention, pool, conv]\n  model.num_heads: [3, 6]")
    grid = parse(text + budget(cost="params", adjust="model.embed_dim", reference=150_000, tolerance=0.2),
                 "m.yaml", cost=counted)
    assert len({c.axes for c in grid.cells}) == 4
    assert len(counted.models) == len(set(counted.models))
    assert len(counted.models) <= 4 * 5  # four distinct models, a handful of widths each (not hundreds)


def test_excluded_variants_are_not_solved_and_baseline_is_the_first_left():
    counted = Counted()
    text = GRID + "exclude:\n  - {model.mixer: attention}\n" + budget(cost="params", adjust="model.embed_dim")
    matched = solved(text, cost=counted)
    assert set(matched) == {"pool", "conv"} and matched["pool"].label == "the first variant, model.mixer=pool"
    assert all(m.mixer != "attention" for m in counted.models)


def test_smoke_cells_get_the_values_solved_for_the_full_grid():
    text = GRID + budget(cost="params", adjust="model.embed_dim") + "smoke:\n  train: {epochs: 1}\n"
    full, smoke = solved(text), solved(text, smoke=True)
    assert {k: v.value for k, v in full.items()} == {k: v.value for k, v in smoke.items()}


def test_a_tuned_variant_is_tuned_at_its_solved_size():
    text = GRID + budget(cost="params", adjust="model.embed_dim") + "tune:\n  train.lr: [1.0e-3, 3.0e-3]\n"
    grid = parse(text, "m.yaml", cost=fake_cost)
    final = {c.spec.model.mixer: c.spec.model for c in grid.cells if c.stage == "final"}
    tuning = [c for c in grid.cells if c.stage == "tune"]
    assert len(tuning) == 6 and final["pool"].embed_dim != 48
    assert all(c.spec.model == final[c.spec.model.mixer] for c in tuning)


def test_without_a_cost_function_a_budget_is_a_programming_error():
    with pytest.raises(TypeError, match="cost=.*model_cost"):
        parse(GRID + budget(cost="params", adjust="model.embed_dim"), "m.yaml")
    parse(GRID, "m.yaml")  # no budget: no cost needed


def test_an_included_manifest_is_solved_with_the_cost_given(tmp_path):
    (tmp_path / "sub.yaml").write_text(GRID + budget(cost="params", adjust="model.embed_dim"))
    grid = parse("include: sub.yaml\n", tmp_path / "top.yaml", cost=fake_cost)
    assert {c.budget.value for c in grid.cells if c.spec.model.mixer == "attention"} == {48}
    assert all(c.budget is not None for c in grid.cells)


UNREACHABLE = budget(cost="params", adjust="model.depth", reference=100)


def test_an_unreachable_budget_names_variant_reference_and_closest():
    with pytest.raises(ManifestError) as info:
        parse(GRID + UNREACHABLE, "m.yaml", cost=fake_cost)
    problems = info.value.problems
    assert len(problems) == 3 and {p.path for p in problems} == {"budget"}
    assert {p.line for p in problems} == {GRID.count("\n") + 2}  # the budget block
    pool = fake_cost(ModelSpec(**{**_model("pool"), "depth": 1})).params
    assert (f"variant model.mixer=pool: no value of model.depth (1 to 128) brings params within 5% of the "
            f"reference 100 (given as a number); the closest reachable is {pool:,} "
            f"({pool / 100 - 1:+.1%}) at model.depth=1") in [p.message for p in problems]


BAD = {  # name: (budget text, key path, hint)
    "not a mapping": ("budget: [params]\n", "budget", "budget is a mapping"),
    "unknown key": (budget(cost="params", adjust="model.depth", tolerence=0.1), "budget.tolerence",
                    "did you mean 'tolerance'"),
    "unknown cost": (budget(cost="flops", adjust="model.depth"), "budget.cost", "params, macs"),
    "missing cost": (budget(adjust="model.depth"), "budget.cost", "params, macs"),
    "option not adjustable": (budget(cost="params", adjust="model.mlp_ratio"), "budget.adjust",
                              "model.embed_dim, model.depth"),
    "tolerance zero": (budget(cost="params", adjust="model.depth", tolerance=0), "budget.tolerance",
                       "above 0 and below 1"),
    "tolerance not a number": (budget(cost="params", adjust="model.depth", tolerance="tight"), "budget.tolerance",
                               "above 0 and below 1"),
    "reference not a number": (budget(cost="params", adjust="model.depth", reference="first"), "budget.reference",
                               "`baseline`"),
    "reference negative": (budget(cost="params", adjust="model.depth", reference=-5), "budget.reference",
                           "`baseline`"),
    "reference key not an axis": (budget(cost="params", adjust="model.depth", reference="{model.head: gap}"),
                                  "budget.reference.model.head", "unknown grid key"),
    "reference names no variant": (budget(cost="params", adjust="model.depth", reference="{model.mixer: dwsa}"),
                                   "budget.reference", "names 0 variants"),
}
FIXED = {  # name: (extra manifest text, key path): each sets the adjusted key besides the budget
    "grid axis": ("grid:\n  model.mixer: [pool]\n  model.depth: [2, 4]\n", "budget.adjust"),
    "smoke": ("smoke:\n  model: {depth: 1}\n", "smoke.model.depth"),
    "phase rule": ("phases:\n  - {match: {model.mixer: conv}, transfer: conv_to_attention, model: {depth: 2}}\n",
                   "phases[0].model.depth"),
    "exclude rule": ("exclude:\n  - {model.mixer: pool, model.depth: 3}\n", "exclude[0].model.depth"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_budget_names_its_key_and_what_is_valid(case):
    text, key, hint = BAD[case]
    with pytest.raises(ManifestError) as info:
        parse(GRID + text, "m.yaml", cost=fake_cost)
    assert any(p.path == key and hint in p.message for p in info.value.problems), info.value.render()


@pytest.mark.parametrize("case", FIXED)
def test_nothing_else_may_fix_the_adjusted_key(case):
    extra, key = FIXED[case]
    text = (GRID.split("grid:")[0] + extra) if case == "grid axis" else GRID + extra
    with pytest.raises(ManifestError) as info:
        parse(text + budget(cost="params", adjust="model.depth"), "m.yaml", cost=fake_cost)
    assert any(p.path == key and "solved per variant by budget:" in p.message
               for p in info.value.problems), info.value.render()


def test_a_reference_naming_several_variants_lists_them():
    text = GRID.replace("model.mixer: [attention, pool, conv]",
                        "model.mixer: [attention, pool]\n  model.num_heads: [3, 6]")
    with pytest.raises(ManifestError) as info:
        parse(text + budget(cost="params", adjust="model.depth", reference="{model.mixer: attention}"),
              "m.yaml", cost=fake_cost)
    assert ("names 2 variants (model.mixer=attention, model.num_heads=3; model.mixer=attention, "
            "model.num_heads=6)") in info.value.render()
