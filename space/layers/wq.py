"""FSNet-WQ: 8-bit weight quantisation of the Filter Summary vectors.

Each FS vector is stored as uint8 codes into 256 levels evenly spaced between its min and max,
level_i = min + i*(max-min)/255, plus min and max as float32. Offset logits, biases and every
non-FS tensor stay float.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
from torch import Tensor

from space.layers.fs_model import fs_layers, fs_places

__all__ = [
    "quantize_tensor", "dequantize_tensor", "quantized_state_dict",
    "load_quantized_state_dict", "quantize_model_",
]

LEVELS = 256


def quantize_tensor(t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(uint8 codes of t's nearest levels, min, max), min and max as float32 0-d tensors."""
    t = t.detach()
    lo = t.min().to(torch.float32)
    hi = t.max().to(torch.float32)
    span = (hi - lo).double()
    if span == 0:
        # Constant tensor: every element is level 0 (== min); no division by a zero step.
        return torch.zeros(t.shape, dtype=torch.uint8, device=t.device), lo, hi
    # float64 so round() picks the nearest level even where float32 would misplace a tie.
    pos = (t.double() - lo.double()) * ((LEVELS - 1) / span)
    codes = pos.round().clamp_(0, LEVELS - 1).to(torch.uint8)
    return codes, lo, hi


def dequantize_tensor(codes: Tensor, min: Tensor | float, max: Tensor | float) -> Tensor:
    """The float32 levels min + code*(max-min)/255 (exactly min for a constant tensor)."""
    lo = torch.as_tensor(min, dtype=torch.float32, device=codes.device)
    hi = torch.as_tensor(max, dtype=torch.float32, device=codes.device)
    step = (hi - lo) / (LEVELS - 1)  # 0 for a constant tensor: all levels equal min
    return lo + codes.to(torch.float32) * step


def _prefixed(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """fs_places with each name as a state_dict key prefix ('' for the model itself)."""
    return [(f"{name}." if name else "", m) for name, m in fs_places(model)]


def quantized_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """model.state_dict() with each FS layer's `<prefix>fs` replaced by `<prefix>fs_q` (uint8),
    `<prefix>fs_min` and `<prefix>fs_max` (float32), in the same position."""
    sd = model.state_dict()
    quant: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    done: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
    for prefix, m in _prefixed(model):
        # clone(): a fresh, exactly-sized storage, so torch.save writes 1 byte/element. A
        # shared layer's places get the same tensors, so the export packs them once.
        if id(m) not in done:
            done[id(m)] = tuple(t.clone() for t in quantize_tensor(m.fs))
        quant[prefix + "fs"] = done[id(m)]
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in sd.items():
        if key in quant:
            codes, lo, hi = quant[key]
            base = key[: -len("fs")]
            out[base + "fs_q"], out[base + "fs_min"], out[base + "fs_max"] = codes, lo, hi
        else:
            out[key] = value
    return out


def load_quantized_state_dict(model: nn.Module, sd: dict[str, Tensor],
                              strict: bool = True) -> nn.Module:
    """Load a `quantized_state_dict` into a float model of the same architecture (each fs set
    to its dequantised levels); returns model."""
    sd = OrderedDict(sd)
    for prefix, m in _prefixed(model):
        keys = [prefix + s for s in ("fs_q", "fs_min", "fs_max")]
        if not all(k in sd for k in keys):
            if strict:
                missing = [k for k in keys if k not in sd]
                raise KeyError(f"quantized state dict lacks {missing} for FS layer {prefix!r}")
            continue
        codes, lo, hi = (sd.pop(k) for k in keys)
        sd[prefix + "fs"] = dequantize_tensor(codes, lo, hi).to(m.fs.dtype)
    model.load_state_dict(sd, strict=strict)
    return model


@torch.no_grad()
def quantize_model_(model: nn.Module) -> nn.Module:
    """Snap every FS vector of model in place to its 256 levels; returns model."""
    for _, m in fs_layers(model):
        codes, lo, hi = quantize_tensor(m.fs)
        # copy_ (not .data =) so the version bump invalidates the layer's eval cache.
        m.fs.copy_(dequantize_tensor(codes, lo, hi).to(m.fs.dtype))
    return model
