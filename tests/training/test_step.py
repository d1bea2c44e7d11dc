"""The training step's pieces (vitstudy.training.step): AdamW decays exactly the weight matrices, and
`train_step` (what `vitstudy profile` and `vitstudy bench` time) takes the step the LightningModule takes
when a Trainer fits a cell: same loss, optimizer, lr and clipping, so the same weights afterwards."""

import copy

import lightning as L
import pytest
import torch

from vitstudy.config.spec import RunSpec, TrainSpec
from vitstudy.data.base import datamodule_for
from vitstudy.models.build import build_model, resolve_model
from vitstudy.training.quiet import expected_warnings_ignored
from vitstudy.training.run import build_trainer
from vitstudy.training.step import adamw, train_step
from vitstudy.training.system import system_for

MICRO = dict(embed_dim=16, depth=1, num_heads=2, num_classes=10, in_chans=1, img_size=8)


def test_adamw_decays_the_weight_matrices_only():
    model = build_model(resolve_model("vit_micro", **MICRO))
    opt = adamw(model, lr=1e-3, weight_decay=0.07, betas=(0.8, 0.9))
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = ({names[id(p)] for p in g["params"]} for g in opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.07, 0.0]
    assert decay == {"tokenizer.proj.weight", "blocks.0.mixer.qkv.weight", "blocks.0.mixer.proj.weight",
                     "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "head.weight"}
    assert no_decay == set(names.values()) - decay  # biases, norms, cls_token, position.pos_embed
    assert opt.defaults["fused"] and opt.defaults["betas"] == (0.8, 0.9)


def _spec(**train) -> RunSpec:
    """A digits cell whose one training batch is the whole training split (1,257 images, no shift)."""
    return RunSpec(grid="t", seed=0, model=resolve_model("vit_micro", **MICRO),
                   data={"dataset": "digits", "batch_size": 2048},
                   train={"epochs": 1, "accelerator": "cpu", **train})


@pytest.fixture
def fitted(tmp_path_factory):
    """One optimizer step of a cell through the Trainer, with non-default loss, optimizer and clipping:
    the spec, the system after the step, the model before the step, and the batch. AdamW's first step is
    g / (|g| + eps), blind to the gradient's scale but for eps: only a clip that brings |g| near eps
    changes it."""
    spec = _spec(lr=3e-3, weight_decay=0.1, betas=(0.8, 0.99), label_smoothing=0.2, grad_clip=1e-6)
    L.seed_everything(0, verbose=False)
    dm, system = datamodule_for(spec), system_for(spec)
    before = copy.deepcopy(system.model)
    with expected_warnings_ignored():
        trainer = build_trainer(spec, tmp_path_factory.mktemp("fit"), progress=False, callbacks=[],
                                logger=False, enable_checkpointing=False, max_steps=1, limit_val_batches=0,
                                num_sanity_val_steps=0)
        trainer.fit(system, datamodule=dm)
    x, y = dm.splits["train"].tensors  # the one batch: every training image (the loss is their mean)
    return spec, system, before, x, y


def test_train_step_is_the_step_a_cell_trains_with(fitted):
    spec, system, before, x, y = fitted
    assert system.trainer.global_step == 1
    model = copy.deepcopy(before)
    train_step(model, x, y, spec.train)()
    trained = system.model.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, trained[key], atol=2e-6, rtol=1e-5, msg=key)
    # and each piece matters: without the clipping, or with the default smoothing, the weights differ
    for other in (spec.train.model_copy(update={"grad_clip": None}),
                  spec.train.model_copy(update={"label_smoothing": TrainSpec().label_smoothing})):
        model = copy.deepcopy(before)
        train_step(model, x, y, other)()
        assert not torch.allclose(model.head.weight, trained["head.weight"], atol=1e-5)
