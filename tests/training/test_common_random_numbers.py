"""Common random numbers in the real training path: two variants of a grid trained with one seed (attention
with softmax, and patch_mlp) start from the same value of every parameter they share and see the same
samples in the same order and the same augmented batches, epoch after epoch: with translation, and with
random erasing and Mixup/CutMix. A cell resumed from its checkpoint sees what it would have seen."""

import hashlib

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from vitstudy.config.spec import RunSpec
from vitstudy.models.build import resolve_model
from vitstudy.training.run import run_cell

TINY = dict(embed_dim=16, depth=1, num_heads=2, num_classes=10, in_chans=1, img_size=8, head="gap")
VARIANTS = {"softmax": dict(mixer="attention", normalizer="softmax"), "patch_mlp": dict(mixer="patch_mlp")}
EPOCHS, BATCHES = 3, 4  # 256 training images in batches of 64
RECIPES = {
    "shift": dict(data={"shift": 1}, train={}),
    "erasing+mixup": dict(data={"shift": 1}, train={"random_erasing": 0.5, "mixup": 0.8, "cutmix": 1.0}),
}


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().cpu().numpy().tobytes()).hexdigest()


class Seen(Callback):
    """What a cell's model starts from and sees while it trains: its initial weights, each epoch's sample
    order, every training batch as augmented (before Mixup) and as the model takes it (after), and
    whether augmentation changed the batch the sampler chose."""

    def __init__(self, stop_at_epoch: int | None = None):
        self.stop_at_epoch = stop_at_epoch
        self.initial: dict[str, torch.Tensor] = {}
        self.order: dict[int, list[int]] = {}
        self.augmented: list[tuple[int, int, str]] = []
        self.inputs: list[str] = []
        self.changed: list[bool] = []
        self.record: dict = {}  # the cell's metrics.json record, once trained

    def on_fit_start(self, trainer, pl_module) -> None:
        self.initial = {k: v.clone() for k, v in pl_module.model.state_dict().items()}
        pl_module.model.register_forward_pre_hook(self._input)

    def _input(self, model, args) -> None:
        if model.training:
            self.inputs.append(_digest(args[0]))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.stop_at_epoch:
            raise RuntimeError("interrupted")  # the cell fails; its last.ckpt is the previous epoch's

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        epoch, loader = trainer.current_epoch, trainer.train_dataloader
        if batch_idx == 0:
            self.order[epoch] = list(loader.indices)  # the sampler's order for this epoch
        chosen = torch.tensor(self.order[epoch][batch_idx * 64:(batch_idx + 1) * 64])
        self.changed.append(not torch.equal(batch[0], loader.x[chosen]))
        self.augmented.append((epoch, batch_idx, _digest(batch[0])))


def _spec(variant: str, recipe: str) -> RunSpec:
    r = RECIPES[recipe]
    return RunSpec(grid="crn", seed=0, model=resolve_model("vit_micro", **TINY, **VARIANTS[variant]),
                   data={"dataset": "digits", "batch_size": 64, "train_subset": 256, **r["data"]},
                   train={"epochs": EPOCHS, "lr": 3e-3, "accelerator": "cpu", **r["train"]},
                   log={"progress_bar": False, "loggers": []})


def _train(spec: RunSpec, run_dir, seen: Seen) -> Seen:
    seen.record = run_cell(spec, run_dir, callbacks=(seen,), progress=False)
    return seen


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[tuple[str, str], Seen]:
    """Every variant under every recipe, seed 0, each with the global RNG in another state."""
    out = {}
    for i, (variant, recipe) in enumerate((v, r) for r in RECIPES for v in VARIANTS):
        torch.manual_seed(100 + i)
        seen = _train(_spec(variant, recipe), tmp_path_factory.mktemp(f"{variant}-{recipe}"), Seen())
        assert seen.record["status"] == "done", seen.record.get("error")
        out[variant, recipe] = seen
    return out


@pytest.mark.parametrize("recipe", RECIPES)
def test_variants_see_the_same_samples_and_augmented_batches_every_epoch(trained, recipe):
    softmax, patch_mlp = trained["softmax", recipe], trained["patch_mlp", recipe]
    assert softmax.order == patch_mlp.order and len(softmax.order) == EPOCHS
    assert len({tuple(order) for order in softmax.order.values()}) == EPOCHS  # a new shuffle each epoch
    assert len(softmax.augmented) == EPOCHS * BATCHES and softmax.augmented == patch_mlp.augmented
    assert all(softmax.changed)  # every batch was augmented, not served as the sampler chose it
    assert len(softmax.inputs) == EPOCHS * BATCHES and softmax.inputs == patch_mlp.inputs
    assert len(set(softmax.inputs)) == EPOCHS * BATCHES
    mixed = [a[2] != i for a, i in zip(softmax.augmented, softmax.inputs, strict=True)]
    assert any(mixed) == (recipe == "erasing+mixup")  # Mixup/CutMix changed what the model took


def test_variants_start_from_the_same_shared_weights(trained):
    softmax, patch_mlp = trained["softmax", "shift"].initial, trained["patch_mlp", "shift"].initial
    shared = [k for k, v in patch_mlp.items() if k in softmax and softmax[k].shape == v.shape]
    assert {"tokenizer.proj.weight", "position.pos_embed", "blocks.0.mlp.fc1.weight", "head.weight"} <= set(shared)
    assert all(torch.equal(softmax[k], patch_mlp[k]) for k in shared)
    assert any(k not in softmax for k in patch_mlp)  # and patch_mlp has weights of its own
    other_recipe = trained["softmax", "erasing+mixup"].initial  # the recipe does not move the weights
    assert all(torch.equal(v, other_recipe[k]) for k, v in softmax.items())


def test_a_resumed_cell_sees_what_it_would_have_seen(trained, tmp_path):
    run_dir = tmp_path / "cell"
    spec = _spec("softmax", "erasing+mixup")
    failed = _train(spec, run_dir, Seen(stop_at_epoch=1)).record
    assert failed["status"] == "failed" and (run_dir / "last.ckpt").exists()
    torch.manual_seed(12345)  # another process would start from another global state
    resumed = _train(spec, run_dir, Seen())
    assert resumed.record["status"] == "done" and resumed.record["resumed_from"]["epoch"] == 0
    whole = trained["softmax", "erasing+mixup"]
    assert resumed.augmented == [a for a in whole.augmented if a[0] >= 1]
    assert resumed.inputs == whole.inputs[BATCHES:]


def test_the_record_holds_the_split_sizes_as_used(trained):
    assert trained["softmax", "shift"].record["split_sizes"] == {"train": 256, "val": 180, "test": 360}
