"""scripts/device_check.sh run as its own test mode asks (DEVICE_CHECK_DEVICE=cpu DEVICE_CHECK_TINY=1: a
2-cell grid, a 1-block ViT, 4 steps per variant): every figure it prints is present and consistent with
the others and with what vitstudy computes independently. No timing is asserted.

test_grid_packed_vs_unpacked and test_exit_status_and_verdict need `vitstudy run-grid --pack`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vitstudy.bench.flops import model_step_flops
from vitstudy.bench.mixers import variants
from vitstudy.config.manifest import load
from vitstudy.models.build import resolve_model
from vitstudy.registry import MIXERS, NORMALIZERS

REPO = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9.]+(?:e[-+]?[0-9]+)?)"


def _script_module():
    spec = importlib.util.spec_from_file_location("device_check", REPO / "scripts" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run() -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_CHECK_")}
    env.update(DEVICE_CHECK_DEVICE="cpu", DEVICE_CHECK_TINY="1", PYTHON=sys.executable)
    return subprocess.run(["bash", str(REPO / "scripts" / "device_check.sh")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)


def section(run, name: str) -> str:
    match = re.search(rf"^== {name}\n(.*?)^\({name}: ", run.stdout, re.S | re.M)
    assert match, f"no '{name}' section in:\n{run.stdout}\n{run.stderr}"
    return match.group(1)


def verdict(run, name: str) -> str:
    return re.search(rf"^\({name}: {NUMBER} s, (pass|FAIL)\)$", run.stdout, re.M).group(2)


def close(a: float, b: float, rel: float, abs_: float = 0.0) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b)) + abs_


def test_header_names_the_device_and_versions(run):
    first = run.stdout.splitlines()[0]
    assert first.startswith(f"device: cpu (CPU, {torch.get_num_threads()} threads); torch {torch.__version__}, ")


def test_every_mixer_and_normaliser_trains(run):
    loss = r"([-0-9.e+]+|nan|inf)"
    rows = re.findall(rf"^\| (\S+) \| {loss} → {loss} \| {loss} → {loss} \| (\w+) \|$", section(run, "mixers"),
                      re.M)
    assert [r[0] for r in rows] == [label for label, _ in variants()]
    labels = {r[0] for r in rows}
    assert {f"attention+{n}" for n in NORMALIZERS.names()} <= labels
    assert {m for m in MIXERS.names() if m != "attention"} <= labels
    for label, fp32_first, fp32_last, bf16_first, bf16_last, result in rows:
        for first, last in ((fp32_first, fp32_last), (bf16_first, bf16_last)):
            assert math.isfinite(float(first)) and float(last) < float(first), label
            assert 1.5 < float(first) < 3.5, label  # ≈ ln 10 for 10 classes at initialisation
        assert result == "pass", label
    assert verdict(run, "mixers") == "pass"


def test_mfu_figures_are_consistent(run):
    text = section(run, "mfu")
    spec = resolve_model("vit_small", img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=2,
                         num_classes=10)
    assert "32 px / 8 px patches, 64 wide × 1 blocks, batch 8, bf16 autocast" in text
    flops = float(re.search(rf"model FLOPs per step: {NUMBER} GFLOP", text).group(1)) * 1e9
    assert close(flops, sum(model_step_flops(spec, 8).values()), 1e-3)
    peak = float(re.search(rf"^peak: {NUMBER} TFLOP/s \(measured", text, re.M).group(1)) * 1e12
    rows = dict((mode, tuple(map(float, vals))) for mode, *vals in
                re.findall(rf"^\| (eager|compile) \| {NUMBER} \| {NUMBER} \| {NUMBER}% \|$", text, re.M))
    assert set(rows) == {"eager", "compile"}
    for ms, tflops, mfu in rows.values():
        assert ms > 0
        assert close(tflops * 1e12, flops / (ms / 1000), 2e-3)
        assert close(mfu / 100, tflops * 1e12 / peak, 2e-3)
    speedup = float(re.search(rf"^compile speedup: {NUMBER}x$", text, re.M).group(1))
    assert close(speedup, rows["eager"][0] / rows["compile"][0], 2e-3, 0.006)
    assert verdict(run, "mfu") == "pass"


def test_grid_packed_vs_unpacked(run):  # needs `vitstudy run-grid --pack`
    text = section(run, "grid")
    assert "experiments.yaml (tiny): 2 cells, 2 of 25 epochs each" in text
    times = {pack: float(t) for pack, t in re.findall(rf"^grid --pack (off|auto): {NUMBER} s, exit 0$", text, re.M)}
    assert set(times) == {"off", "auto"}, text
    ratio = float(re.search(rf"^grid speedup \(packed over unpacked\): {NUMBER}x$", text, re.M).group(1))
    # times and ratio are printed to 2 decimals: the ratio of the printed times, within that rounding
    bound = 0.005 + ratio * 0.005 * (1 / times["off"] + 1 / times["auto"])
    assert abs(ratio - times["off"] / times["auto"]) <= bound
    rows = re.findall(rf"^\| (.+?) \| {NUMBER} ± {NUMBER} \| {NUMBER} ± {NUMBER} \| ([-+]{NUMBER}) \| "
                      r"(\d+)/(\d+) \| (yes|NO) \|$", text, re.M)
    assert [r[0] for r in rows] == ["mixer=attention normalizer=softmax"], text
    _, off, _, auto, _, delta, _, n_off, n_auto, same = rows[0]
    assert (n_off, n_auto) == ("2", "2") and same == "yes"
    assert 0 <= float(off) <= 100 and 0 <= float(auto) <= 100
    assert abs(float(delta) - (float(auto) - float(off))) <= 0.011
    assert verdict(run, "grid") == "pass"


def test_exit_status_and_verdict(run):  # needs `vitstudy run-grid --pack`
    assert run.stdout.rstrip().endswith("device check: PASS"), run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0


def test_default_grid_is_capped_not_changed(tmp_path):
    """The grid the GPU check runs: the default grid's 60 cells with 5 of 25 epochs, warm-up scaled."""
    dc = _script_module()
    manifest = dc.grid_manifest(REPO / "experiments.yaml", tmp_path / "grid.yaml", 5, tiny=False)
    full, capped = load(REPO / "experiments.yaml"), load(manifest)
    assert len(capped.cells) == len(full.cells) == 60
    train = yaml.safe_load(manifest.read_text())["defaults"]["train"]
    assert (train["epochs"], train["warmup_epochs"]) == (5, 3 * 5 / 25)
    strip = lambda c: c.spec.model_dump(exclude={"train", "log"})
    assert [strip(c) for c in capped.cells] == [strip(c) for c in full.cells]


def test_datasheet_peaks_by_device_name():
    dc = _script_module()
    assert dc.datasheet_peak("NVIDIA H200") == ("H200", 989)
    assert dc.datasheet_peak("NVIDIA H100 80GB HBM3") == ("H100", 989)
    assert dc.datasheet_peak("NVIDIA H100 PCIe") == ("H100 PCIe", 756)
    assert dc.datasheet_peak("NVIDIA A100-SXM4-80GB") == ("A100", 312)
    assert dc.datasheet_peak("NVIDIA L40S") == ("L40S", 362)
    assert dc.datasheet_peak("NVIDIA L4") == ("L4", 121)
    assert dc.datasheet_peak("Tesla T4") is None  # no bf16 tensor cores: the script measures a matmul
