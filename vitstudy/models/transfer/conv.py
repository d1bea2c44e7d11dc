"""Exact conv → attention transfer (Li, Chen, He, Hsieh 2021, "Can Vision Transformers Perform
Convolution?"; construction after Cordonnier, Loukas, Jaggi 2020). What varies: the kernel size K,
the token grid, full or depthwise kernels, with or without a class token.

A K×K convolution over the token grid (`ConvMixer`: same-size output, zero padding at the border,
class tokens left unmixed) is  y_i = b + Σ_δ W_δ x_{i+δ},  δ ∈ {−r..r}², r = K // 2, W_δ = w[:, :, δ+r]
(PyTorch's cross-correlation; a missing neighbour i+δ contributes 0). The attention mixer computes
it exactly with:

- heads: one per offset δ that reaches a token on an H×W grid, |δ_row| ≤ min(r, H−1) and
  |δ_col| ≤ min(r, W−1): K² heads on grids of K−r or more tokens a side (`conv_heads`); offsets that
  no query can reach (a 5×5 kernel on a 2×2 grid) would contribute 0 everywhere and get no head;
- scores: the k projection is zero (q keeps a random init, so that training on is not stuck at the
  q = k = 0 saddle), so each score is its relative-position bias alone. Head h's
  table (vitstudy.models.relative, offset query − key = −δ_h) is 0 at −δ_h and `mask_value` (−1e4)
  everywhere else; exp(−1e4) underflows to exactly 0 in float32/bfloat16/float16, so the softmax is
  exactly one-hot on token i+δ_h — no temperature limit, no error bound needed;
- border (zero padding): where i+δ_h is off the grid the head's row would be all −1e4 and softmax
  would spread over everything. The mixer's `null_key` is one extra key with zero key and zero value
  whose score is `null_bias[h, i]`: 0 where i+δ_h is off the grid, −1e4 where it is on. So a head
  either picks its neighbour or the null (output exactly 0), as zero padding does;
- class tokens: the conv leaves them unmixed (zero update), so every score of a class-token query is
  −1e4 except its null key (0), and patch queries give class keys −1e4: its output is exactly 0;
- values and output: head width = C (`head_dim`, decoupled from dim / num_heads), v_h = W_δ_h x,
  W_O = [I I … I] (C × heads·C), so Σ_h W_O,h W_V,h x_{i+δ_h} = Σ_δ W_δ x_{i+δ}. The conv bias is the
  value bias of the centre head (δ = 0), which every patch query attends and no class token does;
  proj's bias is 0. Head width C is necessary for arbitrary kernels: W_O,h W_V,h = W_δ has rank up to C,
  and a product through a head of width d has rank ≤ d. Depthwise kernels become diagonal W_δ.

The attention layer is heads·C wide in its q/k/v paths (K² = 9 or 25 times a standard layer's
value width): the price of exactness; phase 2 of CMHSA trains this layer as self-attention.

Training on from the exact construction: with `mask_value` = −1e4 every softmax row is exactly one-hot,
so its gradient with respect to the scores is exactly 0 (q, k, the relative table and the null bias get
no gradient): phase 2 then trains the values and outputs (a factorised convolution), not the attention
pattern. A finite `mask_value` m (Cordonnier's "α large"; in a manifest, `train.transfer_mask_value` in
the phase rule) trades exactness for trainability: each row puts at most N·e^m of its weight off its
target, so the error is at most 2·N·e^m·Σ_h ‖W_O,h W_V,h‖·max‖x‖ (m = −20, N = 64: about 1.3e-7 of
that scale; m = −10: about 6e-3), and the scores, the relative table and W_k get gradients ∝ e^m.
`min_heads` is the paper's lower bound on heads (Li et al. 2021, Theorems on pixel vs patch inputs).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from vitstudy.config.phases import MASK_VALUE, conv_heads, conv_offsets, transferred_model
from vitstudy.config.spec import ModelSpec
from vitstudy.models.build import build_model
from vitstudy.models.mixers.attention import Attention
from vitstudy.models.mixers.conv import ConvMixer
from vitstudy.models.vit import VisionTransformer


def min_heads(kernel_size: int, patch_size: int = 1, inputs: Literal["patch", "pixel"] = "patch") -> int:
    """Li et al. 2021's lower bound on heads for one attention layer to express a K×K convolution.

    Pixel inputs: one head per kernel offset, K². Patch inputs (P×P patches): a K×K pixel kernel
    centred in a patch reaches r = K // 2 pixels beyond it, i.e. ⌈r / P⌉ patches each way, so
    (2⌈r / P⌉ + 1)² neighbouring patches (9 for K = 5, P ≥ 2; K² again for P = 1).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if inputs == "pixel":
        return kernel_size ** 2
    if inputs != "patch":
        raise ValueError(f"inputs must be 'patch' or 'pixel', got {inputs!r}")
    if patch_size < 1:
        raise ValueError(f"patch_size must be positive, got {patch_size}")
    reach = math.ceil((kernel_size // 2) / patch_size)
    return (2 * reach + 1) ** 2


def dense_kernel(conv: nn.Conv2d) -> torch.Tensor:
    """The conv's weight as a dense (C_out, C_in, K, K) kernel (grouped/depthwise → block-diagonal)."""
    w, g = conv.weight, conv.groups
    if g == 1:
        return w
    co, ci = conv.out_channels // g, conv.in_channels // g
    dense = w.new_zeros(conv.out_channels, conv.in_channels, *w.shape[2:])
    for i in range(g):
        dense[i * co:(i + 1) * co, i * ci:(i + 1) * ci] = w[i * co:(i + 1) * co]
    return dense


def conv_to_attention(conv_mixer: ConvMixer, grid: tuple[int, int], *, mask_value: float = MASK_VALUE,
                      attn_path: Literal["auto", "fused", "explicit"] = "auto") -> Attention:
    """A new `attention` mixer whose output equals `conv_mixer`'s on any input on this grid."""
    conv = conv_mixer.conv
    dim, p = conv.in_channels, conv_mixer.num_prefix_tokens
    attn = Attention(dim, grid, p, num_heads=conv_heads(conv.kernel_size[0], grid), qkv_bias=True,
                     attn_path=attn_path, rel_pos=True, head_dim=dim, null_key=True)
    load_conv(attn, conv_mixer, grid, mask_value=mask_value)
    return attn.to(conv.weight.device, conv.weight.dtype)


@torch.no_grad()
def load_conv(attn: Attention, conv_mixer: ConvMixer, grid: tuple[int, int], *,
              mask_value: float = MASK_VALUE) -> None:
    """Overwrite `attn`'s weights so that it computes `conv_mixer` (the module docstring's construction)."""
    conv = conv_mixer.conv
    K, C, (H, W) = conv.kernel_size[0], conv.in_channels, grid
    offsets = conv_offsets(K, grid)
    h, p = len(offsets), conv_mixer.num_prefix_tokens
    if (attn.num_heads, attn.head_dim) != (h, C) or attn.rel_pos is None or attn.null_bias is None:
        raise ValueError(f"the attention mixer needs {h} heads of width {C}, rel_pos and null_key for a "
                         f"{K}×{K} conv on a {H}×{W} grid; got {attn.num_heads} heads of {attn.head_dim}, "
                         f"rel_pos={attn.rel_pos is not None}, null_key={attn.null_bias is not None}")
    if attn.rel_pos.num_prefix_tokens != p or attn.rel_pos.grid != tuple(grid):
        raise ValueError("the attention mixer's grid or class tokens differ from the convolution's")
    kernel, r = dense_kernel(conv), K // 2  # (C, C, K, K)
    qkv_w, qkv_b = attn.qkv.weight, attn.qkv.bias  # (3·h·C, C), (3·h·C,)
    qkv_w.zero_()
    qkv_b.zero_()
    # W_q keeps a standard random init and W_k = 0: every score is still exactly its bias (q·0 = 0), but
    # k's gradient (∝ q) is not zero, so training is not stuck at the q = k = 0 saddle
    torch.nn.init.trunc_normal_(qkv_w[: h * C], std=0.02)
    v_w, v_b = qkv_w[2 * h * C:].view(h, C, C), qkv_b[2 * h * C:].view(h, C)
    table, null = attn.rel_pos.table, attn.null_bias  # ((2H−1)(2W−1), h), (h, p + HW)
    table.fill_(mask_value)
    null.fill_(mask_value)
    null[:, :p] = 0.0  # class-token queries take the null key: zero output
    if attn.rel_pos.prefix is not None:
        attn.rel_pos.prefix.fill_(mask_value)
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()  # (HW,) query positions
    for head, (a, b) in enumerate(offsets):
        v_w[head] = kernel[:, :, a + r, b + r]  # W_δ: head h's value is W_δ x_j
        if (a, b) == (0, 0):
            v_b[head] = conv.bias if conv.bias is not None else 0.0
        table[(-a + H - 1) * (2 * W - 1) + (-b + W - 1), head] = 0.0  # key = query + δ
        off = (rows + a < 0) | (rows + a >= H) | (cols + b < 0) | (cols + b >= W)  # no neighbour
        null[head, p:][off] = 0.0
    attn.proj.weight.copy_(torch.eye(C, device=qkv_w.device).repeat(1, h))  # [I I … I]
    attn.proj.bias.zero_()


def conv_model_to_attention(model: VisionTransformer, spec: ModelSpec, *, mask_value: float = MASK_VALUE,
                            ) -> tuple[VisionTransformer, ModelSpec]:
    """The phase-2 model of CMHSA (Li et al. 2021) and its spec: `model`'s conv mixers as exact
    attention mixers, every other weight copied, so the logits are unchanged at the transfer
    (`mask_value`: see vitstudy.models.transfer.conv on exactness vs trainability)."""
    if spec.mixer != "conv":
        raise ValueError(f"conv_model_to_attention needs a model with conv mixers, got {spec.mixer!r}")
    new_spec = ModelSpec(**transferred_model(spec.model_dump(), "conv_to_attention"))
    ours = build_model(new_spec).to(next(model.parameters()).device)
    state = {k: v for k, v in model.state_dict().items() if ".mixer." not in k}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    if unexpected or any(".mixer." not in k for k in missing):
        raise RuntimeError(f"conv → attention transfer left missing={missing} unexpected={unexpected}")
    for src, dst in zip(model.blocks, ours.blocks, strict=True):
        load_conv(dst.mixer, src.mixer, model.grid, mask_value=mask_value)
    return ours.train(model.training), new_spec
