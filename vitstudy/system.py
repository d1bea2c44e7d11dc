"""The LightningModule: what one training run optimises and measures, separate from the model.

Cross-entropy with label smoothing; AdamW with weight decay on weight matrices only (not on biases,
norms, position embeddings or the class token, as in timm/DeiT); a per-step schedule of linear warm-up
then cosine decay to `min_lr`; top-1/top-5 accuracy (torchmetrics) logged in percent under
train/loss, val/loss, val/acc1, val/acc5, test/acc1, test/acc5, lr. A non-finite training loss stops
the run with `DivergedError`. Init arguments are primitives, so checkpoints reload with weights_only.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from vitstudy.models.build import build_model
from vitstudy.spec import ModelSpec

NO_WEIGHT_DECAY = ("cls_token", "pos_embed")  # besides biases and norm weights (ndim <= 1)


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """The lr multiplier at `step`: linear warm-up to 1, then cosine down to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ImageClassifier(L.LightningModule):
    def __init__(
        self,
        model: dict,
        lr: float = 1e-3,
        min_lr: float = 1e-5,
        weight_decay: float = 0.05,
        warmup_epochs: float = 0.0,
        label_smoothing: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.999),
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(ModelSpec(**model))
        k = self.model.num_classes
        self.topk = (1, 5) if k >= 5 else (1,)
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_acc{t}": MulticlassAccuracy(num_classes=k, top_k=t, average="micro")
            for stage in ("val", "test") for t in self.topk
        })
        self.register_buffer("nonfinite_steps", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y, label_smoothing=self.hparams.label_smoothing)
        self.nonfinite_steps += ~torch.isfinite(loss.detach())  # no host sync on the hot path
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % self.trainer.log_every_n_steps == 0:
            self._check_finite()
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)

    def on_train_epoch_end(self) -> None:
        self._check_finite()

    def _check_finite(self) -> None:
        if self.nonfinite_steps.item():
            raise DivergedError(f"non-finite training loss at epoch {self.current_epoch}, "
                                f"step {self.global_step}")

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=len(y))
        for t in self.topk:
            self.metrics[f"{stage}_acc{t}"].update(logits, y)

    def _eval_epoch_end(self, stage: str) -> None:
        for t in self.topk:
            metric = self.metrics[f"{stage}_acc{t}"]
            self.log(f"{stage}/acc{t}", 100.0 * metric.compute(), prog_bar=t == 1)
            metric.reset()

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                skip = p.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY
                (no_decay if skip else decay).append(p)
        # the fused kernel (CPU and CUDA) is ~5× faster than the per-tensor loop torch uses by default
        # on CPU: 0.24 vs 1.12 ms per step for the default grid's model
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr, betas=hp.betas,
                                fused=fused)
        total = self.trainer.estimated_stepping_batches
        warmup = round(hp.warmup_epochs * total / max(1, self.trainer.max_epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, total, warmup, hp.min_lr / hp.lr))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
