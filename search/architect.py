"""The upper level of the DARTS bilevel problem: architecture steps on validation batches.

First order treats the weights as constants: grad_alpha = dL_val(w, alpha)/dalpha.

Second order (DARTS eq. 7-8) differentiates through one virtual SGD step of the weights,

    w' = w - xi * (dL_train(w, alpha)/dw + momentum * buf + wd * w)
    grad_alpha = dL_val(w', alpha)/dalpha
                 - xi * [dL_train(w+, alpha)/dalpha - dL_train(w-, alpha)/dalpha] / (2 * eps)
    w± = w ± eps * dL_val/dw',  eps = fd_eps / ||dL_val/dw'||

where xi is the current weight learning rate and buf the SGD momentum buffer. The virtual
weights are plain tensors fed to the network with `torch.func.functional_call`: nothing is
deep-copied and the live weights, their gradients and the BatchNorm statistics are never
touched (BatchNorm statistics are cloned per call, so the extra forwards do not move them).

With FS layers' default mean-gradient rule (`grad_reduce="mean"`, a straight-through
preconditioner P: autograd returns P*grad), w' uses P*grad as SGD does, and the finite
difference gives the true derivative of this unrolled objective, because it perturbs the
weights in the forward pass. Double backprop through the unrolled step would apply P twice
(tests/test_architect.py checks both facts).

An optional `regularizer` (search/penalty.py: the budget and beta-DARTS terms) is a function
of the architecture parameters alone; its gradient is added to grad_alpha as is.

The step runs in fp32 (outside autocast) on every device, with TF32 off on CUDA
(common.runtime.full_fp32): the finite difference divides by a small eps, and a perturbation
of about 1e-6 of a weight is below both half precision's and TF32's rounding step.

Per step, the work over the ~2,000 weight tensors and ~2,800 BatchNorm statistics is a few
`torch._foreach_*` calls (the virtual step, the norm, the perturbation, the copy of the
statistics), not a Python loop of small kernels (each a launch on CUDA); on CPU the
arithmetic, and so every figure, is the same as the per-tensor loop's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from common.distributed import average_gradients
from common.runtime import full_fp32

Loss = Callable[[Tensor, Tensor], Tensor]


class Architect:
    """Adam on the architecture parameters (`upper`: alphas, and DFS offset logits when they
    belong to the upper level), stepped on validation batches.

    `lower` are the parameters the weight optimizer `w_optimizer` (SGD) trains; its momentum
    buffers and weight decay enter the second-order virtual step exactly as in DARTS.
    With `distributed=True` the architecture gradients are averaged over ranks before the
    Adam step, so every rank keeps identical alphas.
    """

    def __init__(
        self,
        model: nn.Module,
        upper: Sequence[nn.Parameter],
        lower: Sequence[nn.Parameter],
        w_optimizer: torch.optim.Optimizer,
        *,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        order: str = "first",
        fd_eps: float = 0.01,
        criterion: Loss = F.cross_entropy,
        distributed: bool = False,
        regularizer: Callable[[], Tensor | None] | None = None,
        lr_of: dict[int, float] | None = None,
        groups: Sequence[tuple[Sequence[nn.Parameter], float, float]] = (),
    ) -> None:
        if order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {order!r}")
        self.model, self.order, self.fd_eps = model, order, float(fd_eps)
        self.criterion, self.distributed = criterion, distributed
        self.regularizer = regularizer
        self.w_optimizer = w_optimizer
        names = {id(p): n for n, p in model.named_parameters()}
        missing = [p for p in [*upper, *lower] if id(p) not in names]
        if missing:
            raise ValueError("every upper/lower parameter must be a parameter of the model")
        self.upper, self.lower = list(upper), list(lower)
        self.upper_names = [names[id(p)] for p in self.upper]
        self.lower_names = [names[id(p)] for p in self.lower]
        self._stats: list[tuple[str, nn.Module, str]] | None = None
        # lr_of: a learning rate of its own for some upper parameters (by id), e.g. the
        # ratio logits; each gets its own Adam parameter group.
        # `groups`: (parameters, lr, weight decay) of a group of upper parameters, e.g. the DFS
        # offset logits at a scaled rate without decay.
        lr_of = lr_of or {}
        grouped = {id(p) for params, _, _ in groups for p in params}
        param_groups = [{"params": [p for p in self.upper if id(p) not in lr_of and id(p) not in grouped]}]
        param_groups += [{"params": [p], "lr": lr_of[id(p)]} for p in self.upper if id(p) in lr_of]
        param_groups += [{"params": list(params), "lr": g_lr, "weight_decay": g_wd}
                         for params, g_lr, g_wd in groups]
        self.optimizer = torch.optim.Adam(
            [g for g in param_groups if g["params"]], lr=lr, betas=tuple(betas),
            weight_decay=weight_decay,
        )

    # -- helpers -------------------------------------------------------------------------

    def _loss(self, lower: Sequence[Tensor], upper: Sequence[Tensor], x: Tensor, y: Tensor) -> Tensor:
        """The loss of the network with the given parameter tensors (functional, no mutation)."""
        tensors = dict(zip(self.lower_names, lower, strict=True))
        tensors.update(zip(self.upper_names, upper, strict=True))
        # Cloned running statistics: BatchNorm updates them in place, and the architecture
        # step's extra forwards must leave the live ones alone. Only those: other buffers
        # (e.g. FS offsets) are read-only, and swapping them would make FS layers rebuild
        # their gather index on every call.
        tensors.update(self._stat_snapshot())
        return self.criterion(functional_call(self.model, tensors, (x,)), y)

    def _stat_snapshot(self) -> dict[str, Tensor]:
        """A copy of every BatchNorm statistic, made by one foreach copy per dtype (on CUDA a
        few kernels, not one per buffer). Separate tensors, not views of one flat buffer:
        views share a version counter, so a statistic that BatchNorm updates in place would
        invalidate another one saved for the backward pass."""
        stats = self._stat_buffers()
        by_dtype: dict[torch.dtype, list[tuple[str, Tensor]]] = {}
        for name, b in stats:
            by_dtype.setdefault(b.dtype, []).append((name, b))
        out: dict[str, Tensor] = {}
        for items in by_dtype.values():
            copies = [torch.empty_like(b) for _, b in items]
            torch._foreach_copy_(copies, [b for _, b in items])
            out.update((name, c) for (name, _), c in zip(items, copies, strict=True))
        return out

    def _stat_buffers(self) -> list[tuple[str, Tensor]]:
        # Modules and names are cached; the tensors are looked up per call, so the model may
        # be moved or reloaded after the architect was made.
        if self._stats is None:
            self._stats = [
                (f"{m}.{n}" if m else n, mod, n)
                for m, mod in self.model.named_modules()
                if isinstance(mod, nn.modules.batchnorm._BatchNorm)
                for n, _ in mod.named_buffers(recurse=False)
            ]
        return [(name, getattr(mod, n)) for name, mod, n in self._stats]

    @staticmethod
    def _grads(loss: Tensor, inputs: Sequence[Tensor]) -> list[Tensor]:
        # materialize_grads: a parameter the loss does not reach gets zeros, not None.
        return list(torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True))

    def _sgd_terms(self) -> list[tuple[Tensor | None, float, float]]:
        """(momentum buffer, momentum, weight decay) of each lower parameter, from SGD."""
        group_of = {id(p): g for g in self.w_optimizer.param_groups for p in g["params"]}
        out = []
        for p in self.lower:
            g = group_of.get(id(p), {})
            buf = self.w_optimizer.state.get(p, {}).get("momentum_buffer")
            out.append((buf, float(g.get("momentum", 0.0)), float(g.get("weight_decay", 0.0))))
        return out

    def unrolled_weights(self, x: Tensor, y: Tensor, xi: float) -> list[Tensor]:
        """w' = w - xi * (dL_train/dw + momentum * buf + wd * w): one virtual SGD step."""
        w = [p.detach() for p in self.lower]
        grads = self._grads(self._loss(self.lower, self.upper, x, y), self.lower)
        if not w:
            return []
        terms = self._sgd_terms()
        # The same three roundings per element as (g + wd*p) + mom*buf, then p - xi*step,
        # grouped by (weight decay, momentum) so that each is one foreach call per group.
        step = list(grads)
        groups: dict[tuple[float, float, bool], list[int]] = {}
        for i, (buf, mom, wd) in enumerate(terms):
            groups.setdefault((wd, mom, buf is not None), []).append(i)
        for (wd, mom, has_buf), idx in groups.items():
            part = torch._foreach_add([step[i] for i in idx],
                                      torch._foreach_mul([w[i] for i in idx], wd))
            if has_buf:
                part = torch._foreach_add(part, torch._foreach_mul([terms[i][0] for i in idx], mom))
            for i, t in zip(idx, part, strict=True):
                step[i] = t
        out = torch._foreach_sub(w, torch._foreach_mul(step, xi))
        return [t.requires_grad_(True) for t in out]

    # -- gradients -----------------------------------------------------------------------

    def gradient(
        self, x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor, xi: float
    ) -> tuple[list[Tensor], Tensor]:
        """(architecture gradient per upper parameter, validation loss); changes nothing."""
        if self.order == "first":
            w = [p.detach() for p in self.lower]
            loss = self._loss(w, self.upper, x_val, y_val)
            return self._grads(loss, self.upper), loss.detach()
        w_prime = self.unrolled_weights(x_train, y_train, xi)
        loss = self._loss(w_prime, self.upper, x_val, y_val)
        grads = self._grads(loss, [*self.upper, *w_prime])
        d_alpha, d_w = grads[: len(self.upper)], grads[len(self.upper) :]
        hvp = self.hessian_vector_product(d_w, x_train, y_train)
        return [da - xi * h for da, h in zip(d_alpha, hvp, strict=True)], loss.detach()

    def hessian_vector_product(self, v: Sequence[Tensor], x: Tensor, y: Tensor) -> list[Tensor]:
        """d/dalpha of (dL_train/dw . v), by central differences at w ± eps*v, eps = fd_eps/||v||."""
        # ||v|| in float64 from the per-tensor norms, read once (eps is a Python number, as
        # the step size of the finite difference): the step's one wait for the device.
        norms = (torch.stack(torch._foreach_norm(list(v), 2, dtype=torch.float64)) if v
                 else torch.zeros(1, dtype=torch.float64))
        norm = float(torch.sqrt((norms * norms).sum()))
        if not math.isfinite(norm) or norm == 0.0:
            return [torch.zeros_like(p) for p in self.upper]
        eps = self.fd_eps / norm
        w = [p.detach() for p in self.lower]
        step = torch._foreach_mul(list(v), eps)
        w_plus = torch._foreach_add(w, step)
        w_minus = torch._foreach_sub(w, step)
        g_plus = self._grads(self._loss(w_plus, self.upper, x, y), self.upper)
        g_minus = self._grads(self._loss(w_minus, self.upper, x, y), self.upper)
        # Divided by 2*eps: a central difference (peers shipped "* eps" here, which is wrong).
        return [(gp - gm) / (2.0 * eps) for gp, gm in zip(g_plus, g_minus, strict=True)]

    def step(self, x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor, xi: float) -> Tensor:
        """One Adam step of the architecture; returns the (detached) validation loss, on the
        device (reading it is the caller's choice: each read waits for the GPU)."""
        with full_fp32():
            grads, loss = self.gradient(x_train, y_train, x_val, y_val, xi)
        reg = self.regularizer() if self.regularizer is not None else None
        if reg is not None:
            grads = [g + r for g, r in zip(grads, self._grads(reg, self.upper), strict=True)]
        for p, g in zip(self.upper, grads, strict=True):
            p.grad = g.detach()
        if self.distributed:
            average_gradients(self.upper)
        self.optimizer.step()
        for p in self.upper:
            p.grad = None  # never leave upper-level gradients for the weight step to see
        return loss

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "order": self.order}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
