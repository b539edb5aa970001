"""Convert any network's Conv2d layers to Filter Summary layers, keeping its structure.

    from space.layers.convert import Conversion, convert
    net = torchvision.models.resnet18()
    convert(net, Conversion(mode="fs", ratio=4))             # 1D FS, every conv at ratio 4
    convert(net, Conversion(mode="fs3d", policy="paper"))    # the papers' 3D FS settings
    convert(net, Conversion(mode="dfs", params=700_000))     # one ratio fitted to 0.7M

Every `nn.Conv2d` of the module (wherever it sits: a user's own model converts) is replaced
in place by an FSConv2d, DFSConv2d or FS3dConv2d with the same geometry (channels, kernel,
stride, padding, dilation, groups, bias); nothing else changes, so `state_dict` keys differ
only in the conv layers' (`weight` becomes `fs`). Linear layers stay plain.

Per-layer settings (the policy):
- `ratio=R` (policy "ratio"): 1D FS and DFS layers take ratio min(R, K) (K filters: ratio K
  is one shared filter length); 3D FS layers take K3 = the divisor of K closest to R x y /
  (S1 S2) for kernels above 1x1 (x = y = 2, the FS's channels those of the filter), and a
  1x1 layer an FS of K C / R channels (K1 = K2 = 1, K3 = K).
- policy "paper" (3D FS): the FSNet paper's K3 by filter count (12: 2, 16: 4, 32: 2, 64: 4,
  128: 4, 256: 4, 512: 8; other counts take the nearest entry that divides them), x = y = 2,
  and every 1x1 layer at ratio 8.
- `params=P` (1D FS and DFS): the one ratio R whose network has the most parameters at or
  under P (effective parameters: the exported, hardened network), found by bisection on the
  exact count.

With `copy_weights` (the default) a layer whose FS is exactly its conv (1D FS at ratio 1:
L = K n and the identity windows) takes the conv's weights, so the converted network
computes the original's function; other layers start from nn.Conv2d's initialisation.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from space.layers.fs import DFSConv2d, FSConv2d, fs_length
from space.layers.fs3d import FS3dConv2d
from space.layers.fs_bank import batched_filters
from space.layers.fs_model import replace_modules

__all__ = ["Conversion", "convert", "conv_layers", "layer_settings", "PAPER_K3", "MODES",
           "POLICIES"]

MODES = ("fs", "dfs", "fs3d")
POLICIES = ("ratio", "paper")
#: The FSNet paper's K3 (filters sharing a spatial block position) by filter count.
PAPER_K3 = {12: 2, 16: 4, 32: 2, 64: 4, 128: 4, 256: 4, 512: 8}
PAPER_POINTWISE_RATIO = 8


@dataclass(frozen=True)
class Conversion:
    """What `convert` does: the layer kind and the per-layer policy (one of `ratio`,
    policy="paper", `params`)."""

    mode: str = "fs"
    ratio: float | None = None
    policy: str = "ratio"
    params: int | None = None
    num_offsets: int = 4
    grad_reduce: str = "mean"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"FS mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.policy not in POLICIES:
            raise ValueError(f"FS policy {self.policy!r} is not one of {', '.join(POLICIES)}")
        if self.policy == "paper" and self.mode != "fs3d":
            raise ValueError("the paper policy sets 3D FS layers; use it with fs3d, or give a "
                             "ratio for 1D FS")
        if self.params is not None and self.mode == "fs3d":
            raise ValueError("a parameter target fits 1D FS ratios; use fs or dfs with it, or "
                             "a ratio / the paper policy with fs3d")
        if self.ratio is not None and not self.ratio >= 1:
            raise ValueError(f"FS ratio {self.ratio} is below 1; use a ratio >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conversion:
        return cls(**d)


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """(qualified name, layer) of every nn.Conv2d, each module once, in named_modules order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _filters(conv: nn.Conv2d) -> tuple[int, int]:
    """(K, n) of a conv: filters and elements per filter."""
    kh, kw = _pair(conv.kernel_size)
    return conv.out_channels, conv.in_channels // conv.groups * kh * kw


def _nearest_divisor(K: int, want: float) -> int:
    return min((d for d in range(1, K + 1) if K % d == 0), key=lambda d: (abs(d - want), d))


def _paper_k3(K: int, name: str) -> int:
    ok = [k for k in PAPER_K3 if K % PAPER_K3[k] == 0]
    if not ok:
        raise ValueError(f"{name}: no K3 of the paper's table divides its {K} filters; "
                         "give a ratio instead")
    return PAPER_K3[min(ok, key=lambda k: abs(math.log(K / k)))]


def layer_settings(name: str, conv: nn.Conv2d, c: Conversion, ratio: float | None = None
                   ) -> dict[str, Any]:
    """The keyword arguments of `conv`'s FS layer under `c` (`ratio` overrides c.ratio)."""
    K, n = _filters(conv)
    r = c.ratio if ratio is None else ratio
    if c.mode != "fs3d":
        return {"ratio": min(float(r), float(K))}
    kh, kw = _pair(conv.kernel_size)
    C = conv.in_channels // conv.groups
    if kh * kw == 1:  # K1 = K2 = 1: channel windows of C at stride Cs / K
        pointwise = PAPER_POINTWISE_RATIO if c.policy == "paper" else float(r)
        return {"k3": K, "spatial_stride": 1,
                "channel_size": max(C, fs_length(K * C, pointwise))}
    # Stride 2 along a side of 2 or more; 1 along a side of 1 (a 1x3 or 3x1 kernel), where a
    # stride of 2 would leave every other FS row unread.
    x, y = min(2, kh), min(2, kw)
    k3 = _paper_k3(K, name) if c.policy == "paper" else _nearest_divisor(K, float(r) * x * y / (kh * kw))
    return {"k3": k3, "spatial_stride": (x, y)}


def _fs_layer(conv: nn.Conv2d, c: Conversion, settings: dict[str, Any]) -> nn.Module:
    geo = dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
               kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
               dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
               grad_reduce=c.grad_reduce)
    if conv.padding_mode != "zeros":
        raise ValueError(f"padding_mode={conv.padding_mode!r} convs cannot be converted; "
                         "FS layers pad with zeros")
    if c.mode == "fs3d":
        return FS3dConv2d(**geo, **settings)
    if c.mode == "dfs":
        return DFSConv2d(**geo, **settings, num_offsets=c.num_offsets)
    return FSConv2d(**geo, **settings)


def _counted(model: nn.Module, layers: list[tuple[str, nn.Conv2d]], ratio: float) -> int:
    """Effective parameters of `model` with every layer of `layers` a 1D FS at `ratio`."""
    conv_w = sum(m.weight.numel() for _, m in layers)
    total = sum(p.numel() for p in model.parameters())
    fs = sum(fs_length(math.prod(_filters(m)), min(ratio, _filters(m)[0])) for _, m in layers)
    return total - conv_w + fs


def fs_count(model: nn.Module, ratio: float) -> int:
    """Effective parameters of `model` (unconverted) with every conv a 1D FS at `ratio`."""
    return _counted(model, conv_layers(model), ratio)


def fit_ratio(model: nn.Module, params: int) -> float:
    """The smallest ratio whose 1D FS network has at most `params` effective parameters
    (the count decreases with the ratio, so bisection on it finds the boundary)."""
    layers = conv_layers(model)
    hi = float(max(_filters(m)[0] for _, m in layers))
    smallest = _counted(model, layers, hi)
    if _counted(model, layers, 1.0) <= params:
        return 1.0
    if smallest > params:
        raise ValueError(f"a target of {params:,} parameters is below this network's "
                         f"smallest FS form ({smallest:,}: every filter one shared window); "
                         "use a narrower network or a larger target")
    lo = 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _counted(model, layers, mid) <= params else (mid, hi)
    return hi


def fitted_ratio(model: nn.Module) -> float | None:
    """The ratio a `params` conversion fitted: the largest of the 1D FS / DFS layers' ratios
    (each layer takes min(R, K)); None without such layers."""
    ratios = [float(m.ratio) for m in model.modules() if isinstance(m, FSConv2d | DFSConv2d)]
    return max(ratios) if ratios else None


def convert(model: nn.Module, c: Conversion, copy_weights: bool = True) -> nn.Module:
    """Replace every nn.Conv2d of `model` in place by its FS layer under `c`; returns model
    (see the module docstring). A conv shared by several parents becomes one shared layer."""
    layers = conv_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv2d layers to convert to FS")
    ratio = c.ratio
    if c.params is not None:
        ratio = fit_ratio(model, int(c.params))
    elif c.policy == "ratio" and ratio is None:
        raise ValueError("converting to FS needs a ratio, the paper policy or a parameter target")
    if c.policy == "ratio" and c.mode != "fs3d" and ratio > max(_filters(m)[0] for _, m in layers):
        raise ValueError(f"ratio {ratio:g} is above every layer's filter count (at most "
                         f"{max(_filters(m)[0] for _, m in layers)}); use a smaller ratio")
    new_layers: dict[int, nn.Module] = {}
    for name, conv in layers:
        if id(conv) not in new_layers:
            new = _fs_layer(conv, c, layer_settings(name, conv, c, ratio))
            new.to(device=conv.weight.device, dtype=conv.weight.dtype)
            if copy_weights:
                _copy(conv, new)
            new_layers[id(conv)] = new.train(conv.training)
    model = replace_modules(model, lambda m: new_layers.get(id(m)))
    attach_filter_bank(model)
    return model


def attach_filter_bank(model: nn.Module) -> None:
    """While `model` trains, compute all its FS filters in one batch per forward
    (space/layers/fs_bank.py, as the DARTS networks do): one gather for every layer, and one
    for a layer shared by several places, instead of one per use. The filters equal the
    layers' own (tested). Forward hooks on the root, so any module's forward keeps running as
    written; in eval mode each layer's filter cache serves instead."""
    if getattr(model, "_fs_bank_hooked", False):
        return
    model._fs_bank_hooked = True
    model.register_forward_pre_hook(_enter_bank)
    model.register_forward_hook(_leave_bank, always_call=True)


def _enter_bank(module: nn.Module, args: tuple) -> None:
    ctx = batched_filters(module) if module.training else contextlib.nullcontext()
    ctx.__enter__()
    module.__dict__.setdefault("_fs_bank_contexts", []).append(ctx)


def _leave_bank(module: nn.Module, args: tuple, output: object) -> None:
    stack = module.__dict__.get("_fs_bank_contexts")
    if stack:
        stack.pop().__exit__(None, None, None)


def _copy(conv: nn.Conv2d, layer: nn.Module) -> None:
    """The conv's weights into `layer` where its FS is exactly the conv's (1D FS, ratio 1)."""
    with torch.no_grad():
        if conv.bias is not None:
            layer.bias.copy_(conv.bias)
        if type(layer) is FSConv2d and layer.L == layer.K * layer.n:
            layer.fs.copy_(conv.weight.reshape(-1))
