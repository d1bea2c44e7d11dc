"""The LightningModule: what one training run optimises and measures, separate from the model.

Cross-entropy with label smoothing, or, with Mixup/CutMix (timm's, one λ per batch as in DeiT, drawn per
(seed, epoch, batch) so that every variant of a grid mixes alike), the cross-entropy against the mixed
soft targets; AdamW with weight decay on weight matrices only (the loss and the optimizer are
vitstudy.training.step's, which `vitstudy profile` and `vitstudy bench` time), its lr optionally scaled
by the global batch (DeiT: lr × batch / 512); a per-step schedule of linear warm-up,
cosine decay to `min_lr` and an optional cool-down at `min_lr`; an optional EMA of the weights (timm's
ModelEmaV3), evaluated next to the live weights under val/ema_* and test/ema_*. Top-1/top-5 accuracy
(torchmetrics) in percent under train/loss, val/loss, val/acc1, val/acc5, test/acc1, test/acc5, lr.

The hot path stays free of host synchronisation and of per-step logging: the training loss is summed
on the device and logged every `log_every_n_steps` steps and per epoch. A non-finite training loss stops
the run with `DivergedError` (checked at those points). Init arguments are primitives, so checkpoints
reload with weights_only; all are required, and `system_for` fills them from a RunSpec in one place.
"""

from __future__ import annotations

import inspect
import math

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from vitstudy.config.spec import ModelSpec, RunSpec
from vitstudy.data.augment import build_mixup
from vitstudy.models.build import build_model
from vitstudy.models.seeding import drawing_from
from vitstudy.training.step import adamw, cross_entropy


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """The lr multiplier at `step`: linear warm-up to 1, then cosine down to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ImageClassifier(L.LightningModule):
    """The system of one cell. Its arguments are the spec's model (as plain data), the per-process batch
    size, the run seed (the model's initial weights and the Mixup draws are keyed by it,
    vitstudy.models.seeding) and the TrainSpec fields of the same names, all required: `system_for` fills
    them from a RunSpec, so no training default lives here."""

    def __init__(self, *, model: dict, batch_size: int, seed: int, lr: float, min_lr: float,
                 weight_decay: float, warmup_epochs: float, label_smoothing: float,
                 betas: tuple[float, float], lr_base_batch: int | None, cooldown_epochs: int, mixup: float,
                 cutmix: float, mixup_prob: float, mixup_switch_prob: float, ema_decay: float | None,
                 compile: bool, grad_clip: float | None):
        super().__init__()
        self.save_hyperparameters()
        # one explicit optimizer step per batch: Lightning's automatic optimization wraps it in a
        # closure with six more hooks, ~0.2 ms per step (3% of the default grid's 7.4 ms step)
        self.automatic_optimization = False
        self.model = build_model(ModelSpec(**model), seed=seed)  # the variants of a grid start alike
        k = self.model.num_classes
        self.mixup = build_mixup(mixup, cutmix, mixup_prob, mixup_switch_prob, label_smoothing, k)
        self.ema = None
        if ema_decay is not None:  # a copy of the eager model: evaluated a few times per epoch only
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=ema_decay)
            self.ema.requires_grad_(False)
        if compile:
            self.model.compile()  # in place: parameter names (and checkpoints) stay those of the model
        self.topk = (1, 5) if k >= 5 else (1,)
        self.variants = ("", "ema_") if self.ema is not None else ("",)
        # accumulated over an epoch and logged once at its end (synced across DDP ranks): one
        # Lightning `self.log` per batch costs more than the metric's own update on a tiny model
        self.metrics = torch.nn.ModuleDict()
        for stage in ("val", "test"):
            for v in self.variants:
                # nan_strategy="disable": a diverged model's NaN loss is reported, not dropped
                self.metrics[f"{stage}_{v}loss"] = MeanMetric(nan_strategy="disable")
                for t in self.topk:  # validate_args=False: our own labels; the checks cost a host sync
                    self.metrics[f"{stage}_{v}acc{t}"] = MulticlassAccuracy(
                        num_classes=k, top_k=t, average="micro", validate_args=False)
        # on-device accumulators: the loop never waits for the device to report a loss
        for name in ("nonfinite_steps", "loss_steps"):
            self.register_buffer(name, torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("loss_sum", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_loss(self, batch, batch_idx: int) -> torch.Tensor:
        """The loss of training batch `batch_idx` of this epoch: label-smoothed cross-entropy, or with
        Mixup/CutMix the cross-entropy against the mixed soft targets, λ and boxes drawn from a stream
        keyed by (seed, epoch, batch, rank): the same for every variant and after a resume."""
        x, y = batch
        if self.mixup is None:
            return cross_entropy(self(x), y, self.hparams.label_smoothing)
        if len(y) % 2:  # timm mixes each image with its mirror in the batch: it needs an even batch
            x, y = x[:-1], y[:-1]
        with drawing_from(self.hparams.seed, "mixup", self.current_epoch, batch_idx, self.global_rank,
                          device=x.device):
            x, soft = self.mixup(x, y)
        return torch.sum(-soft * F.log_softmax(self(x), dim=-1), dim=-1).mean()

    def training_step(self, batch, batch_idx):
        loss = self.training_loss(batch, batch_idx)
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)  # through the precision plugin (loss scaling) and the strategy (DDP)
        if self.hparams.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        self.lr_schedulers().step()
        detached = loss.detach()
        self.nonfinite_steps.add_(~torch.isfinite(detached))  # in place: `+=` would re-register the buffer
        self.loss_sum.add_(detached)
        self.loss_steps.add_(1)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update(self.model)  # DeiT: the same decay from the first step (no warm-up)
        if (batch_idx + 1) % self.trainer.log_every_n_steps == 0:
            self._check_finite()
            self.log("train/loss_step", outputs["loss"].detach(), on_step=True, on_epoch=False, prog_bar=True)
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)

    def on_train_epoch_end(self) -> None:
        self._check_finite()
        if self.loss_steps.item():
            self.log("train/loss", self.loss_sum / self.loss_steps, on_epoch=True)
        self.loss_sum.zero_()
        self.loss_steps.zero_()

    def _check_finite(self) -> None:
        if self.nonfinite_steps.item():
            raise DivergedError(f"non-finite training loss at epoch {self.current_epoch}, "
                                f"step {self.global_step}")

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch
        for v in self.variants:
            logits = self(x) if not v else self.ema.module(x)
            # per image: MeanMetric.update(batch mean, weight=len(y)) averaged the batch means unweighted,
            # which over-weighted a short last batch
            self.metrics[f"{stage}_{v}loss"].update(F.cross_entropy(logits, y, reduction="none"))
            for t in self.topk:
                self.metrics[f"{stage}_{v}acc{t}"].update(logits, y)

    def _eval_epoch_end(self, stage: str) -> None:
        for key, metric in self.metrics.items():
            if key.startswith(f"{stage}_"):
                name = key.removeprefix(f"{stage}_")
                value = metric.compute() * (1.0 if name.endswith("loss") else 100.0)  # accuracy in percent
                self.log(f"{stage}/{name}", value, prog_bar=name == "acc1")
                metric.reset()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def peak_lr(self) -> float:
        """The lr after scaling by the global batch (`lr × batch × processes / lr_base_batch`)."""
        hp = self.hparams
        if hp.lr_base_batch is None:
            return hp.lr
        world = self.trainer.world_size if self._trainer is not None else 1
        return hp.lr * hp.batch_size * world / hp.lr_base_batch

    def optimizer_and_schedule(self, total_steps: int, epochs: int):
        """AdamW over the model's parameters (decay on weight matrices only) and its per-step lr
        schedule for a run of `total_steps` optimizer steps over `epochs` epochs."""
        hp = self.hparams
        opt = adamw(self.model, lr=self.peak_lr(), weight_decay=hp.weight_decay, betas=hp.betas)
        per_epoch = total_steps / max(1, epochs)
        warmup, cooldown = round(hp.warmup_epochs * per_epoch), round(hp.cooldown_epochs * per_epoch)
        min_ratio = min(1.0, hp.min_lr / self.peak_lr())
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, total_steps - cooldown, warmup, min_ratio))
        return opt, sched

    def configure_optimizers(self):
        trainer = self.trainer
        opt, sched = self.optimizer_and_schedule(trainer.estimated_stepping_batches, trainer.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# the system's arguments that are not TrainSpec fields: given by `system_for` from the rest of the spec
NOT_FROM_TRAIN = ("model", "batch_size", "seed")


def system_arguments(spec: RunSpec) -> dict:
    """The arguments of a RunSpec's LightningModule (also a packed run's hyper-parameters): its model, its
    per-process batch size, its seed, and every other from the TrainSpec field of the same name."""
    names = [n for n in inspect.signature(ImageClassifier).parameters if n not in NOT_FROM_TRAIN]
    return dict(model=spec.model.model_dump(mode="json"), batch_size=spec.data.batch_size, seed=spec.seed,
                **{name: getattr(spec.train, name) for name in names})


def system_for(spec: RunSpec) -> ImageClassifier:
    """The LightningModule of a RunSpec (the data side: vitstudy.data.base.datamodule_for)."""
    return ImageClassifier(**system_arguments(spec))
