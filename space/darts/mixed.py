"""The DARTS mixed op: the softmax(alpha)-weighted sum of the 8 candidate ops on one edge.

`MixedOp.forward(x, weights)` is the plain sum ``sum(w * op(x))`` over all 8 ops, each op
called as a module, when the op's `fast` is off (space.layers.fused.set_fast), and otherwise the
fused fast path, `accumulate`, which computes the same sum: `none` is skipped (its term is
exactly zero; the softmax still runs over all 8 alphas, so alpha gradients are DARTS's); the
ReLU that starts every conv op is taken once per input node from a `NodeInput` shared by all
edges leaving that node; each conv op's alpha is folded into its last BatchNorm; and terms
are added in place into one node accumulator instead of building a tree of temporaries.
With `index` (GDAS's hard sample) only that op runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from genotypes import PRIMITIVES, FSSpec
from space.darts.ops import forward_reference, make_candidate
from space.layers.fused import batch_norm

# How each op may be fused (space.darts.ops: every op's `fused`).
_NONE, _POOL, _IDENTITY, _RELU_LED = "none", "pool", "identity", "relu_led"


class NodeInput:
    """A cell node's tensor plus what every edge leaving it can share: ReLU(x) (computed on
    first use) and, in training mode, the BN'd pooling outputs.

    Sharing the pooled outputs is exact: every edge's `BN(affine=False)(pool(x))` sees the same
    input, so in training mode (batch statistics) all edges compute the same tensor and make
    the same running-statistics update; the later edges copy the first edge's updated
    statistics instead of recomputing (their buffers are equal before the step, because they
    have always been updated with equal values).
    """

    __slots__ = ("x", "_relu", "share_pools", "pooled")

    def __init__(self, x: Tensor, relu: Tensor | None = None, share_pools: bool = True) -> None:
        self.x = x
        self._relu = relu
        self.share_pools = share_pools
        self.pooled: dict[int, tuple[Tensor, nn.BatchNorm2d]] = {}

    @property
    def relu(self) -> Tensor:
        if self._relu is None:
            self._relu = F.relu(self.x)
        return self._relu


def _copy_stats(src: nn.BatchNorm2d, dst: nn.BatchNorm2d) -> None:
    """Give `dst` the running statistics `src` just computed from the same batch."""
    with torch.no_grad():
        if dst.running_mean is not None and src.running_mean is not None:
            dst.running_mean.copy_(src.running_mean)
            dst.running_var.copy_(src.running_var)
        if dst.num_batches_tracked is not None and src.num_batches_tracked is not None:
            dst.num_batches_tracked.copy_(src.num_batches_tracked)


class MixedOp(nn.Module):
    """One DARTS edge: the 8 PRIMITIVES (pools followed by BN(affine=False), as in DARTS) in
    `_ops`, in PRIMITIVES order, so state_dict keys are DARTS's (``_ops.K...``)."""

    fast = True  # the fused sum; off: each op called as a module (space.layers.fused.set_fast)

    def __init__(self, C: int, stride: int, fs: FSSpec | None = None) -> None:
        super().__init__()
        self._ops = nn.ModuleList()
        kinds = []
        for primitive in PRIMITIVES:
            op = make_candidate(primitive, C, stride, fs)
            kind = getattr(op, "fused", None)
            if kind not in (_NONE, _POOL, _IDENTITY, _RELU_LED):
                # An op that declares no fusion: refuse it rather than sum it wrongly.
                raise ValueError(f"MixedOp: op {primitive!r} declares no known `fused` kind")
            kinds.append(kind)
            self._ops.append(op)
        # ReLU-led ops first, so the node accumulator usually starts as a fresh BN output
        # (no extra multiply to create it); skip_connect and pools are added into it.
        self._order = tuple(
            sorted((k for k, kind in enumerate(kinds) if kind != _NONE), key=lambda k: kinds[k] != _RELU_LED)
        )
        self._kinds = tuple(kinds)

    def forward(self, x: Tensor, weights: Tensor, index: int | None = None) -> Tensor:
        """sum_k weights[k] * op_k(x) over the 8 ops; with `index`, GDAS's one sampled op:
        `weights` is a hard one-hot sample with straight-through gradients, only op `index`
        runs, and every other weight is added as a constant (its value is 0, its gradient
        that of the whole output), as in GDAS."""
        if index is not None:
            out = weights[index] * self._ops[index](x)
            for k in range(len(self._ops)):
                if k != index:
                    out = out + weights[k]
            return out
        if not self.fast:
            return sum(w * op(x) for w, op in zip(weights, self._ops, strict=True))
        return self.accumulate(None, NodeInput(x, share_pools=False), weights.unbind(0))

    def forward_reference(self, x: Tensor, weights: Tensor) -> Tensor:
        """The reference DARTS evaluation: all 8 ops, `none` included, summed out of place."""
        return sum(w * forward_reference(op, x) for w, op in zip(weights, self._ops, strict=True))

    def accumulate(self, acc: Tensor | None, src: NodeInput, w: Sequence[Tensor]) -> Tensor:
        """Add this edge's weighted ops on `src` into `acc` (created when None); `w` holds the
        8 weights as scalar tensors. `acc` must be a tensor only this cell node owns."""
        for k in self._order:
            kind, op = self._kinds[k], self._ops[k]
            if kind == _RELU_LED:
                y = op(src.x, relu=src.relu, scale=w[k])
                acc = y if acc is None else acc.add_(y)
                continue
            # y is shared (an input node, another edge's pool), so never accumulate into it.
            y = src.x if kind == _IDENTITY else self._pooled(k, src)
            acc = y * w[k] if acc is None else acc.addcmul_(y, w[k])
        assert acc is not None  # at least one non-none op exists
        return acc

    def _pooled(self, k: int, src: NodeInput) -> Tensor:
        pool, bn = self._ops[k]
        if not (self.training and src.share_pools):
            return batch_norm(bn, pool(src.x))
        hit = src.pooled.get(k)
        if hit is None:
            y = batch_norm(bn, pool(src.x))
            src.pooled[k] = (y, bn)
            return y
        y, first = hit
        _copy_stats(first, bn)
        return y
