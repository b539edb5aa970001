"""3D Filter Summary convolution (the first FSNet version): filters are overlapping 3D blocks
of one learned 3D tensor.

A layer with K filters of C x S1 x S2 (C = in_channels/groups, S1 x S2 the kernel) keeps one
FS tensor of H x W x Cs with H = K1 x, W = K2 y and K = K1 K2 K3. Filter (k1, k2, k3) is the
block

    FS[(k1 x + i) mod H, (k2 y + j) mod W, (c3(k3) + c) mod Cs],   i < S1, j < S2, c < C,

with c3(k3) = floor(k3 Cs / K3) (= k3 z when the channel stride z = Cs/K3 is an integer).
The paper's layers take Cs = C (so K3 z = C) and x = y = 2; then the ratio is

    K n / L = (K1 K2 K3 S1 S2 C) / (K1 x K2 y C) = S1 S2 K3 / (x y),

e.g. 64 filters of 64 x 3 x 3 from an 8 x 8 x 64 FS (K1 = K2 = 4, K3 = 4, z = 16): ratio 9.
A 1x1 layer takes K1 = K2 = 1 and K3 = K with Cs > C: its filters are channel windows at
stride z = Cs/K, a 1D FS of the channel vector.

**Wrapping.** Along the channels the block wraps circularly: that is the paper's "copy of the
FS appended along the channel dimension". Spatially it wraps too (indices mod H and mod W):
with x = 2 and S1 = 3 the last row of blocks reads one row past H, and wrapping keeps every
filter a full S1 x S2 block while the FS stays exactly K1 x by K2 y, so the parameter count
(and the ratio above) does not depend on the kernel overhang. Padding the FS by S1 - x rows
instead would add (S1 - x) W Cs parameters that only the last row of filters reads.

The FS is stored flattened, row-major (h, w, c), as the `fs` vector of the 1D layer; the
layer is an FSConv2d whose gather index is the 3D block geometry, so everything written for
FS layers (the paper's mean gradient, the eval cache, the filter bank, WQ, export,
accounting) applies unchanged. The 1D layer's `offsets` buffer is kept but not read.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from space.layers.fs import FSConv2d, _FSConvBase

__all__ = ["FS3dConv2d", "block_grid"]


def block_grid(blocks: int) -> tuple[int, int]:
    """(K1, K2) with K1 K2 = blocks, as square as it divides (K1 <= K2)."""
    k1 = max(d for d in range(1, math.isqrt(blocks) + 1) if blocks % d == 0)
    return k1, blocks // k1


class FS3dConv2d(FSConv2d):
    """A conv whose K filters are 3D blocks of one H x W x Cs Filter Summary (see the module
    docstring). `k3` filters share each spatial block position (K3; it must divide K);
    `spatial_stride` is (x, y); `channel_size` is Cs (default: the filter's C)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, k3: int = 1,
                 spatial_stride=2, channel_size: int | None = None,
                 grad_reduce: str = "mean") -> None:
        kh, kw = _pair(kernel_size)
        K, C = out_channels, in_channels // max(groups, 1)
        name = f"FS3dConv2d({in_channels}, {out_channels}, kernel_size={(kh, kw)})"
        if k3 < 1 or K % k3:
            raise ValueError(f"{name}: K3={k3} does not divide the filter count K={K}; "
                             "give a K3 that divides it")
        x, y = _pair(spatial_stride)
        k1, k2 = block_grid(K // k3)
        H, W = k1 * x, k2 * y
        Cs = C if channel_size is None else int(channel_size)
        if Cs < C:
            raise ValueError(f"{name}: channel_size={Cs} is below the filter's {C} channels; "
                             f"use channel_size >= {C}")
        self.k1, self.k2, self.k3 = k1, k2, int(k3)
        self.spatial_stride, self.fs_shape = (x, y), (H, W, Cs)
        _FSConvBase.__init__(self, in_channels, out_channels, (kh, kw), stride, padding,
                             dilation, groups, bias, grad_reduce=grad_reduce, length=H * W * Cs)
        self._rebuild_index()

    def _index_tensor(self) -> Tensor:
        H, W, Cs = self.fs_shape
        x, y = self.spatial_stride
        kh, kw = self.kernel_size
        C = self.in_channels // self.groups
        dev = self.offsets.device
        k = torch.arange(self.K, device=dev)
        # Filter k is block (k1, k2, k3) with k = (k1 K2 + k2) K3 + k3.
        k3, k12 = k % self.k3, k // self.k3
        k1, k2 = k12 // self.k2, k12 % self.k2
        c0 = k3 * Cs // self.k3
        c = torch.arange(C, device=dev)
        i = torch.arange(kh, device=dev)
        j = torch.arange(kw, device=dev)
        h = (k1.view(-1, 1, 1, 1) * x + i.view(1, 1, -1, 1)) % H  # (K, 1, kh, 1)
        w = (k2.view(-1, 1, 1, 1) * y + j.view(1, 1, 1, -1)) % W  # (K, 1, 1, kw)
        cc = (c0.view(-1, 1, 1, 1) + c.view(1, -1, 1, 1)) % Cs  # (K, C, 1, 1)
        # The weight's layout (filter, channel, row, column), flattened.
        return ((h * W + w) * Cs + cc).reshape(-1)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", fs_shape={self.fs_shape}, K1={self.k1}, "
                f"K2={self.k2}, K3={self.k3}, spatial_stride={self.spatial_stride}")
