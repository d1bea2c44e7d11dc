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


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def refused(tmp_path, monkeypatch, capsys):
    """`refused(argv, files)`: write `files` ({relative path: str or bytes}) under tmp_path, which is also
    the current folder and holds HOME, run `vitstudy ARGV` in this process, and assert the front door's
    promise: exit status 2, no traceback, and no file created anywhere under tmp_path (results, HOME,
    current folder). Returns stderr, for the test to check that it names the file and the key."""
    from vitstudy.cli import main

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)

    def run(argv: list[str], files: dict[str, str | bytes] | None = None) -> str:
        for name, body in (files or {}).items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body) if isinstance(body, bytes) else path.write_text(body)
        before = _files(tmp_path)
        try:
            status = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own refusals
            status = e.code
        err = capsys.readouterr().err
        assert status == 2, f"exit status {status}, stderr:\n{err}"
        assert "Traceback" not in err, err
        assert _files(tmp_path) == before, f"created: {sorted(_files(tmp_path) - before)}"
        return err

    return run
