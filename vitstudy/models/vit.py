"""The one ViT body every ablation plugs into (MetaFormer shape, Yu et al. 2022):

    image → tokenizer → [class token] → + position → blocks → pool → norm → linear head

Each block is `x + mixer(norm(x))`, then `x + mlp(norm(x))`; the block owns the norms, residuals,
drop-path and layer-scale, the mixer only mixes tokens. Constructors take classes or partials
(timm style), never option dicts; `vitstudy.models.build` turns a spec into those arguments.
Parameter names follow timm's VisionTransformer where the parts coincide (cls_token, blocks.i.norm1,
blocks.i.mlp.fc1, norm, head), so weight transfer is a rename. Initialisation is timm's, module by module
(vitstudy.models.seeding): with `init_seed`, every parameter's initial value depends only on the seed, its
name, its shape and its module, so the variants of a grid share the initial values of the parts they share.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Literal

import torch
from timm.layers import DropPath, LayerScale
from torch import nn

from vitstudy.models.channel_mixers import FeatureMLP
from vitstudy.models.mixers.attention import Attention
from vitstudy.models.position import LearnedPosition
from vitstudy.models.seeding import init_weights
from vitstudy.models.tokenizers import PatchEmbed

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class Block(nn.Module):
    """x + mixer(norm(x)), then x + channel_mixer(norm(x)); `mlp_first` swaps the two sub-layers
    (the feed-forward-only model of Melas-Kyriazi 2021); `channel_layer=None` drops the second."""

    def __init__(
        self,
        dim: int,
        mixer_layer: Callable[..., nn.Module],
        channel_layer: Callable[..., nn.Module] | None = FeatureMLP,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
        order: Literal["mixer_first", "mlp_first"] = "mixer_first",
    ):
        super().__init__()
        self.mixer = mixer_layer(dim=dim)
        self.norm1 = nn.Identity() if getattr(self.mixer, "owns_norm", False) else norm_layer(dim)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = channel_layer(dim=dim) if channel_layer is not None else None
        if self.mlp is not None:
            self.norm2 = nn.Identity() if getattr(self.mlp, "owns_norm", False) else norm_layer(dim)
            self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
            self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp_first = order == "mlp_first"

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if self.mlp_first:
            x = self._channel(x)
        x = x + self.drop_path1(self.ls1(self.mixer(self.norm1(x), grid)))
        return x if self.mlp_first else self._channel(x)

    def _channel(self, x: torch.Tensor) -> torch.Tensor:
        if self.mlp is None:
            return x
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class ClassTokenPool(nn.Module):
    """The final state of the class token (ViT's head)."""

    class_token = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]  # (B, C)


class AveragePool(nn.Module):
    """The mean over the patch tokens (global average pooling; no class token)."""

    class_token = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)  # (B, C)


class VisionTransformer(nn.Module):
    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        in_chans: int,
        num_classes: int,
        embed_dim: int,
        depth: int,
        tokenizer_layer: Callable[..., nn.Module] = PatchEmbed,
        position_layer: Callable[..., nn.Module] = LearnedPosition,
        mixer_layer: Callable[..., nn.Module] = Attention,
        channel_layer: Callable[..., nn.Module] | None = FeatureMLP,
        pool_layer: Callable[[], nn.Module] = ClassTokenPool,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
        drop_path_rate: float = 0.0,
        layer_scale: float | None = None,
        block_order: Literal["mixer_first", "mlp_first"] = "mixer_first",
        init_seed: int | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.tokenizer = tokenizer_layer(img_size, patch_size, in_chans, embed_dim)
        self.pool = pool_layer()
        self.num_prefix_tokens = 1 if self.pool.class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if self.num_prefix_tokens else None
        self.grid = self.tokenizer.grid
        self.position = position_layer(embed_dim, self.num_prefix_tokens + self.tokenizer.num_patches)
        on_grid = dict(grid=self.grid, num_prefix_tokens=self.num_prefix_tokens)
        mixer = partial(mixer_layer, **on_grid)
        channel = partial(channel_layer, **on_grid) if channel_layer is not None else None
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # grows with depth
        self.blocks = nn.ModuleList([
            Block(embed_dim, mixer, channel, norm_layer, dpr[i], layer_scale, block_order)
            for i in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        init_weights(self, seed=init_seed)

    def reset_parameters(self) -> None:
        """The body's own parameter: a tiny class token (timm); `init_weights` initialises the rest."""
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        x, grid = self.tokenizer(img)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
        x = self.position(x)
        for block in self.blocks:
            x = block(x, grid)
        return x

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(img)
        return self.head(self.norm(self.pool(x)))  # (B, num_classes)

    def attention_paths(self) -> list[str]:
        """The path (fused/explicit) each attention mixer took in its last forward."""
        return [m.path_taken for m in self.modules() if getattr(m, "path_taken", None)]
