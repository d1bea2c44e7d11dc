"""The model spec's facts, each defined once: the values of its required fields, which component reads
which option; an option no chosen component reads cannot split one model into two run ids."""

import pytest

from vitstudy.config.manifest import ManifestError, parse
from vitstudy.config.model_spec import MODEL_DEFAULTS, ModelSpec, canonical_options, options_read

HEAD = "name: m\ndefaults:\n  model: {preset: vit_micro, head: gap}\n  data: {dataset: digits}\nseeds: [0, 1]\n"


def test_model_defaults_give_exactly_the_required_fields():
    """The required fields are in every run id's hash; MODEL_DEFAULTS fills them, and only them."""
    required = {name for name, f in ModelSpec.model_fields.items() if f.is_required()}
    assert set(MODEL_DEFAULTS) == required
    assert ModelSpec(**MODEL_DEFAULTS).normalizer == "softmax"  # a whole model: ViT-Ti/16's shape


@pytest.mark.parametrize("axis,values,components", [
    ("model.num_heads", [2, 4], {"model.mixer": ["pool"]}),
    ("model.qkv_bias", [True, False], {"model.mixer": ["conv"]}),
    ("model.attn_path", ["explicit", "fused"], {"model.mixer": ["dwsa"]}),
    ("model.mlp_ratio", [2.0, 3.0], {"model.channel_mixer": ["attention"]}),
])
def test_an_option_no_component_reads_gives_one_cell(axis, values, components):
    grid = parse(HEAD + "grid:\n" + "".join(f"  {k}: {v}\n" for k, v in {**components, axis: values}.items()))
    assert len(grid.cells) == 2  # one per seed
    field = axis.split(".")[1]
    assert {getattr(c.spec.model, field) for c in grid.cells} == {getattr(parse(HEAD).cells[0].spec.model, field)}


@pytest.mark.parametrize("axis,values,components", [
    ("model.num_heads", [2, 4], {"model.mixer": ["attention", "dwsa"]}),
    ("model.attn_path", ["explicit", "auto"], {"model.mixer": ["attention"]}),
    ("model.mlp_ratio", [2.0, 3.0], {"model.channel_mixer": ["mlp"]}),
])
def test_an_option_a_component_reads_stays_an_axis(axis, values, components):
    grid = parse(HEAD + "grid:\n" + "".join(f"  {k}: {v}\n" for k, v in {**components, axis: values}.items()))
    n = len(next(iter(components.values())))
    assert len(grid.cells) == n * len(values) * 2
    assert len({c.run_id for c in grid.cells}) == len(grid.cells)


def test_an_unread_option_keeps_the_manifests_default_not_the_presets():
    """experiments.yaml sets num_heads 3 in its defaults (vit_micro has 4): its pool cells keep 3, so
    their run ids are those of the results already on disk."""
    text = HEAD.replace("head: gap}", "head: gap, num_heads: 2}") + "grid:\n  model.mixer: [pool]\n" \
        "  model.num_heads: [4, 8]\n"
    assert {c.spec.model.num_heads for c in parse(text).cells} == {2}


def test_canonical_options_resets_only_what_no_chosen_component_reads():
    model = {**MODEL_DEFAULTS, "mixer": "pool", "num_heads": 8, "mlp_ratio": 2.0, "attn_path": "fused"}
    out = canonical_options(model, {**MODEL_DEFAULTS, "num_heads": 4})
    assert (out["num_heads"], out["mlp_ratio"], "attn_path" in out) == (4, 2.0, False)
    assert options_read({**MODEL_DEFAULTS, "mixer": "pool"}) == {"pool_size", "mlp_ratio"}
    assert options_read({**MODEL_DEFAULTS, "mixer": "nope"}) is None  # validation names the mixer
    assert canonical_options({**model, "mixer": "nope"}, MODEL_DEFAULTS) == {**model, "mixer": "nope"}


def test_a_phase_rule_cannot_set_what_the_phase_sets():
    text = HEAD + ("grid:\n  model.mixer: [conv]\nphases:\n  - match: {model.mixer: conv}\n"
                   "    transfer: conv_to_attention\n    train: {init_from: x}\n")
    with pytest.raises(ManifestError) as info:
        parse(text, "p.yaml")
    rendered = info.value.render()
    assert "phases[0].train.init_from: train.init_from is set by the phase rule itself" in rendered
    assert "did you mean 'init_from'" not in rendered
