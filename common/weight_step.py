"""The weight step both pipelines take (the search's lower level, retrain's only one).

    zero the gradients -> forward and loss under autocast -> backward through the GradScaler
    -> drop the gradients of `frozen` parameters -> unscale, clip the global norm of
    `clipped` to `clip` -> read the loss, the correct count and the gradient norm
    -> step and update the scale, unless the step diverged

Divergence, without extra communication: a non-finite loss on one process of a DDP run
makes the averaged gradients non-finite on all of them, so each sees a non-finite loss
(the poisoned one) or gradient norm (the others) in the same step and stops there, before
stepping, with a one-line error (rather than the others stepping into NaN weights until
torchrun kills them when the poisoned process exits). With an fp16 GradScaler, non-finite
gradients are its business (it skips the step and lowers the scale), so only the loss
counts: there the other processes go on until torchrun stops them. The figures are read
together: one device sync per step, as before in both pipelines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from common.runtime import autocast


class WeightStep:
    """One optimizer step on a network's weights, with AMP on CUDA and gradient clipping."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 device: torch.device, amp: bool, clipped: Sequence[nn.Parameter],
                 clip: float | None, frozen: Sequence[nn.Parameter] = ()) -> None:
        self.optimizer, self.scaler, self.device, self.amp = optimizer, scaler, device, amp
        self.clipped, self.clip, self.frozen = list(clipped), clip, list(frozen)

    def __call__(self, loss_and_logits: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
                 x: Tensor, y: Tensor) -> tuple[float, float, str | None]:
        """Take the step on batch (x, y); return its loss, its correct top-1 count and None,
        or, when it diverged (and no step was taken), what went non-finite.
        `loss_and_logits(x, y)` runs the forward pass (under autocast here) and returns the
        loss and the logits."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            loss, logits = loss_and_logits(x, y)
        self.scaler.scale(loss).backward()
        for p in self.frozen:  # gradients the backward left on parameters stepped elsewhere
            p.grad = None
        if self.clip:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self.clipped, float(self.clip))
        elif not self.scaler.is_enabled():
            grads = [p.grad.detach() for p in self.clipped if p.grad is not None]
            norm = (torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                    if grads else loss.new_zeros(()))
        else:  # the GradScaler checks its gradients itself
            norm = loss.new_zeros(())
        correct = (logits.detach().argmax(1) == y).sum()
        loss_v, correct_v, norm_v = torch.stack(
            [loss.detach().float(), correct.float(), norm.float()]).tolist()
        if not math.isfinite(loss_v):
            return loss_v, correct_v, f"training loss is {loss_v}"
        if not math.isfinite(norm_v) and not self.scaler.is_enabled():
            return loss_v, correct_v, (f"the weight gradients' norm is {norm_v} (with several "
                                       "processes: another one's training loss)")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_v, correct_v, None
