"""Weight transfer into vitstudy models: from timm's ViT (timm.py) and from a trained conv model into
exact attention (conv.py, Li et al. 2021)."""

from vitstudy.models.transfer.conv import conv_model_to_attention, conv_to_attention, min_heads
from vitstudy.models.transfer.timm import from_timm

__all__ = ["conv_model_to_attention", "conv_to_attention", "from_timm", "min_heads"]
