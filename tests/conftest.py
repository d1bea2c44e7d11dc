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


MANIFESTS = Path(__file__).resolve().parent / "manifests"


def manifest_text(name: str) -> str:
    """The text of tests/manifests/<name>.yaml (the manifests several test files share)."""
    return (MANIFESTS / f"{name}.yaml").read_text()


@pytest.fixture
def tiny_grid() -> str:
    """A grid small enough to train in seconds on digits: 2 cells (head cls/gap), 2 epochs, seed 0."""
    return manifest_text("tiny")


FRAME_GRID = manifest_text("tiny").replace("seeds: [0]", "seeds: [0, 1]") + """
smoke:
  data: {train_subset: 128}
  train: {epochs: 1}
"""


@pytest.fixture(scope="session")
def trained_grid(tmp_path_factory):
    """The tiny grid with 2 seeds, trained once per session by `vitstudy run-grid --smoke` (2 variants ×
    2 seeds, 1 epoch on 128 digits, in this process): (manifest, results root). Read it, never write it."""
    from vitstudy.cli import main

    root = tmp_path_factory.mktemp("trained_grid")
    manifest = root / "tiny.yaml"
    manifest.write_text(FRAME_GRID)
    out = root / "results"
    assert main(["run-grid", str(manifest), "--smoke", "--workers", "1", "--out", str(out)]) == 0
    return manifest, out
