"""Common random numbers at initialisation: with a seed, every parameter's initial value depends on the
seed, its name, its shape and its module only (never on the global RNG or on the other modules of the
model), so variants share the values of the parameters they share; each module keeps its own
distribution; and every parameter-owning component of the registries can be re-initialised."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from vitstudy.models.build import build_model, resolve_model
from vitstudy.models.seeding import drawing_from, init_weights, stable_seed
from vitstudy.registry import CHANNEL_MIXERS, MIXERS, NORMALIZERS, POSITIONS

SMALL = dict(embed_dim=32, depth=2, num_heads=2, num_classes=5)
T2T = dict(tokenizer="t2t", img_size=16, patch_size=4, t2t_dim=16, t2t_features=8, t2t_kernels=(3, 3, 3),
           t2t_strides=(2, 2, 1), t2t_paddings=(1, 1, 1))
# every parameter-owning choice of the registries and of the body
VARIANTS = {
    **{f"mixer={m}": dict(mixer=m, head="cls" if MIXERS.entry(m).meta["mixes_prefix"] else "gap")
       for m in MIXERS.names()},
    **{f"normalizer={n}": dict(normalizer=n) for n in NORMALIZERS.names()},
    **{f"position={p}": dict(position=p) for p in POSITIONS.names()},
    **{f"channel_mixer={c}": dict(channel_mixer=c) for c in CHANNEL_MIXERS.names()},
    "sigmoid-learnable": dict(normalizer="sigmoid", learnable_bias=True),
    "rel_pos+null_key": dict(rel_pos=True, null_key=True),
    "dwsa-window": dict(mixer="dwsa", window=3),
    "layer_scale": dict(layer_scale=0.1),
    "head=gap": dict(head="gap"),
    "t2t-performer": dict(T2T, t2t_layer="performer"),
    "t2t-transformer": dict(T2T, t2t_layer="transformer"),
}


def _state(seed: int | None, global_seed: int, **options) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a model built with `seed` after seeding the global RNG."""
    torch.manual_seed(global_seed)
    model = build_model(resolve_model("vit_micro", **{**SMALL, **options}), seed=seed)
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


@pytest.mark.parametrize("options", VARIANTS.values(), ids=VARIANTS.keys())
def test_initial_weights_depend_on_the_seed_alone(options):
    """Built with one seed under two global RNG states: equal. With another seed: different, for every
    tensor that is random at all (that differs between two unseeded builds; not the zeros, ones, fixed
    biases and tables)."""
    first, again, other = _state(5, 1, **options), _state(5, 2, **options), _state(6, 1, **options)
    unseeded, unseeded_again = _state(None, 1, **options), _state(None, 2, **options)
    assert any(not torch.equal(v, unseeded_again[k]) for k, v in unseeded.items())
    for name, value in first.items():
        assert torch.equal(value, again[name]), f"{name} depends on the global RNG"
        random = not torch.equal(unseeded[name], unseeded_again[name])
        assert torch.equal(value, other[name]) != random, f"{name} does not depend on the seed"


def test_variants_start_from_the_same_value_of_every_parameter_they_share():
    softmax = _state(0, 1, mixer="attention", normalizer="softmax")
    relu = _state(0, 2, mixer="attention", normalizer="relu")
    patch_mlp = _state(0, 3, mixer="patch_mlp", block_order="mlp_first")
    dwsa = _state(0, 4, mixer="dwsa")
    assert softmax.keys() == relu.keys() and all(torch.equal(v, relu[k]) for k, v in softmax.items())
    for variant in (patch_mlp, dwsa):
        shared = {k for k, v in variant.items() if k in softmax and softmax[k].shape == v.shape}
        assert {"tokenizer.proj.weight", "tokenizer.proj.bias", "position.pos_embed", "cls_token",
                "blocks.1.mlp.fc1.weight", "blocks.1.norm2.weight", "head.weight"} <= shared
        for name in shared:
            assert torch.equal(variant[name], softmax[name]), name
    assert torch.equal(dwsa["blocks.0.mixer.proj.weight"], softmax["blocks.0.mixer.proj.weight"])
    assert not torch.equal(_state(1, 1, mixer="patch_mlp")["head.weight"], patch_mlp["head.weight"])


def test_each_module_keeps_its_own_initial_distribution():
    """timm's ViT initialisation for linear layers (patch_mlp's token MLP included), the modules' own
    for the rest: PyTorch's for the patch convolution and the norms, truncated normal for the position
    table, a tiny class token."""
    torch.manual_seed(0)
    model = build_model(resolve_model("vit_micro", mixer="patch_mlp", embed_dim=64, depth=2), seed=3)
    seen = set()
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            assert m.weight.std().item() == pytest.approx(0.02, rel=0.15), name
            assert not m.bias.any(), name
        elif isinstance(m, nn.LayerNorm):
            assert (m.weight == 1).all() and not m.bias.any(), name
        elif isinstance(m, nn.Conv2d):
            bound = 1 / math.sqrt(m.weight[0].numel())  # kaiming_uniform_(a=√5): U(±1/√fan_in)
            assert m.weight.abs().max() <= bound, name
            assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1), name
        seen.add(type(m))
    assert {nn.Linear, nn.LayerNorm, nn.Conv2d} <= seen
    assert model.position.pos_embed.std().item() == pytest.approx(0.02, rel=0.15)
    assert 0 < model.cls_token.abs().max().item() < 1e-5


def test_a_parameter_owner_without_reset_parameters_is_named():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(3))

    model = nn.Sequential(nn.Linear(3, 3), Scale())
    with pytest.raises(TypeError, match=r"^1 \(Scale\) owns parameters but has no reset_parameters"):
        init_weights(model, seed=0)


def _draw() -> list[float]:
    """One value from each global generator: torch's (CPU), NumPy's, Python's."""
    return [torch.rand(()).item(), float(np.random.rand()), random.random()]


def _seed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_draws_are_keyed_and_leave_the_global_generators_as_they_were():
    _seed_globals(0)
    expected = _draw()
    _seed_globals(0)
    with drawing_from(7, "x"):
        inside = _draw()
    assert _draw() == expected  # as if nothing had been drawn
    _seed_globals(1)
    with drawing_from(7, "x"):
        assert _draw() == inside  # whatever the global state
    with drawing_from(7, "y"):
        assert all(a != b for a, b in zip(_draw(), inside, strict=True))
    # the key's seed is fixed forever (Python's hash() of a string is not): it decides every run's numbers
    assert stable_seed(0, "a") == 4513031048185085819
