"""Parameter accounting for networks with FS/DFS layers (what the model stores, not what it
gathers), with and without 8-bit FS quantisation (FSNet-WQ)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from space.layers.fs import DFSConv2d
from space.layers.fs_model import fs_layers

__all__ = ["param_report", "size_bytes"]


def _num(x: float) -> int | float:
    """An int when integral, so hand counts compare with ==."""
    return int(x) if float(x).is_integer() else float(x)


def param_report(model: nn.Module, wq: bool = False,
                 skip: set[int] | None = None) -> dict[str, int | float]:
    """Parameter counts of `model` (each shared parameter once; parameters whose id is in
    `skip` left out: a table's row leaves out what an earlier row counted).

    Keys: total (all stored parameters), fs (FS vector elements), fs_bias (biases of FS/DFS
    layers), offset_logits (DFS logits), plain_conv (nn.Conv2d weights + biases), other
    (BN, Linear, ...; total = fs + fs_bias + offset_logits + plain_conv + other),
    effective_wq (total with each FS element counting 1/4: 8-bit instead of 32-bit),
    effective (effective_wq if wq else total), uncompressed (every FS layer as an nn.Conv2d:
    K*n instead of L, offset logits dropped), compression (uncompressed / total) and
    compression_wq (uncompressed / effective_wq).
    """
    params = {id(p): p.numel() for p in model.parameters() if id(p) not in (skip or ())}
    total = sum(params.values())
    fs_ids: dict[int, int] = {}  # fs parameter -> K*n of its layer
    bias_ids: set[int] = set()
    logit_ids: set[int] = set()
    for _, m in fs_layers(model):
        fs_ids[id(m.fs)] = m.K * m.n
        if m.bias is not None:
            bias_ids.add(id(m.bias))
        if isinstance(m, DFSConv2d):
            logit_ids.add(id(m.offset_logits))
    conv_ids = {id(p) for m in model.modules() if isinstance(m, nn.Conv2d)
                for p in m.parameters(recurse=False)}

    def count(ids: set[int] | dict[int, int]) -> int:
        return sum(params[i] for i in ids if i in params)

    fs, fs_bias, logits = count(fs_ids), count(bias_ids), count(logit_ids)
    plain = count(conv_ids - set(fs_ids) - bias_ids - logit_ids)
    other = total - fs - fs_bias - logits - plain
    effective_wq = total - fs + fs / 4
    uncompressed = total - fs - logits + sum(kn for i, kn in fs_ids.items() if i in params)
    report = {
        "total": total, "fs": fs, "fs_bias": fs_bias, "offset_logits": logits,
        "plain_conv": plain, "other": other,
        "effective": effective_wq if wq else total, "effective_wq": effective_wq,
        "uncompressed": uncompressed,
        "compression": uncompressed / total if total else 1.0,
        "compression_wq": uncompressed / effective_wq if effective_wq else 1.0,
    }
    return {k: _num(v) for k, v in report.items()}


def size_bytes(model_or_state_dict: nn.Module | Mapping) -> int:
    """Bytes of the tensors as stored: a module's state_dict (parameters and persistent
    buffers), or any (nested) mapping/list of tensors such as a quantized state dict. A
    tensor reachable twice (tied weights) counts once."""
    obj = model_or_state_dict
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    seen: dict[tuple, int] = {}

    def walk(o: object) -> None:
        if isinstance(o, torch.Tensor):
            seen[(o.data_ptr(), o.numel(), o.dtype)] = o.numel() * o.element_size()
        elif isinstance(o, Mapping):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return sum(seen.values())
