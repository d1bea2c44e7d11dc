import os
import textwrap
from pathlib import Path

import pytest
import torch

os.environ.setdefault("PYTHONHASHSEED", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def write_manifest(tmp_path):
    """Write a manifest from a YAML string into tmp_path and return its path."""

    def write(text: str, name: str = "m.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


# A grid small enough to train in seconds on digits (vit_micro narrowed, 16×16 images).
TINY_GRID = """
name: tiny
defaults:
  model: {preset: vit_micro, embed_dim: 32, depth: 2, num_heads: 2}
  data: {dataset: digits, batch_size: 256}
  train: {epochs: 2, lr: 3.0e-3}
  log: {progress_bar: false}
grid:
  model.head: [cls, gap]
seeds: [0]
"""
