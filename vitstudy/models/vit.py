"""The one ViT body every ablation plugs into (MetaFormer shape, Yu et al. 2022):

    image → tokenizer → [class token] → + position → blocks → pool → norm → linear head

Each block is `x + mixer(norm(x))`, then `x + mlp(norm(x))`; the block owns the norms, residuals,
drop-path and layer-scale, the mixer only mixes tokens. Constructors take classes or partials
(timm style), never option dicts; `vitstudy.models.build` turns a spec into those arguments.
Parameter names follow timm's VisionTransformer where the parts coincide (cls_token, blocks.i.norm1,
blocks.i.mlp.fc1, norm, head), so weight transfer is a rename.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

from vitstudy.models.mixers.attention import Attention
from vitstudy.models.position import LearnedPosition
from vitstudy.models.tokenizers import PatchEmbed

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class Block(nn.Module):
    def __init__(
        self,
        dim: int,
        mixer_layer: Callable[..., nn.Module],
        mlp_ratio: float = 4.0,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.mixer = mixer_layer(dim=dim)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.mixer(self.norm1(x), grid)))
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
        mlp_ratio: float = 4.0,
        tokenizer_layer: Callable[..., nn.Module] = PatchEmbed,
        position_layer: Callable[..., nn.Module] = LearnedPosition,
        mixer_layer: Callable[..., nn.Module] = Attention,
        pool_layer: Callable[[], nn.Module] = ClassTokenPool,
        norm_layer: Callable[[int], nn.Module] = LayerNorm,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop_path_rate: float = 0.0,
        layer_scale: float | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.tokenizer = tokenizer_layer(img_size, patch_size, in_chans, embed_dim)
        self.pool = pool_layer()
        self.num_prefix_tokens = 1 if self.pool.class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if self.num_prefix_tokens else None
        self.grid = self.tokenizer.grid
        self.position = position_layer(embed_dim, self.num_prefix_tokens + self.tokenizer.num_patches)
        mixer = partial(mixer_layer, grid=self.grid, num_prefix_tokens=self.num_prefix_tokens)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # grows with depth
        self.blocks = nn.ModuleList([
            Block(embed_dim, mixer, mlp_ratio, norm_layer, act_layer, dpr[i], layer_scale)
            for i in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's ViT initialisation: truncated-normal linear weights, zero biases, tiny class token."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
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
