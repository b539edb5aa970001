"""Filter Summary convolutions: FSConv2d (fixed sharing offsets) and DFSConv2d (learned ones).

The K = out_channels filters of n = (in_channels/groups)*kh*kw elements each are windows of one
learned 1D vector ``fs`` of length L = ceil(K*n/ratio): filter k = fs[(offset_k + j) mod L].

Each layer describes itself to space/layers/fs_bank.py's batched computation by one `Packing` record.
The two layer kinds share one module: they share geometry, index, cache and packing code, and
`harden` turns one into the other. The helpers that walk a whole model (find, harden,
anneal, build) are in space/layers/fs_model.py.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

from space.layers.fs_gather import LOG2E, dfs_filters, entropy, fs_filters, mixing_weights

__all__ = ["FSConv2d", "DFSConv2d", "Packing", "fs_length", "provided_filters"]


#: Filters a FilterBank computed for the forward running in this context, by id(layer).
provided_filters: ContextVar[dict[int, Tensor] | None] = ContextVar("fs_provided_filters", default=None)


def fs_length(elements: int, ratio: float) -> int:
    """ceil(elements / ratio), the FS length of `elements` filter elements (K*n) at `ratio`, in
    exact rational arithmetic: elements/ratio computed in floats can land just above an
    integer. Every FS length in the project (layers, nested ratios, the converter) is this."""
    return math.ceil(Fraction(int(elements)) / Fraction(float(ratio)))


def _windows(starts: Tensor, n: int, L: int) -> Tensor:
    """Flat circular index of n-element windows, laid out (filter, element, candidate):
    starts is (K, M) (M candidate window starts per filter)."""
    j = torch.arange(n, dtype=torch.long, device=starts.device).view(1, n, 1)
    return ((starts.unsqueeze(1) + j) % L).reshape(-1)


@dataclass(frozen=True)
class Packing:
    """A layer's part in a FilterBank's packed call (space/layers/fs_bank.py): everything the bank
    reads from the layer besides its parameters (`fs`, and `offset_logits` for DFS). `key`
    changes whenever anything here does (`packing_key()` reads it without building the
    record); a dtype or device change shows in the layer's parameters instead."""

    key: tuple
    index: Tensor  # flat gather index into fs: (filter, element[, candidate])
    length: int  # L
    rows: int  # K, the filters
    size: int  # K * n, the filter elements
    shape: tuple[int, int, int, int]  # the weight's
    row_of: Tensor | None = None  # DFS: the filter of each (filter, element) pair
    logit_scale: float | None = None  # DFS: log2(e) / temperature
    multi_read: bool = False  # FS: some element is read more than once
    inv_count: Tensor | None = None  # FS: 1 / reads of each element


class _FSConvBase(nn.Module):
    """Geometry, the FS vector, bias, default offsets and the eval-mode filter cache shared by
    FSConv2d and DFSConv2d. Subclasses implement `_rebuild_index` and `_gather`."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
        dilation=1, groups: int = 1, bias: bool = False, ratio: float = 1.0,
        grad_reduce: str = "mean", length: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} and out_channels={out_channels}"
                             f" must be divisible by groups={groups}")
        if grad_reduce not in ("mean", "sum"):
            raise ValueError(f"{name}: grad_reduce must be 'mean' or 'sum', got {grad_reduce!r}")
        kh, kw = _pair(kernel_size)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = (kh, kw)
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.grad_reduce = grad_reduce
        K, n = out_channels, (in_channels // groups) * kh * kw
        shape = (f"{name}({in_channels}, {out_channels}, kernel_size={self.kernel_size}, "
                 f"groups={groups}; K={K} filters of n={n})")
        if length is not None:  # a geometry that fixes L itself (space/layers/fs3d.py)
            ratio = K * n / int(length)
        ratio = float(ratio)
        if not ratio >= 1.0:  # also catches NaN
            raise ValueError(f"{shape}: ratio={ratio} < 1 is invalid; use ratio >= 1 "
                             "(1 = plain convolution, larger = more sharing)")
        if length is not None:
            L = int(length)
        else:
            L = fs_length(K * n, ratio) if math.isfinite(ratio) else 0
        if L < n:
            raise ValueError(f"{shape}: ratio={ratio} gives FS length L={L} < n={n}, shorter "
                             f"than one filter; use ratio <= {K}")
        self.ratio, self.K, self.n, self.L = ratio, K, n, L
        self.fs = nn.Parameter(torch.empty(L))
        self.bias = nn.Parameter(torch.empty(K)) if bias else None
        # Persistent so a hardened layer's (arbitrary) offsets travel with its state_dict.
        self.register_buffer("offsets", torch.arange(K, dtype=torch.long) * L // K)
        self._index_key: tuple | None = None
        self._cache: tuple[tuple, Tensor] | None = None
        self.reset_parameters()

    @property
    def compression(self) -> float:
        """Parameter ratio of the filters: K*n / L."""
        return self.K * self.n / self.L

    def reset_parameters(self) -> None:
        # nn.Conv2d's init: kaiming_uniform(a=sqrt(5)) on fan_in = n, i.e. U(+-1/sqrt(n)).
        bound = nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3.0 / self.n)
        nn.init.uniform_(self.fs, -bound, bound)
        if self.bias is not None:
            b = 1.0 / math.sqrt(self.n)
            nn.init.uniform_(self.bias, -b, b)

    def set_offsets(self, offsets: Tensor) -> None:
        """Set the window starts of the K filters (taken mod L) and rebuild the gather index."""
        with torch.no_grad():
            self.offsets.copy_(torch.as_tensor(offsets).reshape(self.K) % self.L)
        self._rebuild_index()

    def _ensure_index(self) -> None:
        # Offsets changed behind our back (in-place edit, assign=True load): rebuild.
        key = (self.offsets.data_ptr(), self.offsets._version)
        if key != self._index_key:
            self._rebuild_index()

    def _starts(self) -> Tensor:
        """Window starts, (K, candidates per filter)."""
        return self.offsets.view(-1, 1)

    def _index_tensor(self) -> Tensor:
        """The flat gather index, laid out (filter, element[, candidate]); the one place a
        layer's sharing geometry is defined (space/layers/fs3d.py overrides it)."""
        return _windows(self._starts(), self.n, self.L)

    def _rebuild_index(self) -> None:
        # Non-persistent buffers: derived from offsets, rebuilt on load / offset change.
        self.register_buffer("_index", self._index_tensor(), persistent=False)
        self._index_key = (self.offsets.data_ptr(), self.offsets._version)
        self._cache = None

    def _gather(self) -> Tensor:
        raise NotImplementedError

    def _gather_params(self) -> tuple[Tensor, ...]:
        return (self.fs,)

    def _cache_key(self) -> tuple:
        ps = self._gather_params()
        return tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in ps) + self._index_key

    def filters(self) -> Tensor:
        """The (K, C_in/groups, kh, kw) weight tensor.

        Eval mode without autograd on the FS parameters (e.g. under no_grad) returns a cached
        tensor, reused until a parameter changes (in-place updates bump `_version`). Training
        mode, or eval with gradients wanted, always gathers afresh so gradients are right.
        Inside a FilterBank's batched forward, the filters the bank computed for this layer.
        """
        provided = provided_filters.get()
        if provided is not None:
            w = provided.get(id(self))
            if w is not None:
                return w
        self._ensure_index()
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self._gather_params())
        if self.training or grad:
            return self._gather()
        key = self._cache_key()
        if self._cache is None or self._cache[0] != key:
            # Out of inference mode so the cached tensor is usable later outside it too.
            with torch.inference_mode(False), torch.no_grad():
                self._cache = (key, self._gather())
        return self._cache[1]

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.filters(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._rebuild_index()  # offsets may have changed

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}, ratio={self.ratio:g}, "
                f"L={self.L}, grad_reduce={self.grad_reduce}")

    def _weight_shape(self) -> tuple[int, int, int, int]:
        return (self.K, self.in_channels // self.groups, *self.kernel_size)

    def packing_key(self) -> tuple:
        """`packing().key`, without building the record (read at every batched forward)."""
        self._ensure_index()
        return self._index_key

    def packing(self) -> Packing:
        """This layer's `Packing` record."""
        return Packing(self.packing_key(), self._index, self.L, self.K, self.K * self.n,
                       self._weight_shape())


class FSConv2d(_FSConvBase):
    """Filter Summary Conv2d: filter k is fs[(offsets[k] + j) mod L], j < n. A drop-in for
    nn.Conv2d; ratio=1 with the default offsets is exactly nn.Conv2d (fs = weight.flatten()).

    grad_reduce="mean" gives each FS element the mean of the gradients of the filter elements
    reading it (the paper's rule); "sum" the plain autograd sum.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, ratio: float = 1.0,
                 grad_reduce: str = "mean") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, ratio, grad_reduce)
        self._rebuild_index()

    def _rebuild_index(self) -> None:
        super()._rebuild_index()
        index = self._index
        count = torch.bincount(index, minlength=self.L)
        # ratio 1 with default offsets: the index is the identity, so the gather is skipped.
        self._identity = bool(index.numel() == self.L and torch.equal(
            index, torch.arange(self.L, device=index.device)))
        # Mean and sum differ only where some element is read more than once.
        self._multi_read = bool((count > 1).any())
        # Elements read by nobody (only possible with custom offsets) get 1/0 -> 0, not inf.
        inv = torch.where(count > 0, 1.0 / count.clamp(min=1).to(torch.float64), 0.0)
        self.register_buffer("_inv_count", inv.to(self.fs.dtype), persistent=False)

    def packing(self) -> Packing:
        p = super().packing()
        return Packing(p.key, p.index, p.length, p.rows, p.size, p.shape,
                       multi_read=self._multi_read, inv_count=self._inv_count)

    def _gather(self) -> Tensor:
        inv = self._inv_count if self.grad_reduce == "mean" and self._multi_read else None
        w = fs_filters(self.fs, None if self._identity else self._index, inv)
        return w.view(self._weight_shape())


class DFSConv2d(_FSConvBase):
    """Differentiable FS conv: filter k is a softmax(offset_logits[k]/temperature) mix of its
    M' candidate windows starting at offsets[k] + floor(m*s/M), s = L/K, m < M.

    Duplicate candidates (s < M) are dropped: since s is global every filter has the same
    M' distinct shifts, so offset_logits is (K, M') with no masking. grad_reduce="mean" gives
    each FS element the p-weighted mean of the gradients of the filter elements reading it
    (sum_r p_r g_r / sum_r p_r over its reads r): with one-hot logits exactly FSConv2d's rule.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, ratio: float = 1.0,
                 grad_reduce: str = "mean", num_offsets: int = 4,
                 temperature: float = 1.0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, ratio, grad_reduce)
        if num_offsets < 1:
            raise ValueError(f"DFSConv2d: num_offsets must be >= 1, got {num_offsets}")
        self.num_offsets = num_offsets
        # floor(m*s/M) = floor(m*L/(K*M)) in exact integer arithmetic; non-decreasing in m.
        shifts = sorted({m * self.L // (self.K * num_offsets) for m in range(num_offsets)})
        self.register_buffer("shifts", torch.tensor(shifts, dtype=torch.long), persistent=False)
        self.num_candidates = len(shifts)
        self.offset_logits = nn.Parameter(torch.zeros(self.K, self.num_candidates))
        self.temperature = temperature
        self._rebuild_index()

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, t: float) -> None:
        if not t > 0:
            raise ValueError(f"DFSConv2d: temperature must be > 0, got {t}")
        self._temperature = float(t)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "offset_logits"):  # absent while the base __init__ runs
            nn.init.zeros_(self.offset_logits)  # uniform mix over the candidates

    def offset_parameters(self) -> list[nn.Parameter]:
        """The offset logits, meant for the upper (architecture) level of a search."""
        return [self.offset_logits]

    def _starts(self) -> Tensor:
        return self.offsets.view(-1, 1) + self.shifts.to(self.offsets.device)  # (K, M')

    def _rebuild_index(self) -> None:
        super()._rebuild_index()
        # The filter row of each (filter, element) pair of the index.
        rows = torch.arange(self.K, device=self.offsets.device).repeat_interleave(self.n)
        self.register_buffer("_rows", rows, persistent=False)

    def _gather_params(self) -> tuple[Tensor, ...]:
        return (self.fs, self.offset_logits)

    def _cache_key(self) -> tuple:
        return super()._cache_key() + (self._temperature,)

    def packing_key(self) -> tuple:
        return super().packing_key() + (self._temperature,)

    def packing(self) -> Packing:
        p = super().packing()
        return Packing(p.key, p.index, p.length, p.rows, p.size, p.shape, row_of=self._rows,
                       logit_scale=self.logit_scale)

    @property
    def logit_scale(self) -> float:
        """log2(e) / temperature: the factor space/layers/fs_gather.py's softmax takes."""
        return LOG2E / self._temperature

    def mixing_weights(self) -> Tensor:
        """softmax(offset_logits / temperature) over the candidates, shape (K, M')."""
        return mixing_weights(self.offset_logits, self.logit_scale)

    def _gather(self) -> Tensor:
        w = dfs_filters(self.fs, self.mixing_weights(), self._index, self._rows,
                        self.grad_reduce == "mean")
        return w.view(self._weight_shape())

    def offset_entropy(self) -> Tensor:
        """Mean over filters of the entropy (nats) of the candidate mixing weights."""
        return entropy(self.offset_logits, self.logit_scale).mean()

    def harden(self) -> FSConv2d:
        """An FSConv2d with the same fs/bias/geometry whose offsets are the argmax candidates."""
        choice = self.offset_logits.detach().argmax(dim=1).to(self.offsets.device)
        layer = FSConv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                         self.padding, self.dilation, self.groups, self.bias is not None,
                         self.ratio, self.grad_reduce)
        layer.to(device=self.fs.device, dtype=self.fs.dtype)
        with torch.no_grad():
            layer.fs.copy_(self.fs)
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        layer.set_offsets(self.offsets + self.shifts[choice])
        return layer.train(self.training)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", num_offsets={self.num_offsets}, "
                f"candidates={self.num_candidates}, temperature={self._temperature:g}")
