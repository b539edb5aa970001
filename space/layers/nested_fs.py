"""Nested Filter Summaries: one 1x1 (or any) conv whose compression ratio is searched.

A layer with candidate ratios r_1 < ... < r_R holds ONE FS vector of the longest length
L_1 = ceil(K*n/r_1). The FS of ratio r_i is its prefix of L_i = ceil(K*n/r_i) elements, so
the candidates share their weights and a smaller summary is the start of a larger one.
Ratio i gives filter k the window that an `FSConv2d` (ratio r_i, default offsets) or a
`DFSConv2d` (r_i, M candidate offsets) gives it on that prefix:

    W_i[k, j] = sum_m p_i[k, m] * fs[(o_ik + s_im + j) mod L_i],   j < n,
    o_ik = floor(k * L_i / K),   s_im = floor(m * L_i / (K * M)),   p_i[k] = softmax(theta_ik / T)

(fixed offsets: M = 1, p = 1). The layer's filters are the mix over ratios with the op's
ratio weights w = softmax(beta_op), architecture parameters of the search:

    W[k, j] = sum_i w_i W_i[k, j] = sum_(i, m) q[k, (i, m)] * fs[index(k, j, i, m)],
    q[k, (i, m)] = w_i * p_i[k, m].

That is the DFS formula (space/layers/fs_gather.py `dfs_filters`) with R*M candidates per filter and
weights q, so one function computes both, and the mean-gradient rule divides an element's
gradient by the q-weighted count of its reads: at one-hot w and p exactly FSConv2d's rule for
the chosen ratio (tests/test_nested_fs.py checks value and gradient against separate layers).
Unlike DFSConv2d no duplicate candidate is dropped (s_im repeats when L_i/K < M, e.g. ratio 8
at C=16 in the search supernet): every ratio keeps the same M and q stays a dense (K, R*M)
block. Where candidates repeat, the equality with DFSConv2d holds for the filters a set of
logits gives only after merging the repeats' weights, and the logged offset entropy counts
the repeats as distinct candidates.

The ratio weights are not the layer's: all 1x1 convs of one op share their op's weights,
and every normal (reduce) cell shares the same ones, like the alphas. The search network
puts softmax(beta) of all ops in a (slots, R) tensor in `ratio_mix` for the forward, and
each layer reads row `slot` of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn as nn
from torch import Tensor

from space.layers.fs import DFSConv2d, FSConv2d, fs_length, provided_filters
from space.layers.fs_gather import LOG2E, dfs_filters, entropy, mixing_weights

__all__ = ["NestedFSConv2d", "ratio_mix", "nested_layers", "nested_lengths", "nest_layers"]

#: (slots, R) ratio weights of the forward running in this context (see `ratio_mix`).
_RATIO_WEIGHTS: ContextVar[Tensor | None] = ContextVar("fs_ratio_weights", default=None)


@contextmanager
def ratio_mix(weights: Tensor) -> Iterator[None]:
    """Run the block with `weights` (slots, R), row s the ratio weights of slot s."""
    token = _RATIO_WEIGHTS.set(weights)
    try:
        yield
    finally:
        _RATIO_WEIGHTS.reset(token)


def current_ratio_weights() -> Tensor:
    """The (slots, R) ratio weights `ratio_mix` set for this context; one clear error
    outside one."""
    w = _RATIO_WEIGHTS.get()
    if w is None:
        raise RuntimeError("NestedFSConv2d has no ratio weights: run it inside a SearchNetwork "
                           "forward or a `with space.layers.nested_fs.ratio_mix(weights):` block")
    return w


def nested_lengths(K: int, n: int, ratios: Sequence[float]) -> list[int]:
    """L_i = ceil(K*n/r_i) for each ratio, in exact rational arithmetic (as FSConv2d)."""
    return [fs_length(K * n, r) for r in ratios]


def nested_index(K: int, n: int, lengths: Sequence[int], num_offsets: int) -> Tensor:
    """Flat index into fs, laid out (filter k, element j, ratio i, candidate m)."""
    k = torch.arange(K).view(K, 1, 1, 1)
    j = torch.arange(n).view(1, n, 1, 1)
    m = torch.arange(num_offsets).view(1, 1, 1, num_offsets)
    L = torch.tensor(lengths).view(1, 1, -1, 1)
    start = k * L // K + m * L // (K * num_offsets)
    return ((start + j) % L).reshape(-1)


class NestedFSConv2d(nn.Module):
    """A conv whose filters mix the FS (or DFS) filters of several nested compression ratios
    (module docstring). `slot` is the row of the ratio weights this layer reads."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 ratios: Sequence[float] = (1, 2, 4, 8), dfs: bool = True, num_offsets: int = 4,
                 grad_reduce: str = "mean", temperature: float = 1.0, slot: int = 0) -> None:
        super().__init__()
        ratios = tuple(sorted(float(r) for r in ratios))
        if not ratios or ratios[0] < 1.0 or len(set(ratios)) != len(ratios):
            raise ValueError(f"NestedFSConv2d: ratios must be distinct numbers >= 1, got {ratios}")
        if grad_reduce not in ("mean", "sum"):
            raise ValueError(f"NestedFSConv2d: grad_reduce must be 'mean' or 'sum', got {grad_reduce!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = (kernel_size, kernel_size), (stride, stride)
        self.padding, self.dilation, self.groups, self.bias = (0, 0), (1, 1), 1, None
        self.K, self.n = out_channels, in_channels * kernel_size * kernel_size
        self.ratios, self.lengths = ratios, nested_lengths(self.K, self.n, ratios)
        if self.lengths[-1] < self.n:
            raise ValueError(f"NestedFSConv2d: ratio {ratios[-1]:g} leaves L={self.lengths[-1]} "
                             f"< n={self.n}, shorter than one filter; use ratios <= {self.K}")
        self.L = self.lengths[0]
        self.dfs, self.grad_reduce, self.slot = bool(dfs), grad_reduce, int(slot)
        self.num_offsets = int(num_offsets) if dfs else 1
        self.fs = nn.Parameter(torch.empty(self.L))
        R, M = len(ratios), self.num_offsets
        self.offset_logits = nn.Parameter(torch.zeros(self.K, R, M)) if dfs else None
        self.temperature = temperature
        self.register_buffer("_index", nested_index(self.K, self.n, self.lengths, M),
                             persistent=False)
        self.register_buffer("_rows", torch.arange(self.K).repeat_interleave(self.n),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # FSConv2d's init (nn.Conv2d's fan-in bound), over the longest summary.
        bound = nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3.0 / self.n)
        nn.init.uniform_(self.fs, -bound, bound)
        if self.offset_logits is not None:
            nn.init.zeros_(self.offset_logits)

    @property
    def logit_scale(self) -> float:
        """log2(e) / temperature, as DFSConv2d."""
        return LOG2E / self.temperature

    def offset_parameters(self) -> list[nn.Parameter]:
        """The offset logits (upper level of a search), or none without DFS."""
        return [] if self.offset_logits is None else [self.offset_logits]

    def mixing_weights(self, ratio_weights: Tensor) -> Tensor:
        """q (K, R*M): ratio weight times offset weight of every (ratio, candidate)."""
        R, M = len(self.ratios), self.num_offsets
        w = ratio_weights.view(1, R, 1)
        if self.offset_logits is None:
            return w.expand(self.K, R, 1).reshape(self.K, R)
        p = mixing_weights(self.offset_logits.view(-1, M), self.logit_scale).view(self.K, R, M)
        return (p * w).reshape(self.K, R * M)

    def filters_for(self, ratio_weights: Tensor) -> Tensor:
        """The (K, C_in, kh, kw) filters for the (R,) ratio weights given."""
        q = self.mixing_weights(ratio_weights)
        w = dfs_filters(self.fs, q, self._index, self._rows, self.grad_reduce == "mean")
        return w.view(self.K, self.in_channels, *self.kernel_size)

    def filters(self) -> Tensor:
        """The filters for this forward: handed over by a FilterBank, or computed from row
        `slot` of the current ratio weights."""
        provided = provided_filters.get()
        if provided is not None and id(self) in provided:
            return provided[id(self)]
        return self.filters_for(current_ratio_weights()[self.slot])

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(x, self.filters(), None, self.stride)

    def offset_entropy(self) -> Tensor:
        """Mean entropy (nats) of the offset mixes over filters and ratios (0 without DFS)."""
        if self.offset_logits is None:
            return self.fs.new_zeros(())
        return entropy(self.offset_logits.view(-1, self.num_offsets), self.logit_scale).mean()

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ratios={list(self.ratios)}, L={self.lengths}, "
                f"dfs={self.dfs}, num_offsets={self.num_offsets}, slot={self.slot}")


def nested_layers(model: nn.Module) -> list[NestedFSConv2d]:
    """Every NestedFSConv2d of `model`, in `modules()` order."""
    return [m for m in model.modules() if isinstance(m, NestedFSConv2d)]


def nest_layers(module: nn.Module, ratios: Sequence[float], slot: int) -> int:
    """Replace every FSConv2d/DFSConv2d inside `module` by a NestedFSConv2d of the same
    geometry, kind, offset count and gradient rule, reading ratio-weight row `slot`.
    Returns the number of layers replaced (0: the op has no FS layer)."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, (FSConv2d, DFSConv2d)):
                continue
            if child.groups != 1 or child.bias is not None or child.padding not in (0, (0, 0)):
                raise ValueError("nest_layers: only bias-free, ungrouped, unpadded FS convs "
                                 "(the search space's 1x1 convs) can be nested")
            dfs = isinstance(child, DFSConv2d)
            layer = NestedFSConv2d(
                child.in_channels, child.out_channels, child.kernel_size[0], child.stride[0],
                ratios, dfs, child.num_offsets if dfs else 1, child.grad_reduce,
                child.temperature if dfs else 1.0, slot)
            setattr(parent, name, layer.to(device=child.fs.device, dtype=child.fs.dtype))
            count += 1
    return count
