"""Packs in a grid (vitstudy.grid.packing, `run-grid --pack`): which cells share a pack, the mode in
every record, and a pack killed with SIGKILL mid-run that resumes and ends as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from vitstudy.cli import main
from vitstudy.config.manifest import load
from vitstudy.grid.packing import pack_key, parse_mode, plan_units

GRID = """
name: packs
defaults:
  model: {preset: vit_micro, embed_dim: 32, depth: 2, num_heads: 2, head: gap}
  data: {dataset: digits, batch_size: 256, shift: 1}
  train: {epochs: 3, lr: 3.0e-3, accelerator: cpu}
  log: {progress_bar: false}
grid:
  - {model.mixer: [attention], train.lr: [3.0e-3, 1.0e-3]}
  - {model.mixer: [conv]}
  - {model.mixer: [conv], train.ema_decay: [0.99]}
seeds: [0, 1]
"""
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "packs.yaml"
    path.write_text(textwrap.dedent(GRID))
    return path


def _units(grid, out, mode):
    dirs = {c.run_id + c.grid: grid.cell_dir(out, c) for c in grid.cells}
    return [([c.run_id for c in u.cells], u.packed) for u in plan_units(list(grid.cells), dirs, mode)]


def test_cells_that_differ_only_in_what_a_member_carries_share_a_pack(grid_file, tmp_path):
    grid = load(grid_file)
    ids = {(c.spec.model.mixer, c.spec.train.lr, c.spec.train.ema_decay, c.spec.seed): c.run_id
           for c in grid.cells}
    attention = [ids[("attention", lr, None, s)] for lr in (3e-3, 1e-3) for s in (0, 1)]
    conv = [ids[("conv", 3e-3, None, s)] for s in (0, 1)]
    ema = [ids[("conv", 3e-3, 0.99, s)] for s in (0, 1)]
    assert pack_key(grid.cells[0].spec) is not None
    assert len({pack_key(c.spec) for c in grid.cells if c.run_id in attention}) == 1  # seeds and lrs
    assert pack_key(next(c for c in grid.cells if c.run_id == ema[0]).spec) is None  # an EMA: alone

    out = tmp_path / "results"
    auto = _units(grid, out, "auto")
    assert sorted(auto) == sorted([(sorted(attention, key=attention.index), True), (conv, True),
                                   ([ema[0]], False), ([ema[1]], False)])
    assert all(not packed for _, packed in _units(grid, out, "off"))
    two = _units(grid, out, 2)
    assert sorted(len(ids_) for ids_, packed in two if packed) == [2, 2, 2]  # 4 attention cells as 2 + 2
    three = [ids_ for ids_, packed in _units(grid, out, 3) if set(ids_) <= set(attention)]
    assert sorted(map(len, three)) == [2, 2]  # as even as possible, never 3 + 1

    # a cell that started alone (a Lightning checkpoint) finishes alone
    started = grid.cell_dir(out, next(c for c in grid.cells if c.run_id == conv[0]))
    started.mkdir(parents=True)
    torch.save({"epoch": 0, "global_step": 5, "state_dict": {}}, started / "last.ckpt")
    assert ([conv[0]], False) in _units(grid, out, "auto") and ([conv[1]], False) in _units(grid, out, "auto")


def test_pack_mode_values():
    assert parse_mode("auto") == "auto" and parse_mode("off") == "off" and parse_mode("12") == 12
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="auto, off or a number"):
            parse_mode(bad)


KILL_DRIVER = """
import os, signal, sys
import vitstudy.training.pack_checkpoint as C
save, saved = C.save_member, []
def save_then_die(run_dir, state):
    save(run_dir, state)
    saved.append(state["epoch"])
    if saved.count(1) == 2:  # epoch 1 written for two of the four members: the pack is split across epochs
        os.kill(os.getpid(), signal.SIGKILL)
C.save_member = save_then_die
from vitstudy.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_pack_killed_mid_run_resumes_and_ends_as_an_uninterrupted_one(grid_file, tmp_path, capsys):
    text = textwrap.dedent(GRID).replace("  - {model.mixer: [conv]}\n", "").replace(
        "  - {model.mixer: [conv], train.ema_decay: [0.99]}\n", "")
    grid_file.write_text(text)
    grid = load(grid_file)
    assert len(grid.cells) == 4
    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", KILL_DRIVER, "run-grid", str(grid_file), "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    dirs = [grid.cell_dir(out, c) for c in grid.cells]
    epochs = [torch.load(d / "last.ckpt", weights_only=True)["epoch"] for d in dirs]
    assert sorted(epochs) == [0, 0, 1, 1]  # two members one epoch ahead: they roll back to epoch 1's end
    assert all(json.loads((d / "metrics.json").read_text())["status"] == "running" for d in dirs)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run-grid", str(grid_file), "--out", str(out)]) == 0
        assert "4 done" in capsys.readouterr().out
        assert main(["run-grid", str(grid_file), "--out", str(tmp_path / "whole")]) == 0
    finally:
        torch.set_num_threads(threads)
    for cell, d in zip(grid.cells, dirs, strict=True):
        resumed = json.loads((d / "metrics.json").read_text())
        whole = json.loads((grid.cell_dir(tmp_path / "whole", cell) / "metrics.json").read_text())
        assert resumed["status"] == whole["status"] == "done"
        assert resumed["attempt"] == 2 and resumed["resumed_from"] == {"epoch": 0, "global_step": 5}
        assert resumed["metrics"] == whole["metrics"] and resumed["best"] == whole["best"]
        assert resumed["pack"]["size"] == 4 and resumed["pack"]["mode"] == "auto"
        assert not (d / "prev.ckpt").exists()


def test_a_bad_pack_value_is_a_usage_error(grid_file, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run-grid", str(grid_file), "--pack", "0"])
    assert exit_.value.code == 2
    assert "argument --pack: auto, off or a number of members >= 1, got '0'" in capsys.readouterr().err


def test_the_pack_decision_is_recorded_in_every_run(grid_file, tmp_path, capsys):
    text = textwrap.dedent(GRID).replace("epochs: 3", "epochs: 1").replace(
        "  - {model.mixer: [attention], train.lr: [3.0e-3, 1.0e-3]}\n", "")
    grid_file.write_text(text)
    grid = load(grid_file)  # conv × 2 seeds (packable), conv with an EMA × 2 seeds (never packed)
    for mode in ("off", "auto"):
        out = tmp_path / mode
        assert main(["run-grid", str(grid_file), "--out", str(out), "--pack", mode]) == 0
        for cell in grid.cells:
            run_dir = grid.cell_dir(out, cell)
            record = json.loads((run_dir / "metrics.json").read_text())
            ckpt = torch.load(run_dir / "last.ckpt", weights_only=True, map_location="cpu")
            if mode == "auto" and cell.spec.train.ema_decay is None:
                assert record["pack"]["size"] == 2 and "vitstudy_pack" in ckpt
            else:  # alone: Lightning's Trainer wrote the checkpoint
                assert record["pack"] == {"mode": mode, "size": 1} and "loops" in ckpt
