"""The building blocks of the ops' fast forwards (space/darts/ops.py): batch norm with the search's
architecture weight folded into its affine transform, a conv applied through
space/layers/cpu_kernels.py's rewrites, and the switch between an op's fast and plain forward.

A fast forward computes several layers in one pass without calling them as modules, so
module hooks on those layers do not fire there. `set_fast(model, False)` (or the context
`fast_mode(model, False)`) switches every op, mixed op and cell of `model` to its plain
forward, which calls each layer as a module, exactly as the DARTS code does: hooks then work
by ordinary `Module.__call__`. The two forwards compute the same function (tested).

    batch_norm(bn, x, scale) = scale * bn(x)          (one pass; running statistics as bn's)
    apply_conv(m, x)         = m(x)                   (1x1 stride 1: a matrix product on CPU)

A batch norm marked by `exact_batch_stats` (the search supernet marks all of its own) takes
its training-mode statistics in two accurate float32 passes on CPU (space/layers/cpu_kernels.py):
the architecture gradients need them, weight training does not, so retrain's networks keep
ATen's. The mark is read by this fast path only; a layer called as a module is ATen's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from space.layers.cpu_kernels import batch_norm_train, conv1x1

EXACT = "exact_batch_stats"  # the attribute exact_batch_stats sets on a BatchNorm2d


def batch_norm(bn: nn.BatchNorm2d, x: Tensor, scale: Tensor | None = None) -> Tensor:
    """``bn(x) * scale`` in one pass: `scale` (a scalar tensor, or None for plain ``bn(x)``)
    becomes, or multiplies, the BN's affine weight. Running statistics are updated exactly as
    ``bn(x)`` would; training mode takes space/layers/cpu_kernels.py's batch norm, with exact
    statistics where `exact_batch_stats` marked `bn`."""
    # Mirrors nn.BatchNorm2d.forward (momentum, num_batches_tracked, eval with/without stats).
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    track = not bn.training or bn.track_running_stats
    if scale is None:
        weight, bias = bn.weight, bn.bias
    else:
        # repeat, not expand: a stride-0 weight sends CPU batch norm down a path several times
        # slower in channels_last.
        weight = scale.repeat(bn.num_features) if bn.weight is None else bn.weight * scale
        bias = None if bn.bias is None else bn.bias * scale
    mean, var = (bn.running_mean, bn.running_var) if track else (None, None)
    if use_batch:
        return batch_norm_train(x, mean, var, weight, bias, momentum, bn.eps,
                                bn.__dict__.get(EXACT, False))  # no __getattr__ miss
    return F.batch_norm(x, mean, var, weight, bias, False, momentum, bn.eps)


def exact_batch_stats(model: nn.Module, on: bool = True) -> nn.Module:
    """Mark (or with ``on=False`` unmark) every BatchNorm2d in `model`, as it is now, for
    exact batch statistics in `batch_norm`; returns `model`. A plain attribute: kept by
    deepcopy, not in a state_dict."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            setattr(m, EXACT, on)
    return model


def _switchable(m: nn.Module) -> bool:
    """A module with a fast forward declares a class attribute `fast` (a bool)."""
    return isinstance(getattr(type(m), "fast", None), bool)


def set_fast(model: nn.Module, on: bool = True) -> nn.Module:
    """Switch every module of `model` that has a fast forward to it (`on`) or to its plain
    forward (module docstring); returns `model`."""
    for m in model.modules():
        if _switchable(m):
            m.fast = bool(on)
    return model


@contextmanager
def fast_mode(model: nn.Module, on: bool) -> Iterator[nn.Module]:
    """`set_fast(model, on)` inside the block; each module's own setting comes back after."""
    before = [(m, m.fast) for m in model.modules() if _switchable(m)]
    set_fast(model, on)
    try:
        yield model
    finally:
        for m, was in before:
            m.fast = was


def scaled(y: Tensor, scale: Tensor | None) -> Tensor:
    return y if scale is None else y * scale


def relu_in(x: Tensor, relu: Tensor | None) -> Tensor:
    """ReLU(x): `relu` when the caller computed it once for several ops (it must be F.relu(x))."""
    return F.relu(x) if relu is None else relu


def conv_weight(conv: nn.Module) -> Tensor:
    """The weight tensor of a plain conv or of an FS/DFS layer (built from its FS vector)."""
    filters = getattr(conv, "filters", None)
    return filters() if filters is not None else conv.weight


def apply_conv(m: nn.Module, x: Tensor) -> Tensor:
    """`m(x)` for a plain or FS/DFS conv; a 1x1, stride-1, ungrouped one as a matrix product
    (space/layers/cpu_kernels.py)."""
    if (tuple(m.kernel_size) == (1, 1) and tuple(m.stride) == (1, 1) and m.groups == 1
            and m.padding in (0, (0, 0))):
        return conv1x1(x, conv_weight(m), m.bias)
    return m(x)


def pointwise_subsampled(conv: nn.Module, x: Tensor) -> Tensor:
    """`conv` (a stride-2 1x1 conv, plain or FS) applied to already subsampled pixels."""
    return conv1x1(x, conv_weight(conv), conv.bias)
