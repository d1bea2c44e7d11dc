"""run-grid end to end on real digits: files on disk, the table, skipping finished cells, learning."""

import json
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from vitstudy.cli import main
from vitstudy.config.manifest import load, parse
from vitstudy.config.spec import RunSpec
from vitstudy.models.cost import model_cost
from vitstudy.training.run import run_cell

TINY_GRID = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    manifest = root / "tiny.yaml"
    manifest.write_text(TINY_GRID.replace("seeds: [0]", "seeds: [0, 1]"))
    out = root / "results"
    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0
    return manifest, out


def test_every_cell_writes_its_files(finished_grid):
    manifest, out = finished_grid
    grid = load(manifest)
    assert len(grid.cells) == 4
    for cell in grid.cells:
        d = out / "tiny" / cell.run_id
        record = json.loads((d / "metrics.json").read_text())
        assert record["status"] == "done"
        assert record["spec"] == cell.spec.model_dump(mode="json")
        assert RunSpec(**yaml.safe_load((d / "spec.yaml").read_text())) == cell.spec
        assert 0 <= record["metrics"]["test/acc1"] <= 100
        assert {"val/acc1", "val/loss", "test/acc5", "train/loss"} <= set(record["metrics"])
        cost = model_cost(cell.spec.model)
        assert (record["cost"]["params"], record["cost"]["macs"]) == (cost.params, cost.macs)
        # the two seeds of each head train as one pack (--pack auto); alone, fp32 on a CPU takes the fused
        # kernel (faster), packed the explicit path (vmap has no batching rule for the CPU's fused kernel)
        assert record["pack"]["size"] == 2 and record["attention_path"] == "explicit"
        assert (d / "last.ckpt").stat().st_size > 0
        assert list((d / "tb").glob("events.out.tfevents.*"))
        assert not list(d.glob(".*.tmp"))  # no leftovers of atomic writes


def test_table_numbers_are_those_of_the_metrics_files(finished_grid):
    manifest, out = finished_grid
    grid = load(manifest)
    table = (out / "tiny" / "table.md").read_text().splitlines()
    assert table[0].startswith("| head |")
    for head in ("cls", "gap"):
        accs = [json.loads((out / "tiny" / c.run_id / "metrics.json").read_text())["metrics"]["test/acc1"]
                for c in grid.cells if c.spec.model.head == head]
        row = next(line for line in table if line.startswith(f"| {head} |"))
        assert f"{statistics.fmean(accs):.2f} ± {statistics.stdev(accs):.2f}" in row
        assert "| 2 |" in row


def test_second_run_retrains_nothing(finished_grid):
    manifest, out = finished_grid
    before = {p: p.stat().st_mtime_ns for p in (out / "tiny").glob("*/metrics.json")}
    proc = subprocess.run([sys.executable, "-m", "vitstudy.cli", "run-grid", str(manifest), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "4 skipped" in proc.stdout
    assert before == {p: p.stat().st_mtime_ns for p in (out / "tiny").glob("*/metrics.json")}


class KeepLogits(L.Callback):
    """The logits of the model a run tested (its final weights, as it left them in memory) on `images`."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def on_test_end(self, trainer, pl_module) -> None:
        if hasattr(self, "logits"):  # the cell tests best.ckpt afterwards: keep the final weights' logits
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            self.logits = pl_module(self.images.to(pl_module.device)).cpu()
        pl_module.train(was_training)


@pytest.fixture(scope="module")
def learned_cell(tmp_path_factory):
    """One cell trained long enough to learn (10 epochs), with its in-memory logits on random images."""
    text = TINY_GRID.replace("epochs: 2", "epochs: 10").replace("batch_size: 256", "batch_size: 64") \
                    .replace("embed_dim: 32, depth: 2, num_heads: 2", "head: gap")
    cell = parse(text).cells[0]
    m = cell.spec.model
    keep = KeepLogits(torch.randn(8, m.in_chans, m.img_size, m.img_size, generator=torch.Generator().manual_seed(0)))
    run_dir = tmp_path_factory.mktemp("learned") / cell.run_id
    record = run_cell(cell.spec, run_dir, callbacks=(keep,))
    return cell, run_dir, record, keep


def test_a_training_run_learns(learned_cell):
    _, _, record, _ = learned_cell
    assert record["status"] == "done"
    assert record["metrics"]["test/acc1"] > 60.0  # chance is 10%


def test_checkpoint_reloads_with_weights_only(learned_cell):
    """last.ckpt reloads with weights_only=True (primitive hparams) as the very model the run trained."""
    from vitstudy.training.system import ImageClassifier

    cell, run_dir, _, keep = learned_cell
    state = torch.load(run_dir / "last.ckpt", weights_only=True, map_location="cpu")
    model = ImageClassifier.load_from_checkpoint(run_dir / "last.ckpt", weights_only=True, map_location="cpu")
    assert model.hparams.model == state["hyper_parameters"]["model"] == cell.spec.model.model_dump(mode="json")
    model.eval()
    with torch.no_grad():
        logits = model(keep.images)
    assert logits.shape == (8, cell.spec.model.num_classes)
    torch.testing.assert_close(logits, keep.logits)


def test_a_crashing_cell_is_recorded_and_the_grid_goes_on(tmp_path, write_manifest):
    # a training subset smaller than one class's worth still runs; an image size whose data cannot be
    # resized (0 train samples) is refused earlier, so crash the run for real: a checkpoint that is whole
    # (one cut short restarts its cell: tests/grid/test_faults.py) but not a torch checkpoint
    manifest = write_manifest(TINY_GRID)
    grid = load(manifest)
    bad = tmp_path / "results" / "tiny" / grid.cells[0].run_id
    bad.mkdir(parents=True)
    with zipfile.ZipFile(bad / "last.ckpt", "w") as z:
        z.writestr("archive/data.txt", "not a checkpoint")
    assert main(["run-grid", str(manifest), "--out", str(tmp_path / "results")]) == 1
    failed = json.loads((bad / "metrics.json").read_text())
    assert failed["status"] == "failed" and failed["error"]["message"]
    assert "Traceback" in (bad / "traceback.txt").read_text()
    other = json.loads((tmp_path / "results" / "tiny" / grid.cells[1].run_id / "metrics.json").read_text())
    assert other["status"] == "done"
