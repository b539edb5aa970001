"""The DARTS operations, with every 1x1 convolution built by `pointwise_conv`.

With `fs=None` each op is module-for-module the original DARTS op (same layers, same order,
same parameter count); with an `FSSpec` the 1x1 convs become FS/DFS layers. Depthwise convs
and the stems stay plain convolutions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from genotypes import FSSpec
from space.fs import pointwise_conv


class ReLUConvBN(nn.Sequential):
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
        if kernel_size == 1 and padding == 0:
            conv = pointwise_conv(C_in, C_out, stride=stride, fs=fs)
        else:
            conv = nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False)
        super().__init__(nn.ReLU(inplace=False), conv, nn.BatchNorm2d(C_out, affine=affine))


class DilConv(nn.Sequential):
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
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding,
                dilation=dilation, groups=C_in, bias=False,
            ),
            pointwise_conv(C_in, C_out, fs=fs),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
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
        super().__init__(
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


class Identity(nn.Module):
    """skip_connect with stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The `none` op: a zero tensor of the output shape. Mixed ops skip it entirely, because
    its contribution to a weighted sum is exactly zero."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves the resolution with two stride-2 1x1 convs on offset grids, concatenated."""

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # The second path sees the grid shifted by one pixel. On odd sizes (any-input-size
        # datasets) it would come out one pixel smaller, so pad it back; even sizes (CIFAR,
        # ImageNet) take the DARTS path unchanged, without the copy.
        y = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            y = nn.functional.pad(y, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(y)], dim=1))


OpFactory = Callable[[int, int, bool, "FSSpec | None"], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine, fs: Zero(stride),
    "avg_pool_3x3": lambda C, stride, affine, fs: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "max_pool_3x3": lambda C, stride, affine, fs: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": lambda C, stride, affine, fs: (
        Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine, fs=fs)
    ),
    "sep_conv_3x3": lambda C, stride, affine, fs: SepConv(C, C, 3, stride, 1, affine, fs),
    "sep_conv_5x5": lambda C, stride, affine, fs: SepConv(C, C, 5, stride, 2, affine, fs),
    "dil_conv_3x3": lambda C, stride, affine, fs: DilConv(C, C, 3, stride, 2, 2, affine, fs),
    "dil_conv_5x5": lambda C, stride, affine, fs: DilConv(C, C, 5, stride, 4, 2, affine, fs),
}


def make_op(name: str, C: int, stride: int, affine: bool, fs: FSSpec | None = None) -> nn.Module:
    """Build the DARTS op `name` on C channels; one clear error for an unknown name."""
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(OPS)}") from None
    return factory(C, stride, affine, fs)
