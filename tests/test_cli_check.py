"""`vitstudy run-grid M --smoke --check --junit FILE`, the CI job, on a tiny grid that trains in seconds:
it ends with the gate and exits with the check's status, or with the grid's when cells failed; misuse
exits 2 before anything trains."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from vitstudy.cli import main

SMOKE = """
smoke:
  data: {train_subset: 128}
  train: {epochs: 1}
"""
# accuracy lies in [0, 100], so the first always holds and the second never does, whatever training gives
HOLDS = "expect:\n  - match: {model.head: gap}\n    test/acc1: {value: 50, tolerance: 50}\n"
MISSED = "expect:\n  - match: {model.head: gap}\n    test/acc1: {value: -10, tolerance: 5}\n"


def test_run_grid_check_exits_with_the_checks_status_or_the_grids(write_manifest, tiny_grid, tmp_path, capsys):
    holds = write_manifest(tiny_grid + SMOKE + HOLDS, "holds.yaml")
    missed = write_manifest(tiny_grid + SMOKE + MISSED, "missed.yaml")  # same cells and ids
    out, junit = tmp_path / "out", tmp_path / "ci" / "report.xml"
    argv = ["--out", str(out), "--smoke", "--check", "--junit", str(junit)]

    assert main(["run-grid", str(holds), *argv]) == 0
    printed = capsys.readouterr().out
    assert "| cls |" in printed and "PASS  head=gap: test/acc1" in printed  # the table, then the gate
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("tiny-smoke", "1", "0")

    assert main(["run-grid", str(missed), *argv]) == 1  # nothing retrains: the cells are done
    assert "FAIL  head=gap: test/acc1" in capsys.readouterr().out
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "1"

    cls = next(p for p in (out / "tiny-smoke").glob("head-cls*/metrics.json"))
    cls.write_text(json.dumps({**json.loads(cls.read_text()), "status": "failed",
                               "error": {"category": "failed", "type": "RuntimeError", "message": "boom"}}))
    assert main(["run-grid", str(holds), *argv]) == 1  # a failed cell: the grid's status, though gap passes
    assert "1 of 1 expectations pass" in capsys.readouterr().out


def test_check_misuse_exits_2_before_training(write_manifest, tiny_grid, tmp_path, capsys):
    plain = write_manifest(tiny_grid)
    out = tmp_path / "out"
    assert main(["run-grid", str(plain), "--out", str(out), "--check"]) == 2
    assert "nothing to check" in capsys.readouterr().err
    assert main(["run-grid", str(plain), "--out", str(out), "--junit", str(tmp_path / "r.xml")]) == 2
    assert "--junit FILE goes with --check" in capsys.readouterr().err
    assert main(["run-grid", str(plain), "--out", str(out), "--check", "--backend", "slurm"]) == 2
    assert "add --wait" in capsys.readouterr().err
    assert not out.exists()


def test_the_default_grids_smoke_gate_passes(tmp_path, capsys):
    """The README's CI job, as it runs it: experiments.yaml's smoke grid (12 cells) with its own gate."""
    manifest = Path(__file__).resolve().parents[1] / "experiments.yaml"
    junit = tmp_path / "report.xml"
    argv = ["run-grid", str(manifest), "--smoke", "--check", "--junit", str(junit), "--out", str(tmp_path)]
    assert main(argv) == 0, capsys.readouterr().out
    assert "check 'digits-smoke': 4 of 4 expectations pass" in capsys.readouterr().out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("digits-smoke", "4", "0")
