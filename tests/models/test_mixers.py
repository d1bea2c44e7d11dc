"""Every token mixer and attention normaliser: builds in every combination, matches its paper's formula,
and nonsense combinations are refused before anything runs."""

import itertools
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from vitstudy.config.presets import PRESETS
from vitstudy.models.build import build_model, resolve_model
from vitstudy.models.cost import model_cost
from vitstudy.models.mixers.attention import Attention
from vitstudy.models.mixers.conv import ConvMixer
from vitstudy.models.mixers.dwsa import DepthwiseSelfAttention
from vitstudy.models.mixers.pool import PoolMixer
from vitstudy.registry import CHANNEL_MIXERS, MIXERS, NORMALIZERS, POSITIONS


def _combinations():
    """mixer × normaliser × position × relative position: every valid model variant."""
    for mixer in MIXERS.names():
        meta = MIXERS.entry(mixer).meta
        normalizers = NORMALIZERS.names() if meta.get("normalizer") else [None]
        rel_options = [False, True] if meta.get("rel_pos") is not None else [None]
        for norm, pos, rel in itertools.product(normalizers, POSITIONS.names(), rel_options):
            head = "cls" if meta.get("mixes_prefix") else "gap"
            yield pytest.param(mixer, norm, pos, rel, head, id=f"{mixer}-{norm}-{pos}-rel{rel}-{head}")


@pytest.mark.parametrize("mixer,normalizer,position,rel_pos,head", list(_combinations()))
def test_every_variant_trains_one_step(mixer, normalizer, position, rel_pos, head):
    torch.manual_seed(0)
    spec = resolve_model("vit_micro", mixer=mixer, normalizer=normalizer, position=position,
                         rel_pos=rel_pos, head=head, depth=2, num_classes=5)
    model = build_model(spec)
    x = torch.randn(3, 3, 16, 16)
    logits = model(x)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    # with a class-token head the last block's patch rows never reach the logits; a term on every
    # token's features gives each parameter a gradient path to check
    loss = F.cross_entropy(logits, torch.tensor([0, 1, 2])) + model.forward_features(x).square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("channel_mixer", CHANNEL_MIXERS.names())
@pytest.mark.parametrize("order", ["mixer_first", "mlp_first"])
def test_channel_mixers_and_block_orders(channel_mixer, order):
    if order == "mlp_first" and channel_mixer == "none":
        with pytest.raises(ValueError, match="needs a channel mixer"):
            resolve_model("vit_micro", channel_mixer=channel_mixer, block_order=order)
        return
    model = build_model(resolve_model("vit_micro", channel_mixer=channel_mixer, block_order=order, depth=2))
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert (model.blocks[0].mlp is None) == (channel_mixer == "none")


# --- normaliser facts ----------------------------------------------------------------------------------
def _norm(name, **kw):
    return NORMALIZERS.get(name)(num_heads=2, num_tokens=7, **kw)


def test_softmax_rows_sum_to_one():
    w = _norm("softmax", temperature=0.7)(torch.randn(2, 2, 7, 7) * 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 7))


@pytest.mark.parametrize("name,h", [("relu", F.relu), ("relu2", lambda s: F.relu(s) ** 2),
                                    ("softplus", F.softplus), ("gelu", F.gelu)])
def test_length_scaled_normalisers_are_h_over_n(name, h):
    s = torch.randn(2, 2, 7, 7)
    torch.testing.assert_close(_norm(name)(s), h(s) / 7)
    assert (_norm("relu")(s) >= 0).all() and (_norm("relu")(-s.abs()) == 0).all()


def test_sigmoid_with_zero_scores_gives_one_over_n_plus_one():
    n = 9
    w = NORMALIZERS.get("sigmoid")(num_heads=2, num_tokens=n)(torch.zeros(1, 2, n, n))
    torch.testing.assert_close(w, torch.full((1, 2, n, n), 1 / (n + 1)))
    fixed = _norm("sigmoid", sigmoid_bias=0.0)(torch.zeros(1, 2, 7, 7))
    torch.testing.assert_close(fixed, torch.full_like(fixed, 0.5))


def test_learnable_sigmoid_bias_is_a_parameter_per_head_initialised_at_minus_log_n():
    norm = NORMALIZERS.get("sigmoid")(num_heads=3, num_tokens=17, learnable_bias=True)
    assert norm.bias.shape == (3, 1, 1) and norm.bias.requires_grad
    torch.testing.assert_close(norm.bias.detach(), torch.full((3, 1, 1), -math.log(17)))


def test_layernorm_rows_have_zero_mean_and_unit_variance():
    w = _norm("layernorm")(torch.randn(2, 2, 7, 7) * 5 + 3)
    torch.testing.assert_close(w.mean(-1), torch.zeros(2, 2, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(w.var(-1, unbiased=False), torch.ones(2, 2, 7), atol=1e-3, rtol=0)


def test_only_softmax_takes_the_fused_path():
    for name in NORMALIZERS.names():
        attn = Attention(16, (2, 2), 1, num_heads=2, normalizer=NORMALIZERS.get(name))
        attn(torch.randn(1, 5, 16), (2, 2))
        assert attn.path_taken == ("fused" if name == "softmax" else "explicit"), name


@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_fused_and_explicit_agree_with_relative_bias(prefix, temperature):
    torch.manual_seed(0)
    norm = partial(NORMALIZERS.get("softmax"), temperature=temperature)
    fused = Attention(32, (3, 4), prefix, num_heads=4, normalizer=norm, attn_path="fused", rel_pos=True)
    explicit = Attention(32, (3, 4), prefix, num_heads=4, normalizer=norm, attn_path="explicit", rel_pos=True)
    with torch.no_grad():
        for p in fused.parameters():
            p.normal_()  # a relative bias far from zero, so a mis-scaled mask would show
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(2, prefix + 12, 32)
    torch.testing.assert_close(fused(x, (3, 4)), explicit(x, (3, 4)), rtol=1e-4, atol=1e-5)


def test_relative_bias_depends_only_on_the_offset():
    attn = Attention(16, (3, 3), 1, num_heads=2, rel_pos=True)
    with torch.no_grad():
        attn.rel_pos.table.normal_()
        attn.rel_pos.prefix.normal_()
    b = attn.rel_pos()  # (h, 1 + 9, 1 + 9)
    assert b.shape == (2, 10, 10)
    # patch (r, c) -> index 1 + 3r + c; offsets (0,0)->(1,1) and (1,1)->(2,2) are the same: (-1, -1)
    torch.testing.assert_close(b[:, 1 + 0, 1 + 4], b[:, 1 + 4, 1 + 8])
    assert not torch.allclose(b[:, 1 + 0, 1 + 4], b[:, 1 + 4, 1 + 0])
    torch.testing.assert_close(b[:, 0, 1:], attn.rel_pos.prefix[0][:, None].expand(2, 9))


# --- mixers against their papers' formulas ------------------------------------------------------------
def _dwsa_reference(m: DepthwiseSelfAttention, x, grid):
    """o_i = q_i ⊙ mean_{j∈S(i)} k_j + Σ_{j∈S(i)} p_h(pos_i − pos_j) k_j, written as the literal sum."""
    H, W = grid
    p = m.num_prefix_tokens
    q, k = m.qk(x).chunk(2, dim=-1)
    B, N, C = q.shape
    hd = C // m.num_heads
    pos = [(r, c) for r in range(H) for c in range(W)]
    out = torch.zeros_like(q)
    for i in range(N):
        if i < p:
            out[:, i] = q[:, i] * k.mean(1)
            continue
        ri, ci = pos[i - p]
        sel = [j for j in range(p, N) if m.window is None or
               (abs(pos[j - p][0] - ri) <= m.window // 2 and abs(pos[j - p][1] - ci) <= m.window // 2)]
        kbar = k.mean(1) if m.window is None else k[:, sel].mean(1)
        out[:, i] = q[:, i] * kbar
        if m.rel is not None:
            kh, kw = m.kernel
            for j in sel:
                rj, cj = pos[j - p]
                # conv2d is cross-correlation: the weight at (kh//2 + rj − ri, kw//2 + cj − ci)
                w = m.rel[:, kh // 2 + rj - ri, kw // 2 + cj - ci].repeat_interleave(hd)  # (C,)
                out[:, i] += w * k[:, j]
    return m.proj(out)


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("prefix", [0, 1])
def test_dwsa_matches_the_paper_formula(window, prefix):
    torch.manual_seed(0)
    m = DepthwiseSelfAttention(16, (3, 4), prefix, num_heads=4, window=window)
    x = torch.randn(2, prefix + 12, 16)
    torch.testing.assert_close(m(x, (3, 4)), _dwsa_reference(m, x, (3, 4)), rtol=1e-4, atol=1e-5)


def test_dwsa_without_rel_pos_is_q_times_mean_k():
    m = DepthwiseSelfAttention(16, (2, 2), 0, num_heads=2, rel_pos=False)
    x = torch.randn(2, 4, 16)
    q, k = m.qk(x).chunk(2, dim=-1)
    torch.testing.assert_close(m(x, (2, 2)), m.proj(q * k.mean(1, keepdim=True)))


@pytest.mark.parametrize("groups", ["full", "depthwise"])
def test_conv_mixer_is_a_convolution_of_the_grid_and_leaves_the_class_token(groups):
    m = ConvMixer(8, (4, 4), 1, kernel_size=3, conv_groups=groups)
    x = torch.randn(2, 17, 8)
    y = m(x, (4, 4))
    grid = x[:, 1:].transpose(1, 2).reshape(2, 8, 4, 4)
    expected = m.conv(grid).flatten(2).transpose(1, 2)
    torch.testing.assert_close(y[:, 1:], expected)
    assert (y[:, 0] == 0).all()
    assert m.conv.groups == (8 if groups == "depthwise" else 1)


def test_pool_mixer_is_average_pool_minus_identity():
    m = PoolMixer(4, (3, 3), 0, pool_size=3)
    x = torch.arange(9.0).repeat(4, 1).T[None]  # (1, 9, 4): token value = its index
    y = m(x, (3, 3))
    # the centre token 4 averages all nine (mean 4) -> 0; corner 0 averages {0, 1, 3, 4} -> 2
    assert y[0, 4, 0] == 0 and y[0, 0, 0] == 2.0


def test_patch_mlp_layernorm_is_over_the_token_axis():
    model = build_model(resolve_model("ff_tiny", img_size=32, num_classes=10))
    mixer = model.blocks[0].mixer
    assert mixer.norm.normalized_shape == (1 + 4,)  # 2×2 patches of 16 plus the class token
    assert isinstance(model.blocks[0].norm1, torch.nn.Identity)  # the mixer owns its norm
    assert mixer.mlp.fc1.in_features == 5 and mixer.mlp.fc1.out_features == 20
    assert model.blocks[0].mlp_first
    model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="built for 5 tokens"):
        mixer(torch.randn(2, 7, 192), (2, 3))


def test_ff_block_runs_the_feature_mlp_first():
    """Against the official LinearBlock: x += mlp1(norm1(x)); then the token MLP on the transpose."""
    torch.manual_seed(0)
    model = build_model(resolve_model("ff_tiny", img_size=32, num_classes=10, depth=1))
    blk = model.blocks[0]
    x = torch.randn(2, 5, 192)
    y = x + blk.mlp(blk.norm2(x))
    y = (y.transpose(1, 2) + blk.mixer.mlp(blk.mixer.norm(y.transpose(1, 2)))).transpose(1, 2)
    torch.testing.assert_close(blk(x, (2, 2)), y)


@pytest.mark.parametrize("name", ["ff_tiny", "ff_base", "ff_large", "vit_large_patch32", "attn_only_tiny"])
def test_melas_kyriazi_presets_match_table_1(name):
    params = model_cost(resolve_model(name)).params
    printed = PRESETS[name]["published"]["params"]
    assert abs(params - printed) < (0.1e6 if printed < 10e6 else 1e6), (params, printed)


# --- nonsense refused before anything runs --------------------------------------------------------------
@pytest.mark.parametrize("overrides,message", [
    (dict(mixer="conv", head="gap", normalizer="relu"), "which has none; mixers with a normalizer: attention"),
    (dict(mixer="conv"), "use head: gap"),
    (dict(mixer="pool", head="gap", rel_pos=True), "valid for: attention, dwsa"),
    (dict(mixer="attention", window=3), "window applies only to mixer 'dwsa'"),
    (dict(normalizer="relu", temperature=2.0), "temperature applies only to normalizer 'softmax'"),
    (dict(normalizer="softmax", learnable_bias=True), "learnable_bias applies only to normalizer 'sigmoid'"),
    (dict(mixer="dwsa", window=4), "window must be odd"),
    (dict(mixer="conv", head="gap", kernel_size=2), "kernel_size must be odd"),
    (dict(mixer="attention", num_heads=5), "does not divide embed_dim"),
])
def test_nonsense_combinations_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve_model("vit_micro", **overrides)


def test_mixer_defaults_are_canonical_so_equal_models_share_an_id():
    a = resolve_model("vit_micro", mixer="dwsa")
    b = resolve_model("vit_micro", mixer="dwsa", rel_pos=True)  # dwsa's default, spelled out
    assert a == b and a.rel_pos is None
    assert resolve_model("vit_micro").normalizer == "softmax"
    assert resolve_model("vit_micro", mixer="pool", head="gap").normalizer is None


def test_list_shows_every_registered_name_with_its_paper(capsys):
    from vitstudy.cli import main
    from vitstudy.registry import REGISTRIES

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    sections, current = {}, None
    for line in out.splitlines():
        if not line.startswith(" "):
            current = sections.setdefault(line.rstrip(":"), [])
        else:
            current.append(line)
    for registry in REGISTRIES:
        lines = sections[f"{registry.kind}s"]
        assert len(lines) == len(registry.names())
        for entry in registry.entries():
            line = next(ln for ln in lines if ln.strip().startswith(entry.name + " "))
            assert entry.summary in line and (not entry.paper or entry.paper in line)
    for name in PRESETS:
        assert f"  {name} " in out
