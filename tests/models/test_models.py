"""The ViT body: preset sizes against the published tables, gradients, and attention paths."""

import pytest
import torch

from vitstudy.config.presets import PRESETS
from vitstudy.models.build import build_model, resolve_model
from vitstudy.models.cost import model_cost
from vitstudy.models.mixers.attention import Attention
from vitstudy.registry import HEADS, POSITIONS


def _agrees_to_printed_precision(value: float, printed: float) -> bool:
    """True if `value` is within one unit of the last digit the paper printed (86.57M vs "86M":
    papers truncate as often as they round, so a unit either way)."""
    scale = 1e9 if printed >= 1e9 else 1e6
    text = f"{printed / scale:g}"
    unit = 10.0 ** -(len(text.split(".")[1]) if "." in text else 0) * scale
    return abs(value - printed) < unit


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p["published"].get("params")])
def test_preset_params_and_macs_match_published(name):
    published = PRESETS[name]["published"]
    cost = model_cost(resolve_model(name))  # 224 px, 1000 classes
    assert _agrees_to_printed_precision(cost.params, published["params"]), (cost.params, published)
    if "macs" in published:
        assert _agrees_to_printed_precision(cost.macs, published["macs"]), (cost.macs, published)


def test_printed_precision_check_rejects_a_wrong_count():
    assert _agrees_to_printed_precision(5_717_416, 5.7e6)
    assert not _agrees_to_printed_precision(5_817_416, 5.7e6)
    assert not _agrees_to_printed_precision(87_100_000, 86e6)


def test_deit_tiny_counts_exactly_as_timm():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        ref = timm.create_model("deit_tiny_patch16_224")
    cost = model_cost(resolve_model("deit_tiny"))
    assert cost.params == sum(p.numel() for p in ref.parameters()) == 5_717_416
    # 12 blocks × (qkv 3D² + proj D² + mlp 8D²) × 197 tokens + 2 attention products + embed + head
    D, N, L = 192, 197, 12
    per_block = N * 12 * D * D + 2 * N * N * D
    expected = L * per_block + 196 * 3 * 16 * 16 * D + D * 1000
    assert cost.macs == expected


@pytest.mark.parametrize("head", HEADS.names())
@pytest.mark.parametrize("position", POSITIONS.names())
def test_forward_backward_every_parameter_gets_a_gradient(head, position):
    torch.manual_seed(0)
    spec = resolve_model("vit_micro", head=head, position=position, num_classes=7, in_chans=3,
                         drop_path=0.1)
    model = build_model(spec)
    x = torch.randn(4, 3, 16, 16)
    logits = model(x)
    assert logits.shape == (4, 7) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


def test_gap_head_has_no_class_token_and_cls_head_has_one():
    cls = build_model(resolve_model("vit_micro", head="cls"))
    gap = build_model(resolve_model("vit_micro", head="gap"))
    assert cls.cls_token is not None and cls.position.pos_embed.shape[1] == 1 + 16
    assert gap.cls_token is None and gap.position.pos_embed.shape[1] == 16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_tokens", [17, 65])
def test_fused_and_explicit_attention_agree(dtype, n_tokens):
    torch.manual_seed(0)
    fused = Attention(64, (4, 4), 1, num_heads=4, attn_path="fused").to(dtype)
    explicit = Attention(64, (4, 4), 1, num_heads=4, attn_path="explicit").to(dtype)
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(3, n_tokens, 64, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out_f, out_e = fused(x, (4, 4)), explicit(x2, (4, 4))
    assert fused.path_taken == "fused" and explicit.path_taken == "explicit"
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out_f, out_e, rtol=tol, atol=tol)
    g = torch.randn_like(out_f)
    out_f.backward(g)
    out_e.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, rtol=tol, atol=tol)
    for (name, p), q in zip(fused.named_parameters(), explicit.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=tol, atol=tol, msg=name)


def test_softmax_temperature_is_folded_into_the_fused_scale():
    from functools import partial

    from vitstudy.models.normalizers import Softmax

    torch.manual_seed(0)
    warm = partial(Softmax, temperature=2.5)
    fused = Attention(32, (2, 2), 0, num_heads=2, normalizer=warm, attn_path="fused")
    explicit = Attention(32, (2, 2), 0, num_heads=2, normalizer=warm, attn_path="explicit")
    plain = Attention(32, (2, 2), 0, num_heads=2, attn_path="explicit")
    explicit.load_state_dict(fused.state_dict())
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 4, 32)
    torch.testing.assert_close(fused(x, (2, 2)), explicit(x, (2, 2)))
    assert not torch.allclose(plain(x, (2, 2)), explicit(x, (2, 2)), atol=1e-4)


def test_auto_path_is_fused_in_fp32_and_explicit_in_bf16_on_cpu():
    model = build_model(resolve_model("vit_micro"))
    model(torch.randn(1, 3, 16, 16))
    assert model.attention_paths() == ["fused"] * 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(1, 3, 16, 16))
    assert model.attention_paths() == ["explicit"] * 4


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        resolve_model("vit_tiny", img_size=100)
    with pytest.raises(ValueError, match="does not divide embed_dim"):
        resolve_model("vit_tiny", num_heads=5)
