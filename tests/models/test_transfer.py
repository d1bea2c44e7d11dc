"""Our baseline ViT reproduces timm's logits when given timm's weights (minGPT's one test that matters)."""

import pytest
import torch

timm = pytest.importorskip("timm")

from vitstudy.models.transfer import from_timm  # noqa: E402

CONFIGS = {
    "vit_tiny_cls": dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=4, num_classes=10),
    "deit_small_gap_no_qkv_bias": dict(model_name="deit_small_patch16_224", img_size=48, patch_size=8,
                                       num_classes=5, class_token=False, global_pool="avg",
                                       qkv_bias=False),
    "layer_scale_mlp3_no_pos": dict(model_name="vit_tiny_patch16_224", img_size=16, patch_size=2,
                                    in_chans=1, num_classes=3, init_values=0.1, mlp_ratio=3.0,
                                    pos_embed="none"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_timm(name):
    torch.manual_seed(0)
    cfg = dict(CONFIGS[name])
    ref = timm.create_model(cfg.pop("model_name"), pretrained=False, **cfg).eval()
    for p in ref.parameters():  # move every weight off its init so a mis-mapped one shows
        p.data.add_(0.02 * torch.randn_like(p))
    ours = from_timm(ref)
    x = torch.randn(4, ref.patch_embed.proj.in_channels, *ref.patch_embed.img_size)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert expected.shape == got.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_unsupported_timm_features_are_refused_by_name():
    ref = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, reg_tokens=4,
                            num_classes=10)
    with pytest.raises(ValueError, match="register tokens"):
        from_timm(ref)
    ref = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, qk_norm=True,
                            num_classes=10)
    with pytest.raises(ValueError, match="qk_norm"):
        from_timm(ref)
