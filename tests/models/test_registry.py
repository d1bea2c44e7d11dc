"""Each mixer's, normaliser's and channel mixer's registry meta `options` is exactly what its constructor
takes from the spec, both ways: every option is a ModelSpec field and a keyword of the constructor
(build.py passes it), and every constructor keyword that the model does not pass itself is an option
(so none is silently left at the constructor's default while the spec, and the run id, say otherwise)."""

import inspect

import pytest

from vitstudy.config.model_spec import ModelSpec
from vitstudy.registry import CHANNEL_MIXERS, MIXERS, NORMALIZERS, unknown_name

# Keywords the model passes itself, not from the options: the body (vit.VisionTransformer) puts every
# mixer and channel mixer on the token grid; Attention gives its normaliser its heads and token count.
ON_GRID = {"dim", "grid", "num_prefix_tokens"}
STRUCTURAL = {MIXERS.kind: ON_GRID, NORMALIZERS.kind: {"num_heads", "num_tokens"}, CHANNEL_MIXERS.kind: ON_GRID}
# Keywords a component fixes itself (build.py never passes them), though they have constructor defaults.
FIXED = {
    (CHANNEL_MIXERS.kind, "mlp"): {"act_layer"},  # GELU
}


def _entries():
    for registry in (MIXERS, NORMALIZERS, CHANNEL_MIXERS):
        for entry in registry.entries():
            yield pytest.param(registry, entry, id=f"{registry.kind}-{entry.name}")


def _structural(registry, entry) -> set[str]:
    """What build.py and the body pass this component besides its options."""
    names = set(STRUCTURAL[registry.kind])
    if entry.meta.get("normalizer"):
        names.add("normalizer")  # build.mixer_layer: the normaliser class with its options bound
    if entry.meta.get("rel_pos") is not None:
        names.add("rel_pos")  # build.mixer_layer: the spec's rel_pos, else the meta's default
    return names


@pytest.mark.parametrize("registry,entry", list(_entries()))
def test_options_are_the_constructor_keywords_the_spec_fills(registry, entry):
    options = set(entry.meta["options"])
    assert options <= set(ModelSpec.model_fields), "an option is the ModelSpec field of the same name"
    component = registry.get(entry.name)
    if component is None:  # the channel mixer "none": no layer, so no options
        assert options == set()
        return
    parameters = inspect.signature(component).parameters.values()
    assert not any(p.kind == p.VAR_KEYWORD for p in parameters), "**kwargs would swallow misspelt options"
    keywords = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    structural = _structural(registry, entry)
    assert structural <= keywords
    assert keywords - structural - FIXED.get((registry.kind, entry.name), set()) == options


def test_did_you_mean_never_suggests_the_name_given():
    assert "did you mean 'epoch'" in unknown_name("option", "epochs", ["epochs", "epoch", "lr"])
    assert "did you mean" not in unknown_name("option", "lr", ["lr", "betas"])
    assert unknown_name("mixer", "atention", ["attention", "pool"]) == (
        "unknown mixer 'atention' (did you mean 'attention'?); valid: attention, pool")
