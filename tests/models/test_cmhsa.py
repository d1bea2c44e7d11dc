"""Li et al. 2021 ("Can Vision Transformers Perform Convolution?"): the exact conv → attention
construction, the lower bound on heads, the whole-model transfer, and two-phase runs in a grid
(identity, metrics, table, resume in either phase)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from vitstudy.cli import main
from vitstudy.config.manifest import ManifestError, load, parse
from vitstudy.models.build import build_model, resolve_model
from vitstudy.models.mixers.conv import ConvMixer
from vitstudy.models.transfer import conv_model_to_attention, conv_to_attention, min_heads

ROOT = Path(__file__).resolve().parents[2]


# --- the construction ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["explicit", "fused"])
@pytest.mark.parametrize("prefix", [0, 1], ids=["no_cls", "cls"])
@pytest.mark.parametrize("grid", [(5, 5), (3, 6), (2, 2)], ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("K", [3, 5])
def test_conv_to_attention_equals_the_convolution(K, grid, prefix, path):
    torch.manual_seed(K * 100 + grid[0] * 10 + grid[1] + prefix)
    conv = ConvMixer(12, grid, prefix, kernel_size=K)
    with torch.no_grad():
        conv.conv.bias.normal_()  # a bias that must reach every patch token and no class token
    attn = conv_to_attention(conv, grid, attn_path=path)
    x = torch.randn(3, prefix + grid[0] * grid[1], 12)
    want, got = conv(x, grid), attn(x, grid)
    assert attn.path_taken == path
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert torch.equal(got[:, :prefix], torch.zeros_like(got[:, :prefix]))  # class token: unmixed
    reach = [min(K // 2, n - 1) * 2 + 1 for n in grid]  # offsets that reach a token on this grid
    assert (attn.num_heads, attn.head_dim) == (reach[0] * reach[1], 12)


def _pattern_grads(attn, x, grid):
    attn.zero_grad()
    attn(x, grid).square().sum().backward()
    C = attn.head_dim * attn.num_heads
    k_grad = attn.qkv.weight.grad[C: 2 * C]
    return attn.rel_pos.table.grad.abs().sum(), k_grad.abs().sum(), attn.qkv.weight.grad[2 * C:].abs().sum()


def test_exact_transfer_freezes_the_pattern_and_a_finite_mask_lets_it_train():
    torch.manual_seed(0)
    grid = (4, 4)
    conv = ConvMixer(8, grid, 1, kernel_size=3)
    x = torch.randn(2, 17, 8)
    exact = conv_to_attention(conv, grid, attn_path="explicit")
    C = exact.head_dim * exact.num_heads
    assert exact.qkv.weight[:C].abs().sum() > 0 and exact.qkv.weight[C: 2 * C].abs().sum() == 0  # q random, k 0
    table, k, v = _pattern_grads(exact, x, grid)
    assert table == 0 and k == 0 and v > 0  # one-hot softmax: saturated, only values/outputs train
    soft = conv_to_attention(conv, grid, attn_path="explicit", mask_value=-10.0)
    want, got = conv(x, grid), soft(x, grid)
    rel_err = ((got - want).abs().max() / want.abs().max()).item()
    assert 1e-7 < rel_err < 17 * 2 * torch.e ** -10 * 9  # inexact, within the docstring's bound
    table, k, v = _pattern_grads(soft, x, grid)
    assert table > 0 and k > 0 and v > 0  # the attention pattern (and W_k, off the saddle) can learn


def test_depthwise_kernels_and_the_border_heads_are_exact():
    grid = (4, 4)
    conv = ConvMixer(8, grid, 0, kernel_size=5, conv_groups="depthwise")
    attn = conv_to_attention(conv, grid, attn_path="explicit")
    x = torch.randn(2, 16, 8)
    want = conv(x, grid)
    assert attn.num_heads == 25
    assert (attn(x, grid) - want).abs().max() <= 1e-4 * want.abs().max()
    # one-hot rows: with the null key, each head's weights at a corner sum to 1 over a single key
    q = torch.zeros(1, 25, 16, 1)
    bias = torch.cat([attn.rel_pos(), attn.null_bias[:, :, None]], dim=-1)  # (h, N, N+1)
    weights = torch.softmax(q @ q.new_zeros(1, 25, 1, 17) + bias, dim=-1)
    assert torch.equal(weights.max(-1).values, torch.ones(1, 25, 16))
    corner_null = weights[0, :, 0, -1]  # query (0, 0): heads with δ < 0 in a coordinate see padding
    offsets = [(a, b) for a in range(-2, 3) for b in range(-2, 3)]
    assert corner_null.tolist() == [float(a < 0 or b < 0) for a, b in offsets]


@pytest.mark.parametrize("kernel,patch,inputs,heads", [
    (5, 1, "pixel", 25), (3, 1, "pixel", 9),            # the paper's K² for pixel inputs
    (5, 2, "patch", 9), (5, 16, "patch", 9),            # 9 for a 5×5 kernel on patches of ≥ 2 px
    (3, 4, "patch", 9), (5, 1, "patch", 25), (7, 2, "patch", 25), (1, 4, "patch", 1),
])
def test_min_heads(kernel, patch, inputs, heads):
    assert min_heads(kernel, patch, inputs) == heads


def test_min_heads_refuses_even_kernels():
    with pytest.raises(ValueError, match="odd"):
        min_heads(4, 2)


@pytest.mark.parametrize("K", [3, 5])
def test_whole_model_transfer_keeps_the_logits(K):
    torch.manual_seed(K)
    spec = resolve_model(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, depth=2,
                         num_heads=2, mixer="conv", head="gap", kernel_size=K)
    model = build_model(spec).eval()
    with torch.no_grad():  # trained-looking weights: nothing left at its zero initialisation
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    phase2, spec2 = conv_model_to_attention(model, spec)
    x = torch.randn(5, 1, 8, 8)
    want, got = model(x), phase2(x)
    assert spec2.mixer == "attention" and spec2.head == "gap" and spec2.num_heads == K * K
    assert all(type(b.mixer).__name__ == "Attention" for b in phase2.blocks)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert not torch.allclose(model(x), model(x.flip(-1)))  # the logits depend on the image


# --- two-phase runs --------------------------------------------------------------------------------
TWO_PHASE = """
name: twophase
defaults:
  model: {img_size: 8, patch_size: 2, embed_dim: 16, depth: 1, num_heads: 2, head: gap}
  data: {dataset: digits, batch_size: 512}
  train: {epochs: 1, lr: 3.0e-3}
  log: {progress_bar: false}
grid:
  - {model.mixer: [conv]}
  - {model.mixer: [pool]}
phases:
  - match: {model.mixer: conv}
    transfer: conv_to_attention
    train: {epochs: 2, lr: 1.0e-3}
"""


def _records(grid, out):
    return {c.run_id: json.loads((grid.cell_dir(out, c) / "metrics.json").read_text()) for c in grid.cells}


def test_phases_expand_into_linked_cells():
    grid = parse(TWO_PHASE)
    first, pool, second = grid.cells
    assert dict(first.axes)["phase"] == 1 and dict(second.axes)["phase"] == 2 and "phase" not in dict(pool.axes)
    assert second.spec.train.init_from == first.run_id and second.spec.train.transfer == "conv_to_attention"
    assert (second.spec.model.mixer, second.spec.model.num_heads, second.spec.model.head_dim) == ("attention", 9, 16)
    assert (second.spec.train.epochs, second.spec.train.lr) == (2, 1e-3)
    # phase 2's identity includes phase 1's: a change to phase 1 alone gives phase 2 a new id
    changed = parse(TWO_PHASE.replace("train: {epochs: 1, lr: 3.0e-3}", "train: {epochs: 1, lr: 2.0e-3}"))
    assert changed.cells[2].run_id != second.run_id
    # without `phases`, the same cells as before: no phase axis, the ids of a plain grid
    plain = parse(TWO_PHASE.split("phases:")[0])
    assert [c.run_id for c in plain.cells] == [c.run_id.replace("_phase-1", "") for c in plain.cells]
    assert len(plain.cells) == 2 and plain.cells[1].run_id == pool.run_id


def test_phase_rules_are_validated():
    with pytest.raises(ManifestError, match="needs phase 1's mixer to be 'conv'"):
        parse(TWO_PHASE.replace("match: {model.mixer: conv}", "match: {model.mixer: pool}"))
    with pytest.raises(ManifestError, match="transfer"):
        parse(TWO_PHASE.replace("transfer: conv_to_attention", "transfer: conv2attn"))
    with pytest.raises(ManifestError,
                       match=r"phases\[0\]\.match\.model\.mixr: unknown model option 'mixr' \(did you mean 'mixer'"):
        parse(TWO_PHASE.replace("match: {model.mixer: conv}", "match: {model.mixr: conv}"))


def test_two_phase_run_records_both_phases_and_resumes_in_either(tmp_path, write_manifest, capsys):
    manifest, out = write_manifest(TWO_PHASE), tmp_path / "results"
    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0
    grid = load(manifest)
    first, _, second = grid.cells
    records = _records(grid, out)
    assert all(r["status"] == "done" and "test/acc1" in r["metrics"] for r in records.values())
    assert records[second.run_id]["spec"]["train"]["init_from"] == first.run_id
    table = (out / "twophase" / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| conv |")]
    assert len(rows) == 2 and "| 1 |" in rows[0] and "| 2 |" in rows[1]
    for rid, row in ((first.run_id, rows[0]), (second.run_id, rows[1])):
        assert f"{100 * records[rid]['metrics']['test/acc1']:.2f}" in row or \
            f"{records[rid]['metrics']['test/acc1']:.2f}" in row

    # phase 2 starts from exactly phase 1's final model: the transferred logits are phase 1's
    from vitstudy.training.phase_init import init_from_phase
    from vitstudy.training.system import ImageClassifier

    one = ImageClassifier.load_from_checkpoint(grid.cell_dir(out, first) / "last.ckpt", weights_only=True)
    two = build_model(second.spec.model)
    init_from_phase(two, second.spec, grid.cell_dir(out, second))
    x = torch.randn(4, 1, 8, 8)
    want = one.model.eval()(x)
    assert (two.eval()(x) - want).abs().max() <= 1e-4 * want.abs().max()

    # interrupted in phase 2 before it started: the rerun trains phase 2 only
    done_first = records[first.run_id]["finished_at"], records[first.run_id]["attempt"]
    shutil.rmtree(grid.cell_dir(out, second))
    capsys.readouterr()
    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0
    records = _records(grid, out)
    assert (records[first.run_id]["finished_at"], records[first.run_id]["attempt"]) == done_first
    assert records[second.run_id]["status"] == "done" and records[second.run_id]["attempt"] == 1
    assert capsys.readouterr().out.count("→ ") == 1  # one cell started

    # interrupted during phase 2 (its last.ckpt is there, metrics.json says running): it resumes
    path = grid.cell_dir(out, second) / "metrics.json"
    path.write_text(json.dumps({**records[second.run_id], "status": "running"}))
    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0
    again = _records(grid, out)[second.run_id]
    assert again["status"] == "done" and again["attempt"] == 2 and again["resumed_from"]["epoch"] >= 1

    # interrupted during phase 1: phase 1 resumes first, then phase 2 starts from its new weights
    path = grid.cell_dir(out, first) / "metrics.json"
    path.write_text(json.dumps({**records[first.run_id], "status": "running"}))
    shutil.rmtree(grid.cell_dir(out, second))
    assert main(["run-grid", str(manifest), "--out", str(out)]) == 0
    records = _records(grid, out)
    assert records[first.run_id]["attempt"] == 2 and records[first.run_id]["resumed_from"] is not None
    assert records[second.run_id]["status"] == "done"
    assert records[second.run_id]["started_at"] >= records[first.run_id]["finished_at"]


def test_phase_two_waits_for_a_failed_phase_one(tmp_path, write_manifest, capsys):
    manifest, out = write_manifest(TWO_PHASE), tmp_path / "results"
    grid = load(manifest)
    first, _, second = grid.cells
    d = grid.cell_dir(out, first)
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"status": "failed", "run_id": first.run_id}))
    assert main(["run-grid", str(manifest), "--out", str(out)]) == 1
    assert f"{second.run_id} not run: its phase 1 {first.run_id} is failed" in capsys.readouterr().out
    assert not (grid.cell_dir(out, second) / "metrics.json").exists()


def test_cmhsa_manifest_compares_the_papers_variants():
    grid = load(ROOT / "ablations" / "cmhsa.yaml")
    specs = [c.spec for c in grid.cells]
    assert all(s.data.dataset == "cifar100" and s.model.num_classes == 100 for s in specs)
    assert {s.model.preset for s in specs if s.model.mixer == "attention" and not s.model.null_key} == \
        {"vit_base", "deit_base"}
    second = {s.model.num_heads: s for s in specs if s.train.init_from}
    assert set(second) == {9, 25} and all(s.train.epochs == 200 for s in second.values())
    firsts = {c.run_id: c.spec for c in grid.cells}
    for s in second.values():  # two phases: 200 conv epochs, then 200 attention epochs
        assert firsts[s.train.init_from].model.mixer == "conv" and firsts[s.train.init_from].train.epochs == 200
    one_phase = [s for s in specs if not s.train.init_from and s.train.epochs == 400]
    assert {(s.model.mixer, s.model.num_heads if s.model.null_key else None) for s in one_phase} >= \
        {("conv", None), ("attention", 9), ("attention", 25)}
    smoke = load(ROOT / "ablations" / "cmhsa.yaml", smoke=True)
    assert {c.spec.data.dataset for c in smoke.cells} == {"digits"}
    assert sum(bool(c.spec.train.init_from) for c in smoke.cells) == 2


# --- CIFAR -----------------------------------------------------------------------------------------
def test_offline_cifar_says_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    from vitstudy.data.base import build_datamodule

    def offline(self):
        raise OSError("no network")

    monkeypatch.setattr(tvd.CIFAR100, "download", offline)
    dm = build_datamodule("cifar100", img_size=32, batch_size=8, root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/cifar-100-python.*train, test, meta"):
        dm.setup()


def test_random_flip_mirrors_whole_images():
    from vitstudy.data.augment import random_flip

    x = torch.randn(64, 3, 4, 4)
    y = random_flip(x, torch.Generator().manual_seed(0))
    same = (y == x).flatten(1).all(1)
    mirrored = (y == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 10 < int(mirrored.sum()) < 54
