"""Partial channel connections (PC-DARTS, Xu et al., ICLR 2020).

An edge of width C mixes its candidate ops on 1/K of the channels only; the rest bypass the
ops (max-pooled 2x2 on a strided edge so the shapes agree), and a channel shuffle with K
groups interleaves the two parts so that the next cell's edges see other channels:

    x = [x_a, x_b],  x_a = x[:, :C/K],  x_b = x[:, C/K:]
    y = shuffle_K(concat(sum_o w_o * op_o(x_a),  x_b  or  maxpool_2x2(x_b)))
    shuffle_K(z)[:, i * K + g] = z[:, g * (C/K) + i]   (g < K groups of C/K channels)

Every candidate op is built at width C/K, so the edge costs about 1/K of a DARTS edge in
compute and activation memory. The node sum then weights each incoming edge by its edge-
normalisation weight (space.darts.supernet: softmax of the betas over the node's incoming edges).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from genotypes import FSSpec
from space.darts.mixed import MixedOp, NodeInput


class PartialMixedOp(MixedOp):
    """A MixedOp on 1/`k` of the channels (module docstring). Its candidate ops are a
    MixedOp's at width C // k (so state_dict keys stay ``_ops.K...``), plus ``mp``, the
    2x2 max pool of the bypassed channels on a strided edge."""

    def __init__(self, C: int, stride: int, k: int, fs: FSSpec | None = None) -> None:
        if C % k:
            raise ValueError(f"partial channels 1/{k} need a width divisible by {k}; "
                             f"got {C} channels")
        super().__init__(C // k, stride, fs)
        self.k = k
        self.mp = nn.MaxPool2d(2, 2)

    def _merge(self, y: Tensor, x: Tensor) -> Tensor:
        """ShuffleNet's channel shuffle of ``cat([y, rest])`` with k groups, written straight
        into one tensor: with
        n = C/k, output channel i*k is y's channel i and i*k + g (g >= 1) is rest's channel
        (g-1)*n + i, i.e. viewed as (B, n, k, H, W), slot 0 holds y and slots 1.. hold rest
        viewed as (B, k-1, n, H, W) with the first two dims swapped. One activation-sized
        tensor per edge instead of two (the concatenation and its shuffled copy)."""
        n = x.shape[1] // self.k
        rest = x[:, n:]
        if y.shape[2] != x.shape[2]:
            rest = self.mp(rest)
        b, _, h, w = y.shape
        fmt = (torch.channels_last if y.is_contiguous(memory_format=torch.channels_last)
               and not y.is_contiguous() else torch.contiguous_format)
        out = torch.empty(b, n * self.k, h, w, dtype=y.dtype, device=y.device, memory_format=fmt)
        slots = out.view(b, n, self.k, h, w)
        slots[:, :, 0].copy_(y)
        slots[:, :, 1:].copy_(rest.reshape(b, self.k - 1, n, h, w).transpose(1, 2))
        return out

    def forward(self, x: Tensor, weights: Tensor, index: int | None = None) -> Tensor:
        return self._merge(super().forward(x[:, : x.shape[1] // self.k], weights, index), x)

    def forward_shared(self, src: NodeInput, x: Tensor, weights: Tensor) -> Tensor:
        """The fused edge on `src`, the NodeInput of x's first C/k channels that every edge
        leaving x shares (one ReLU, one pooling per node instead of one per edge)."""
        return self._merge(self.accumulate(None, src, weights.unbind(0)), x)
