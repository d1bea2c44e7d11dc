"""What a pack (vitstudy.training.pack) feeds and measures, per member: the training batches (each
member's own order, augmentation and Mixup draws, keyed as the DataModule and the LightningModule key
them), the lr schedule of every step, and the validation and test metrics of all members at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitstudy.config.spec import RunSpec
from vitstudy.data.augment import BatchAugment, build_mixup
from vitstudy.data.base import augment_seed, epoch_sampler
from vitstudy.models.seeding import drawing_from
from vitstudy.training.packed_model import PackedModel
from vitstudy.training.system import warmup_cosine


class MemberBatches:
    """Each member's training batches: its own order (epoch_sampler with its seed), its augmentation draws
    (keyed as the DataModule keys them), its targets (label-smoothed one-hot, or Mixup/CutMix's soft ones
    drawn from the member's stream): (K, B, C, H, W) images and (K, B, classes) targets."""

    def __init__(self, specs: list[RunSpec], train: tuple[torch.Tensor, torch.Tensor], device: torch.device):
        self.specs, (self.x, self.y), self.device = specs, train, device
        self.classes = specs[0].model.num_classes
        self.augment = [BatchAugment(shift=s.data.shift, erasing=s.train.random_erasing) for s in specs]
        self.mixup = [build_mixup(s.train.mixup, s.train.cutmix, s.train.mixup_prob,
                                  s.train.mixup_switch_prob, s.train.label_smoothing, self.classes)
                      for s in specs]
        self.smoothing = torch.tensor([s.train.label_smoothing for s in specs], device=device)[:, None, None]

    def epoch(self, epoch: int, batches: int):
        orders = []
        for s in self.specs:
            sampler = epoch_sampler(len(self.y), True, s.seed, repeated_aug=s.train.repeated_aug)
            sampler.set_epoch(epoch)
            orders.append(torch.tensor(list(sampler), dtype=torch.long, device=self.device))
        order = torch.stack(orders)  # (K, N)
        size = self.specs[0].data.batch_size
        for b in range(batches):
            idx = order[:, b * size:(b + 1) * size]
            x, y = self.x[idx], self.y[idx]  # (K, B, ...), (K, B)
            if any(self.augment):
                x = torch.stack([a(x[k], augment_seed(s.seed, epoch, b)) if a else x[k]
                                 for k, (a, s) in enumerate(zip(self.augment, self.specs, strict=True))])
            if self.mixup[0] is not None:
                yield self._mixed(x, y, epoch, b)
            else:
                onehot = F.one_hot(y, self.classes).float()
                yield x, onehot * (1 - self.smoothing) + self.smoothing / self.classes

    def _mixed(self, x, y, epoch, b):
        if y.shape[1] % 2:  # timm mixes each image with its mirror in the batch (as the LightningModule)
            x, y = x[:, :-1], y[:, :-1]
        xs, targets = [], []
        for k, (mix, s) in enumerate(zip(self.mixup, self.specs, strict=True)):
            with drawing_from(s.seed, "mixup", epoch, b, 0, device=x.device):
                xk, soft = mix(x[k].clone(), y[k])
            xs.append(xk)
            targets.append(soft)
        return torch.stack(xs), torch.stack(targets)


def peak_lr(spec: RunSpec) -> float:
    """A member's lr after scaling by its batch (one process: ImageClassifier.peak_lr's rule)."""
    t = spec.train
    return t.lr * spec.data.batch_size / t.lr_base_batch if t.lr_base_batch else t.lr


def schedule(specs: list[RunSpec], per_epoch: int, epochs: int) -> torch.Tensor:
    """(steps + 1, K): each member's lr at every optimizer step (ImageClassifier.optimizer_and_schedule:
    peak lr scaled by the batch, linear warm-up, cosine to min_lr, cool-down)."""
    total = per_epoch * epochs
    columns = []
    for s in specs:
        t = s.train
        peak = peak_lr(s)
        warmup, cooldown = round(t.warmup_epochs * per_epoch), round(t.cooldown_epochs * per_epoch)
        ratio = min(1.0, t.min_lr / peak)
        columns.append([peak * warmup_cosine(i, total - cooldown, warmup, ratio) for i in range(total + 1)])
    return torch.tensor(columns, dtype=torch.float32).T


@torch.no_grad()
def evaluate(net: PackedModel, split, batch: int, autocast, stage: str = "val",
              flat: torch.Tensor | None = None) -> dict[str, list[float]]:
    """{"<stage>/loss", "<stage>/acc1", "<stage>/acc5": one value per member} over a split, in order."""
    x_all, y_all = split
    was = net.template.training
    net.train(False)
    topk = (1, 5) if net.template.num_classes >= 5 else (1,)
    loss, correct = torch.zeros(net.k, device=x_all.device), {t: torch.zeros(net.k, device=x_all.device)
                                                               for t in topk}
    for start in range(0, len(y_all), batch):
        x, y = x_all[start:start + batch], y_all[start:start + batch]
        with autocast():
            logits = net(x, flat).float()  # (K, B, classes)
        per_image = F.cross_entropy(logits.flatten(0, 1), y.repeat(net.k), reduction="none")
        loss += per_image.view(net.k, -1).sum(1)
        top = logits.topk(max(topk), dim=-1).indices  # (K, B, 5)
        for t in topk:
            correct[t] += (top[..., :t] == y[None, :, None]).any(-1).sum(1)
    net.train(was)
    n = len(y_all)
    out = {f"{stage}/loss": (loss / n).tolist()}
    out.update({f"{stage}/acc{t}": (correct[t] * 100.0 / n).tolist() for t in topk})
    return out
