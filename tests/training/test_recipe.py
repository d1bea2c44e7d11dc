"""The training recipe's pieces are applied when configured, and only then; the two data pipelines serve
the same samples; named recipes expand to the papers' settings."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitstudy.config.manifest import ManifestError, load, parse
from vitstudy.config.spec import RunSpec
from vitstudy.data.augment import BatchAugment, build_mixup
from vitstudy.data.base import DeviceBatches, TensorDataModule
from vitstudy.models.build import resolve_model
from vitstudy.models.seeding import drawing_from
from vitstudy.training.system import ImageClassifier, system_for, warmup_cosine

MICRO = {"preset": "vit_micro", "embed_dim": 32, "depth": 1, "num_heads": 2, "num_classes": 10, "in_chans": 3}


def _system(batch_size: int = 64, **train) -> ImageClassifier:
    """The system of a cell with the micro model on 16 px images, `batch_size` and the recipe `train`."""
    model = resolve_model(**MICRO, img_size=16)
    spec = RunSpec(grid="t", seed=0, model=model, data={"dataset": "synthetic", "batch_size": batch_size},
                   train=train)
    return system_for(spec)


class EightBit(TensorDataModule):
    """Random 8-bit images (as CIFAR's and MNIST's are) of 10 classes: both pipelines represent them
    exactly."""

    sizes = {"train": 70, "val": 20, "test": 20}

    def __init__(self, img_size: int, batch_size: int, **options):
        super().__init__(img_size, batch_size, num_classes=10, in_chans=3, **options)

    def load(self):
        g = torch.Generator().manual_seed(1)
        return {name: (torch.randint(0, 256, (n, 3, 12, 12), generator=g).float() / 255,
                       torch.randint(0, 10, (n,), generator=g)) for name, n in self.sizes.items()}


def _epoch(loader, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(loader, DeviceBatches):
        loader.epoch = lambda: epoch
    else:
        loader.sampler.set_epoch(epoch)
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


# --- the two pipelines --------------------------------------------------------------------------------
@pytest.mark.parametrize("img_size", [12, 16])
def test_device_and_per_sample_pipelines_serve_the_same_samples_each_epoch(img_size):
    device = EightBit(img_size, batch_size=16, pipeline="device", seed=3)
    workers = EightBit(img_size, batch_size=16, pipeline="workers", seed=3, num_workers=0)
    for dm in (device, workers):
        dm.setup("fit")
    assert device.pipeline["mode"] == "device" and workers.pipeline["mode"] == "workers"
    seen = []
    for epoch in (0, 1):
        (xd, yd), (xw, yw) = _epoch(device.train_dataloader(), epoch), _epoch(workers.train_dataloader(), epoch)
        assert len(yd) == len(yw) == 70
        # same samples, in the same order (one sampler, keyed by seed and epoch), same values
        torch.testing.assert_close(xd, xw, atol=1e-5, rtol=0)
        assert torch.equal(yd, yw)
        # and every training sample exactly once
        train_x = device.splits["train"].tensors[0]
        rows = {tuple(r.flatten()[:8].tolist()) for r in train_x}
        assert {tuple(r.flatten()[:8].tolist()) for r in xd} == rows
        seen.append(yd)
    assert not torch.equal(seen[0], seen[1])  # a new shuffle per epoch


def test_shuffle_depends_on_seed_and_epoch_not_on_global_rng():
    a, b = EightBit(12, 70, seed=0), EightBit(12, 70, seed=1)
    for dm in (a, b):
        dm.setup("fit")
    _, ya = _epoch(a.train_dataloader(), 0)
    torch.manual_seed(123)  # global RNG: irrelevant to the order
    _, ya2 = _epoch(a.train_dataloader(), 0)
    _, yb = _epoch(b.train_dataloader(), 0)
    assert torch.equal(ya, ya2) and not torch.equal(ya, yb)


def test_randaugment_or_colour_jitter_switch_training_to_per_sample_pipeline():
    plain = EightBit(12, 16, seed=0)
    jitter = EightBit(12, 16, seed=0, color_jitter=0.4, num_workers=0)
    rand = EightBit(12, 16, seed=0, randaugment="rand-m9-mstd0.5-inc1", num_workers=0)
    for dm in (plain, jitter, rand):
        dm.setup("fit")
    assert plain.pipeline["mode"] == "device"
    for dm in (jitter, rand):
        assert dm.pipeline["mode"] == "workers" and "PIL" in dm.pipeline["reason"]
        assert isinstance(dm.val_dataloader(), DeviceBatches)  # evaluation is never augmented
    torch.manual_seed(0)
    x_plain, y_plain = _epoch(plain.train_dataloader(), 0)
    for dm in (jitter, rand):
        torch.manual_seed(0)
        x, y = _epoch(dm.train_dataloader(), 0)
        assert torch.equal(y, y_plain)
        changed = (x - x_plain).abs().flatten(1).amax(1) > 1e-3
        assert changed.float().mean() > 0.5  # most images altered by the per-image operations


def test_random_erasing_and_flip_act_on_whole_batches():
    x = torch.randn(32, 3, 16, 16)
    original = x.clone()
    torch.manual_seed(0)
    erased = BatchAugment(erasing=1.0)(x)
    assert torch.equal(x, original)  # the input is left as it was
    per_image = (erased != x).flatten(1).any(1)
    assert per_image.all()  # probability 1: every image has an erased box
    assert ((erased != x).flatten(1).float().mean(1) < 0.5).all()  # a box, not the whole image
    flipped = BatchAugment(flip=True)(x)
    for a, b in zip(flipped, x, strict=True):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
    assert not BatchAugment() and torch.equal(BatchAugment()(x), x)


def test_repeated_augmentation_repeats_each_sample_consecutively():
    dm = EightBit(12, 16, seed=0, repeated_aug=3)
    dm.setup("fit")
    _, y = _epoch(dm.train_dataloader(), 0)
    idx = list(dm.train_dataloader().indices)
    # timm's RepeatAugSampler: each chosen index three times in a row; ~1/3 of the set per epoch
    assert len(idx) == 70 and all(idx[i] == idx[i + 1] == idx[i + 2] for i in range(0, 69, 3))


# --- Mixup / CutMix, EMA, lr scaling, cool-down -----------------------------------------------------------
def test_mixup_changes_inputs_and_targets_and_the_loss_uses_them():
    mix = build_mixup(0.8, 0.0, 1.0, 0.5, 0.1, num_classes=10)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    np.random.seed(0)
    xm, soft = mix(x.clone(), y)
    assert soft.shape == (8, 10) and torch.allclose(soft.sum(1), torch.ones(8))
    assert ((soft > 0.05).sum(1) == 2).all()  # each row mixes its class with the mirrored sample's
    assert not torch.allclose(xm, x)
    # label smoothing 0.1 over 10 classes: on 0.91, off 0.01; row 0 mixes sample 0 with sample 7
    lam = (soft[0, 0] - 0.01) / 0.9
    assert soft[0, 0] + soft[0, 7] == pytest.approx(0.92)
    torch.testing.assert_close(xm[0], lam * x[0] + (1 - lam) * x[7])

    system = _system(mixup=0.8, label_smoothing=0.1)
    x, y = torch.randn(7, 3, 16, 16), torch.randint(0, 10, (7,))  # odd: the last sample is dropped

    def loss_of(system, batch_idx: int) -> torch.Tensor:
        return system.training_loss((x.clone(), y), batch_idx)  # timm mixes in place

    np.random.seed(1)
    loss = loss_of(system, 2)
    with drawing_from(0, "mixup", 0, 2, 0):  # λ is drawn per (seed, epoch, batch, rank)
        xm, soft = system.mixup(x[:6].clone(), y[:6])
    expected = torch.sum(-soft * F.log_softmax(system(xm), -1), -1).mean()
    torch.testing.assert_close(loss, expected)
    np.random.seed(2)  # the global generators play no part
    torch.testing.assert_close(loss_of(system, 2), loss)
    assert not torch.allclose(loss_of(system, 3), loss)  # another batch, another λ
    plain = _system(label_smoothing=0.1)
    plain.load_state_dict(system.state_dict())
    assert plain.mixup is None
    assert not torch.allclose(loss_of(plain, 2), loss)
    assert build_mixup(0.0, 0.0, 1.0, 0.5, 0.1, 10) is None


def test_ema_follows_the_weights_with_its_decay():
    system = _system(ema_decay=0.9)
    assert not any(p.requires_grad for p in system.ema.parameters())
    opt, _ = system.optimizer_and_schedule(10, 1)
    assert all(p.data_ptr() not in {q.data_ptr() for q in system.ema.parameters()}
               for g in opt.param_groups for p in g["params"])  # the EMA is never optimised
    before = {k: v.clone() for k, v in system.ema.module.state_dict().items()}
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    loss = F.cross_entropy(system(x), y)
    loss.backward()
    opt.step()
    system.ema.update(system.model)  # as ImageClassifier.on_train_batch_end does
    live = system.model.state_dict()
    for k, v in system.ema.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * live[k])
    w = "blocks.0.mixer.qkv.weight"
    assert not torch.equal(system.ema.module.state_dict()[w], live[w])


def test_lr_scales_with_the_global_batch_and_cooldown_holds_min_lr():
    system = _system(lr=5e-4, batch_size=128, lr_base_batch=512, min_lr=1e-5, warmup_epochs=1,
                     cooldown_epochs=2, weight_decay=0.05)
    assert system.peak_lr() == pytest.approx(1.25e-4)
    opt, sched = system.optimizer_and_schedule(total_steps=100, epochs=10)  # 10 steps per epoch
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.25e-4 / 10) and max(lrs) == pytest.approx(1.25e-4)
    assert lrs[-20:] == pytest.approx([1e-5] * 20)  # the last 2 epochs: cool-down at min_lr
    assert lrs[-21] > 1.0001e-5  # still on the cosine just before
    assert warmup_cosine(80, 80, 10, 0.08) == pytest.approx(0.08)


# --- named recipes in manifests ---------------------------------------------------------------------------
DEIT = """
name: r
defaults:
  model: {preset: deit_tiny}
  data: {dataset: imagenet, batch_size: 256}
  train: {recipe: deit, epochs: 30, mixup: 0.5}
"""


def test_deit_recipe_fills_what_the_manifest_leaves_unset():
    spec = parse(DEIT).cells[0].spec
    t = spec.train
    assert (t.epochs, t.mixup) == (30, 0.5)  # explicit values win
    assert (t.lr, t.lr_base_batch, t.weight_decay, t.warmup_epochs, t.min_lr) == (5e-4, 512, 0.05, 5, 1e-5)
    assert (t.cutmix, t.randaugment, t.color_jitter, t.random_erasing) == (1.0, "rand-m9-mstd0.5-inc1", 0.4, 0.25)
    assert (t.repeated_aug, t.ema_decay, t.label_smoothing, spec.model.drop_path) == (3, 0.99996, 0.1, 0.1)
    plain = parse(DEIT.replace("recipe: deit, ", "")).cells[0].spec
    assert plain.train.mixup == 0.5 and plain.train.cutmix == 0.0 and plain.model.drop_path == 0.0
    assert parse(DEIT).cells[0].run_id != parse(DEIT.replace("recipe: deit, ", "")).cells[0].run_id


def test_t2t_recipe_depends_on_the_preset():
    small = parse(DEIT.replace("deit_tiny", "t2t_vit_7").replace("recipe: deit", "recipe: t2t")
                  .replace("epochs: 30, ", "")).cells[0].spec.train
    assert (small.epochs, small.cooldown_epochs, small.warmup_epochs, small.lr, small.weight_decay) == \
        (310, 10, 10, 1e-3, 0.03)
    large = parse(DEIT.replace("deit_tiny", "t2t_vit_24").replace("recipe: deit", "recipe: t2t")
                  .replace("epochs: 30, ", "")).cells[0].spec.train
    assert (large.lr, large.weight_decay) == (5e-4, 0.065)


@pytest.mark.parametrize("line, message", [
    ("train: {recipe: deitt}", "deit"),
    ("train: {randaugment: m9}", "rand"),
    ("train: {mixup_prob: 0.5}", "mixup or cutmix"),
    ("train: {epochs: 10, warmup_epochs: 5, cooldown_epochs: 5}", "cooldown_epochs"),
    ("train: {strategy: dpp}", "ddp"),
])
def test_bad_recipe_options_are_refused_before_anything_runs(line, message):
    text = f"name: r\ndefaults:\n  model: {{preset: vit_micro}}\n  data: {{dataset: digits}}\n  {line}\n"
    with pytest.raises(ManifestError) as info:
        parse(text)
    assert message in info.value.render()


def test_a_recipe_run_records_pipeline_ema_metrics_and_scaled_lr(tmp_path, write_manifest):
    from vitstudy.cli import main

    path = write_manifest("""
        name: deitsmoke
        defaults:
          model: {preset: vit_micro, embed_dim: 32, depth: 1, num_heads: 2}
          data: {dataset: synthetic, batch_size: 64, train_subset: 256}
          train: {recipe: deit, epochs: 2, warmup_epochs: 0, ema_decay: 0.9, repeated_aug: 1}
          log: {progress_bar: false}
        seeds: [0]
        """)
    assert main(["run-grid", str(path), "--out", str(tmp_path / "out")]) == 0
    (cell,) = load(path).cells
    record = json.loads(next((tmp_path / "out").rglob("metrics.json")).read_text())
    assert record["status"] == "done", record.get("error")
    assert record["spec"]["train"]["recipe"] == "deit" and cell.spec.train.mixup == 0.8
    assert record["pipeline"]["mode"] == "workers"  # RandAugment and colour jitter: per-image
    assert record["peak_lr"] == pytest.approx(5e-4 * 64 / 512)
    for key in ("val/ema_acc1", "test/ema_acc1", "val/acc1", "test/acc1"):
        assert 0.0 <= record["metrics"][key] <= 100.0
    # the EMA model is evaluated, not the live one twice: its loss on the same images differs
    assert record["metrics"]["val/ema_loss"] != pytest.approx(record["metrics"]["val/loss"], rel=1e-4)


def test_ddp_on_two_cpu_processes_shards_the_data_and_writes_one_record(tmp_path, write_manifest):
    """strategy/devices pass through to Lightning; its launcher re-runs our command for rank 1, which joins
    the cell rank 0 trains (not the grid). Each rank sees half the data: half the steps per epoch."""
    import subprocess
    import sys

    path = write_manifest("""
        name: ddp
        defaults:
          model: {preset: vit_micro, embed_dim: 32, depth: 1, num_heads: 2}
          data: {dataset: digits, batch_size: 64}
          train: {epochs: 2, lr: 3.0e-3, accelerator: cpu, devices: 2, strategy: ddp}
          log: {progress_bar: false}
        seeds: [0]
        """)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "vitstudy.cli", "run-grid", str(path), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = [p.parent for p in out.rglob("metrics.json")]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "done" and record["env"]["device_count"] == 2
    ckpt = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 * math.ceil(1257 / 2 / 64)  # 10 steps per epoch per rank, not 20
    assert "1 done" in res.stdout


def test_compiled_model_keeps_parameter_names_and_outputs():
    """train.compile: the model is compiled in place, so checkpoints and phase transfers see the same
    parameter names, and it computes what the eager model computes."""
    eager = _system()
    compiled = _system(compile=True)
    compiled.load_state_dict(eager.state_dict())
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), atol=1e-5, rtol=1e-4)


def test_epoch_train_loss_is_the_mean_of_the_step_losses(tmp_path, write_manifest):
    """The loss is summed on the device and logged once per epoch; per-step values go to the loggers
    every `log.every_n_steps`. Read back from the CSV logger, the two agree."""
    import csv

    from vitstudy.cli import main

    path = write_manifest("""
        name: steps
        defaults:
          model: {preset: vit_micro, embed_dim: 16, depth: 1, num_heads: 2}
          data: {dataset: digits, batch_size: 256}
          train: {epochs: 2, lr: 3.0e-3}
          log: {progress_bar: false, every_n_steps: 1, loggers: [tensorboard, csv]}
        seeds: [0]
        """)
    assert main(["run-grid", str(path), "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader(next((tmp_path / "out").rglob("csv/metrics.csv")).open()))
    for epoch in ("0", "1"):
        steps = [float(r["train/loss_step"]) for r in rows if r["epoch"] == epoch and r["train/loss_step"]]
        (mean,) = [float(r["train/loss"]) for r in rows if r["epoch"] == epoch and r["train/loss"]]
        assert len(steps) == math.ceil(1257 / 256)
        assert mean == pytest.approx(sum(steps) / len(steps), rel=1e-5)
