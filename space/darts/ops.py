"""The DARTS operations, with every 1x1 convolution built by `pointwise_conv`.

With `fs=None` each op is module-for-module the original DARTS op: the same layers in the same
order under the same attribute names (``op.K`` inside ReLUConvBN/DilConv/SepConv, ``conv_1``,
``conv_2``, ``bn`` in FactorizedReduce), so parameter counts and ``state_dict`` keys equal the
reference's. With an `FSSpec` the 1x1 convs become FS/DFS layers. Depthwise convs and the stems
stay plain convolutions.

Each op declares how the search's MixedOp may fuse it (`fused`: "none", "identity", "pool" or
"relu_led"), so MixedOp dispatches on that instead of on class lists; `forward_reference` is
the computation exactly as the DARTS code writes it (the speed and correctness baseline;
`SearchNetwork(fast=False)` runs it throughout). Each op is declared once, in
genotypes.primitives.OP_DECLS, naming one of the builder kinds below (BUILDERS) and its kernel:
an op of a known kind is that one line; a new kind is its class here (with `fused` and, if its
forward is not DARTS's, `forward_reference`) and its entry in BUILDERS.

The ReLU-led ops take two optional keyword arguments used by the search cell's fast path:
``relu`` is ReLU(x), computed once by the caller for every op reading x (one ReLU per cell
node instead of one per op), and ``scale`` multiplies the output, folded into the last
BatchNorm's affine transform so the architecture weight costs no extra pass over the
activations. Both leave the result equal to ``scale * op(x)``.

The fast forwards are built from space/layers/fused.py (BN with the scale folded in, 1x1 convs as
matrix products, the CPU rewrites of space/layers/cpu_kernels.py), which compute an op's layers
without calling them, so a hook on a layer does not fire there. An op whose `fast` is off
(`space.layers.fused.set_fast(model, False)`) runs `forward_reference`, calling each layer as a
module, so module hooks fire; the result is the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from genotypes import FSSpec
from genotypes.primitives import DECLS, OP_DECLS, OpDecl
from space.layers.cpu_kernels import depthwise
from space.layers.fs_model import pointwise_conv
from space.layers.fused import apply_conv, batch_norm, pointwise_subsampled, relu_in, scaled


class _Sequential(nn.Module):
    """An op whose layers are the nn.Sequential `self.op` (DARTS's layout and state_dict keys):
    its reference computation is that Sequential, layer by layer."""

    fused = "relu_led"
    fast = True  # the fused forward; off: the layers as modules (space.layers.fused.set_fast)
    op: nn.Sequential

    def forward_reference(self, x: Tensor) -> Tensor:
        return self.op(x)


class ReLUConvBN(_Sequential):
    """ReLU -> conv -> BN. A 1x1 kernel (the cell preprocessing) becomes an FS layer."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        affine: bool = True,
        fs: FSSpec | None = None,
    ) -> None:
        super().__init__()
        if kernel_size == 1 and padding == 0:
            conv = pointwise_conv(C_in, C_out, stride=stride, fs=fs)
        else:
            conv = nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.op = nn.Sequential(nn.ReLU(inplace=False), conv, nn.BatchNorm2d(C_out, affine=affine))

    def forward(self, x: Tensor, *, relu: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
        if not self.fast:
            return scaled(self.op(x), scale)
        op = self.op
        return batch_norm(op[2], apply_conv(op[1], relu_in(x, relu)), scale)


class DilConv(_Sequential):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BN."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
        fs: FSSpec | None = None,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding,
                dilation=dilation, groups=C_in, bias=False,
            ),
            pointwise_conv(C_in, C_out, fs=fs),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: Tensor, *, relu: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
        if not self.fast:
            return scaled(self.op(x), scale)
        op = self.op
        return batch_norm(op[3], apply_conv(op[2], depthwise(op[1], relu_in(x, relu))), scale)


class SepConv(_Sequential):
    """Two stacked DilConv blocks with dilation 1 (stride on the first), as in DARTS."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        affine: bool = True,
        fs: FSSpec | None = None,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding, groups=C_in, bias=False
            ),
            pointwise_conv(C_in, C_in, fs=fs),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=1, padding=padding, groups=C_in, bias=False),
            pointwise_conv(C_in, C_out, fs=fs),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: Tensor, *, relu: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
        if not self.fast:
            return scaled(self.op(x), scale)
        op = self.op
        y = batch_norm(op[3], apply_conv(op[2], depthwise(op[1], relu_in(x, relu))))
        # In place is safe: BatchNorm's backward needs its input, not its output, and this
        # saves one activation-sized tensor per SepConv (the reference's ReLU copies).
        y = F.relu_(y)
        return batch_norm(op[7], apply_conv(op[6], depthwise(op[5], y)), scale)


class Identity(nn.Module):
    """skip_connect with stride 1."""

    fused = "identity"

    def forward(self, x: Tensor) -> Tensor:
        return x


class Zero(nn.Module):
    """The `none` op: a zero tensor of the output shape. The fast mixed op skips it (its
    contribution to a weighted sum is exactly zero)."""

    fused = "none"

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves the resolution with two stride-2 1x1 convs on offset grids, concatenated."""

    fused = "relu_led"
    fast = True  # the fused forward; off: forward_reference (space.layers.fused.set_fast)

    def __init__(
        self, C_in: int, C_out: int, affine: bool = True, fs: FSSpec | None = None
    ) -> None:
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}; use even widths")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = pointwise_conv(C_in, C_out // 2, stride=2, fs=fs)
        self.conv_2 = pointwise_conv(C_in, C_out // 2, stride=2, fs=fs)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: Tensor, *, relu: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
        if not self.fast:
            return scaled(self.forward_reference(x), scale)
        x = relu_in(x, relu)
        # A stride-2 1x1 conv reads the even grid, the shifted one the odd grid: take those
        # pixels first and convolve with stride 1 (the same sums; faster on CPU, where the
        # strided kernels are slower). On odd sizes the odd grid is one pixel short, so it is
        # zero-padded back (a 1x1 conv without bias maps the padding to zeros, as DARTS would
        # need to concatenate the two halves at all).
        even, odd = x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            odd = F.pad(odd, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        y = torch.cat([pointwise_subsampled(self.conv_1, even),
                       pointwise_subsampled(self.conv_2, odd)], dim=1)
        return batch_norm(self.bn, y, scale)

    def forward_reference(self, x: Tensor) -> Tensor:
        """The DARTS computation as written there (the speed baseline)."""
        x = self.relu(x)
        y = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            y = F.pad(y, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(y)], dim=1))


OpFactory = Callable[[int, int, bool, "FSSpec | None"], nn.Module]
#: Builder kinds an op declaration (genotypes.primitives.OpDecl) names: (C, stride, affine,
#: fs, kernel) -> the op.
Builder = Callable[[int, int, bool, "FSSpec | None", int], nn.Module]

BUILDERS: dict[str, Builder] = {
    "zero": lambda C, stride, affine, fs, k: Zero(stride),
    "avg_pool": lambda C, stride, affine, fs, k: nn.AvgPool2d(
        k, stride=stride, padding=k // 2, count_include_pad=False
    ),
    "max_pool": lambda C, stride, affine, fs, k: nn.MaxPool2d(k, stride=stride, padding=k // 2),
    "skip": lambda C, stride, affine, fs, k: (
        Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine, fs=fs)
    ),
    "sep_conv": lambda C, stride, affine, fs, k: SepConv(C, C, k, stride, k // 2, affine, fs),
    # dilation 2: padding k - 1 keeps the size
    "dil_conv": lambda C, stride, affine, fs, k: DilConv(C, C, k, stride, k - 1, 2, affine, fs),
}
#: Builder kinds followed by BN(affine=False) as a search candidate (DARTS's MixedOp).
_BN_AFTER = ("max_pool", "avg_pool")


def _factory(d: OpDecl) -> OpFactory:
    build = BUILDERS[d.builder]
    return lambda C, stride, affine, fs: build(C, stride, affine, fs, d.kernel)


#: Every declared op's factory, in PRIMITIVES order.
OPS: dict[str, OpFactory] = {d.name: _factory(d) for d in OP_DECLS}


def make_op(name: str, C: int, stride: int, affine: bool, fs: FSSpec | None = None) -> nn.Module:
    """Build the DARTS op `name` on C channels; one clear error for an unknown name."""
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(OPS)}") from None
    return factory(C, stride, affine, fs)


def make_candidate(name: str, C: int, stride: int, fs: FSSpec | None = None) -> nn.Module:
    """The search's candidate op `name` on one MixedOp edge: BN without affine parameters,
    and pools followed by BN(affine=False) (DARTS's MixedOp)."""
    op = make_op(name, C, stride, False, fs)
    if DECLS[name].builder in _BN_AFTER:
        # A plain Sequential, as DARTS's (its module types and state_dict keys), marked.
        op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
        op.fused = "pool"
    return op


def forward_reference(op: nn.Module, x: Tensor) -> Tensor:
    """`op(x)` exactly as the DARTS code computes it: the op's own `forward_reference`, or
    `op(x)` for modules that have no faster path (pools, the pool+BN Sequential)."""
    ref = getattr(op, "forward_reference", None)
    return ref(x) if ref is not None else op(x)
