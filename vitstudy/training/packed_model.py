"""K models of one shape as one vectorised model: their parameters stacked along a leading member axis in
one flat tensor, a forward that `torch.func.vmap`s the shared module over that axis, and AdamW over the
flat tensor with each member's own learning rate, weight decay, betas and gradient clipping.

Layout: parameter i of the model (n_i values, shape s_i) is the block flat[o_i : o_i + K·n_i], viewed as
(K, *s_i): contiguous per member, so the vmapped matmuls are batched matmuls over contiguous weights.
Autograd accumulates every member's gradient into `flat.grad`, so one optimizer step is ~15 element-wise
ops on one tensor, whatever the number of parameters and members (torch's fused AdamW over K separate
models costs K launches per op and cannot take one lr per member).

The update is torch's AdamW (the fused CPU/CUDA kernel's arithmetic, in its order), with weight decay on
weight matrices only (vitstudy.training.step.NO_WEIGHT_DECAY), and `clip_grad_norm_`'s rule per member:
a member's gradient is scaled by min(1, clip / (‖g‖ + 1e-6)), ‖g‖ over that member's parameters only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from vitstudy.models.mixers.attention import Attention
from vitstudy.training.step import NO_WEIGHT_DECAY


class PackedModel:
    """`models` (same architecture) packed; `template` runs the forward with each member's parameters.
    Buffers must be equal across members (position indices, masks): they are shared, not stacked."""

    def __init__(self, models: list[nn.Module], device: torch.device):
        self.template = models[0].to(device)
        for module in self.template.modules():
            if isinstance(module, Attention) and module.path == "auto" and device.type == "cpu":
                # vmap has no batching rule for the CPU's fused attention kernel: it would loop over the
                # members one by one (the explicit path computes the same softmax attention)
                module.path = "explicit"
        self.k = len(models)
        named = [dict(m.named_parameters()) for m in models]
        self.names = list(named[0])
        self.shapes = [named[0][n].shape for n in self.names]
        self.sizes = [self.k * named[0][n].numel() for n in self.names]
        with torch.no_grad():
            blocks = [torch.stack([p[n].detach().to(device) for p in named]).reshape(-1) for n in self.names]
            self.flat = torch.cat(blocks).requires_grad_()  # (P,) every member's every parameter
        self.buffers = dict(self.template.named_buffers())
        for other in models[1:]:
            for name, b in other.named_buffers():
                if not torch.equal(b.to(device), self.buffers[name]):
                    raise ValueError(f"buffer {name} differs between members: they cannot share it")
        # member index and weight-decay flag of every element of `flat`
        member = torch.arange(self.k, device=device)
        self.member_of = torch.cat([member.repeat_interleave(size // self.k) for size in self.sizes])
        parameters = zip(self.names, self.shapes, self.sizes, strict=True)
        self.decays = torch.cat([torch.full((size,), _decays(name, shape), device=device)
                                 for name, shape, size in parameters])
        self._forward = vmap(self._one, in_dims=(0, 0), randomness="different")
        self._forward_shared = vmap(self._one, in_dims=(0, None), randomness="different")

    # -- parameters ----------------------------------------------------------------------------------
    def params(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """{name: (K, *shape)} views of `flat` (default: the live parameters)."""
        flat = self.flat if flat is None else flat
        blocks = zip(self.names, flat.split(self.sizes), self.shapes, strict=True)
        return {n: t.view(self.k, *s) for n, t, s in blocks}

    def member_state(self, k: int, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Member k's parameters as a model state dict (copies, on the CPU)."""
        return {n: t[k].detach().cpu().clone() for n, t in self.params(flat).items()}

    def load_member(self, k: int, state: dict[str, torch.Tensor], flat: torch.Tensor | None = None) -> None:
        """Member k's parameters (or its slice of another flat tensor, e.g. an optimizer moment) from
        a {name: tensor} dict."""
        with torch.no_grad():
            for name, view in self.params(self.flat if flat is None else flat).items():
                view[k].copy_(state[name])

    # -- forward -------------------------------------------------------------------------------------
    def _one(self, params: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, self.buffers), (x,))

    def __call__(self, x: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
        """(K, B, C, H, W) member batches, or (B, C, H, W) one batch for all → (K, B, classes)."""
        forward = self._forward if x.dim() == 5 else self._forward_shared
        return forward(self.params(flat), x)

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)


class PackedAdamW:
    """AdamW over a PackedModel's flat parameters, one (lr, weight decay, betas, clip) per member. `lr`
    is given per step (the schedule lives with the caller); `frozen` members (diverged) do not move."""

    def __init__(self, model: PackedModel, weight_decay: list[float], betas: list[tuple[float, float]],
                 clip: list[float | None], eps: float = 1e-8):
        device, of, self.model, self.eps = model.flat.device, model.member_of, model, eps
        # per element of the flat tensor, computed once: the decay (0 for biases and norms)
        self.decay = torch.tensor(weight_decay, device=device)[of] * model.decays
        self.b1 = torch.tensor([b[0] for b in betas], dtype=torch.float64)  # (K,), for the bias corrections
        self.b2 = torch.tensor([b[1] for b in betas], dtype=torch.float64)
        # the moments' rates: one number when every member has the same betas (the common case), else
        # one per element
        shared = len(set(betas)) == 1
        self.rate1 = 1 - betas[0][0] if shared else (1 - self.b1.to(device, torch.float32))[of]
        self.keep2 = betas[0][1] if shared else self.b2.to(device, torch.float32)[of]
        self.clip = torch.tensor([c if c else float("inf") for c in clip], device=device)
        self.clips = bool(any(clip))
        self.exp_avg = torch.zeros_like(model.flat, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(model.flat, requires_grad=False)
        self.steps = 0
        self.alive = torch.ones(model.k, dtype=torch.bool, device=device)
        self.frozen = False

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with `lr` (K,) for each member."""
        m, flat, g = self.model, self.model.flat, self.model.flat.grad
        of = m.member_of
        if self.frozen:  # a frozen member's (possibly NaN) gradient is dropped, its lr is 0
            g = torch.where(self.alive[of], g, 0.0)
            lr = torch.where(self.alive, lr, 0.0)
        if self.clips:
            norm = torch.zeros(m.k, device=g.device).index_add_(0, of, g * g).sqrt_()
            g = g * (self.clip / (norm + 1e-6)).clamp_(max=1.0)[of]
        self.steps += 1
        flat.mul_(1 - lr[of] * self.decay)
        self.exp_avg.lerp_(g, self.rate1)
        if isinstance(self.keep2, float):
            self.exp_avg_sq.mul_(self.keep2).addcmul_(g, g, value=1 - self.keep2)
        else:
            self.exp_avg_sq.mul_(self.keep2).addcmul_(g, g * (1 - self.keep2))
        bc1 = (1 - self.b1 ** self.steps).to(lr.device, flat.dtype)  # (K,)
        bc2_sqrt = (1 - self.b2 ** self.steps).sqrt().to(lr.device, flat.dtype)
        denom = (self.exp_avg_sq.sqrt() / bc2_sqrt[of]).add_(self.eps)
        flat.addcdiv_(self.exp_avg * (-lr / bc1)[of], denom)

    def freeze(self, k: int) -> None:
        """Member k stops updating (it diverged); its parameters and moments are zeroed so that its
        non-finite values cannot reach a shared reduction."""
        self.alive[k] = False
        self.frozen = True
        with torch.no_grad():
            for t in (self.model.flat, self.exp_avg, self.exp_avg_sq):
                t[self.model.member_of == k] = 0.0


def _decays(name: str, shape: torch.Size) -> bool:
    """Whether AdamW decays this parameter (vitstudy.training.step.adamw's rule)."""
    return not (len(shape) <= 1 or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY)
