"""The LightningModule keeps no training default of its own: every argument is required and filled by
`system_for` from the RunSpec, by name; every TrainSpec field reaches the system or one of the consumers
named here; and a trained system's checkpoint reloads with weights_only=True to the same logits."""

import inspect

import lightning as L
import pytest
import torch

from vitstudy.config.spec import RunSpec, TrainSpec
from vitstudy.data.augment import ImageAugment
from vitstudy.data.base import datamodule_for
from vitstudy.models.build import resolve_model
from vitstudy.training.quiet import expected_warnings_ignored
from vitstudy.training.run import build_trainer
from vitstudy.training.system import NOT_FROM_TRAIN, ImageClassifier, system_for

# The TrainSpec fields the system does not take, and what consumes each instead.
CONSUMED_ELSEWHERE = {
    "epochs": "Trainer (max_epochs)", "precision": "Trainer", "accelerator": "Trainer", "devices": "Trainer",
    "strategy": "Trainer", "num_nodes": "Trainer", "deterministic": "Trainer",
    "randaugment": "DataModule", "color_jitter": "DataModule", "random_erasing": "DataModule",
    "repeated_aug": "DataModule (sampler)",
    "recipe": "the manifest: config.recipes fills the other fields from it",
    "init_from": "phase 2: training.phase_init", "transfer": "phase 2: training.phase_init",
    "transfer_mask_value": "phase 2: training.phase_init",
    "tune_from": "a tuned grid's final cell: training.tune", "tune_metric": "a tuned grid: training.tune",
}
# A value other than TrainSpec's default for every field the system takes.
NOT_DEFAULT = {
    "lr": 2e-3, "min_lr": 3e-5, "weight_decay": 0.1, "warmup_epochs": 1.5, "label_smoothing": 0.2,
    "betas": (0.8, 0.99), "lr_base_batch": 256, "cooldown_epochs": 2, "mixup": 0.5, "cutmix": 0.3,
    "mixup_prob": 0.9, "mixup_switch_prob": 0.4, "ema_decay": 0.99, "compile": True, "grad_clip": 1.0,
}
PARAMETERS = inspect.signature(ImageClassifier).parameters
FROM_TRAIN = set(PARAMETERS) - set(NOT_FROM_TRAIN)


def _spec(**train) -> RunSpec:
    return RunSpec(grid="t", seed=3, model=resolve_model("vit_micro", embed_dim=16, depth=1, num_heads=2,
                                                          num_classes=10, in_chans=1, img_size=8),
                   data={"dataset": "digits", "batch_size": 48}, train=train)


def test_every_train_field_goes_to_the_system_or_to_a_named_consumer():
    fields = set(TrainSpec.model_fields)
    assert FROM_TRAIN <= fields, f"system arguments that are no TrainSpec field: {FROM_TRAIN - fields}"
    assert fields - FROM_TRAIN == set(CONSUMED_ELSEWHERE), "a TrainSpec field nobody consumes, or a stale entry"


def test_the_system_has_no_defaults_of_its_own():
    for name, p in PARAMETERS.items():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty, name
    with pytest.raises(TypeError, match="missing"):
        ImageClassifier(model=_spec().model.model_dump(mode="json"), batch_size=8)


def test_system_for_fills_every_argument_from_the_spec():
    assert set(NOT_DEFAULT) == FROM_TRAIN
    defaults = TrainSpec()
    assert all(getattr(defaults, k) != v for k, v in NOT_DEFAULT.items())
    spec = _spec(**NOT_DEFAULT)
    hp = system_for(spec).hparams
    assert {k: hp[k] for k in FROM_TRAIN} == {k: getattr(spec.train, k) for k in FROM_TRAIN} == NOT_DEFAULT
    assert hp["batch_size"] == 48 and hp["seed"] == 3 and hp["model"] == spec.model.model_dump(mode="json")


def test_the_trainer_and_the_datamodule_take_the_rest(tmp_path):
    spec = _spec(epochs=3, precision="bf16-mixed", accelerator="cpu", randaugment="rand-m9-mstd0.5-inc1",
                 color_jitter=0.3, random_erasing=0.25, repeated_aug=3)
    with expected_warnings_ignored():
        trainer = build_trainer(spec, tmp_path, progress=False, callbacks=[], logger=False)
    assert (trainer.max_epochs, trainer.precision, trainer.strategy.root_device.type) == (3, "bf16-mixed", "cpu")
    dm = datamodule_for(spec)
    assert dm.image_augment == ImageAugment(randaugment="rand-m9-mstd0.5-inc1", color_jitter=0.3)
    assert (dm.augment.erasing, dm.repeated_aug, dm.seed) == (0.25, 3, 3)


def test_a_checkpoint_reloads_with_weights_only_to_the_same_logits(tmp_path):
    spec = _spec(epochs=1, accelerator="cpu", betas=(0.8, 0.99), ema_decay=0.9)
    L.seed_everything(0, verbose=False)
    system = system_for(spec)
    with expected_warnings_ignored():
        trainer = build_trainer(spec, tmp_path, progress=False, callbacks=[], logger=False,
                                enable_checkpointing=False, max_steps=2, limit_val_batches=0,
                                num_sanity_val_steps=0)
        trainer.fit(system, datamodule=datamodule_for(spec))
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    reloaded = ImageClassifier.load_from_checkpoint(tmp_path / "c.ckpt", weights_only=True)
    assert reloaded.hparams == system.hparams
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(x), system.eval()(x), rtol=0, atol=0)
        torch.testing.assert_close(reloaded.ema.module(x), system.ema.module(x), rtol=0, atol=0)
