"""The `--summary` report: parameters, FS compression, MACs and model size, per cell and total.

Counts follow DARTS: the auxiliary head is left out of the totals (it is reported on its own
line, and never exported). MACs are those of the convolutions and matrix products of one
eval-mode forward on one input (see count_macs); an FS layer counts the MACs of the
convolution it stands for. Sizes are the exported bytes (packed float32 / 8-bit WQ).

The model.pt / model-wq.pt sizes are the export serialised in memory. They equal the files a
run writes when the summary knows what the export records besides the weights: the
dataset's record (class names, normalisation), the run's settings, and the BatchNorm step
counters (integers stored in the narrowest type that holds them); without the dataset they
are estimates, and say so.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from retrain.export import exported_size, manifest_of, pack_state_dict
from retrain.model import NetSpec, build_network
from space.layers.convert import fitted_ratio
from space.layers.fs_model import harden_model
from space.layers.fused import fast_mode
from space.layers.report import param_report
from space.layers.wq import quantized_state_dict
from space.models import get_model
from space.models.shardnet import conv_weights


def param_stats(module: nn.Module, hardened: nn.Module,
                seen: tuple[set[int], set[int]] | None = None) -> dict[str, float]:
    """Counts of `module` (as trained) and of `hardened` (the same part as exported), from
    space.layers.report.param_report, the project's one definition of these figures: params (all
    trained parameters, DFS offset logits included), fs (FS vector elements), offset_logits,
    effective (parameters exported), effective_wq (FS elements counting 1/4: 8-bit; a
    fraction where the FS count is not a multiple of 4), weight_bytes_wq (the exported weights'
    bytes with 8-bit FS vectors: 1 byte per FS element, 4 per other parameter; 4 x
    effective_wq, an integer), uncompressed (every FS layer as the plain conv it stands for;
    = the --fs off count), compression and compression_wq (uncompressed / effective[_wq]).
    `seen`: ids of the parameters of `module` and of `hardened` that earlier rows counted (a
    shared layer counts in its first row only); this row's are added to them."""
    skip, skip_h = seen if seen is not None else (set(), set())
    r, h = param_report(module, skip=skip), param_report(hardened, skip=skip_h)
    if seen is not None:
        skip.update(id(p) for p in module.parameters())
        skip_h.update(id(p) for p in hardened.parameters())
    return {"params": r["total"], "fs": r["fs"], "offset_logits": r["offset_logits"],
            "effective": h["total"], "effective_wq": h["effective_wq"],
            "weight_bytes_wq": 4 * (h["total"] - h["fs"]) + h["fs"],
            "uncompressed": h["uncompressed"], "compression": h["compression"],
            "compression_wq": h["compression_wq"]}


def count_macs(model: nn.Module, input_size: tuple[int, int], in_channels: int = 3) -> dict[str, int]:
    """MACs of one eval-mode forward on a single input, per module: qualified name -> MACs of
    that module and its submodules ('' is the whole model).

    Counted at the operator level by torch's FlopCounterMode (convolutions and matrix
    products; MACs = FLOPs / 2) over the plain forward (space.layers.fused.fast_mode off), which
    calls every layer as a module, so every layer's MACs are attributed to it; the fast
    forward computes the same convolutions, so the totals are its too. An FS layer counts
    the convolution it runs, i.e. the plain conv it stands for; its cached filters cost no
    MACs."""
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        with torch.no_grad(), fast_mode(model, False), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_channels, *input_size, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
    root = type(model).__name__
    macs = {}
    for name, ops in counter.get_flop_counts().items():
        if name == root or name.startswith(root + "."):
            macs[name[len(root) + 1:]] = sum(ops.values()) // 2
    return macs


def _part_of(key: str) -> str:
    """The table row a parameter/layer name belongs to: stem(s), cells.N, classifier, aux."""
    head = key.split(".")[0]
    if head == "cells":
        return ".".join(key.split(".")[:2])
    return {"stem0": "stem", "stem1": "stem"}.get(head, head)


def _bytes_by_part(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    packed = pack_state_dict(sd)
    blobs = packed["blobs"]
    out: dict[str, int] = {}
    packed_once: set[tuple[str, int]] = set()
    for key, stored, _, shape, start in manifest_of(packed):
        if (stored, start) in packed_once:  # a shared tensor's later keys: packed once
            continue
        packed_once.add((stored, start))
        n = 1
        for s in shape:
            n *= int(s)
        out[_part_of(key)] = out.get(_part_of(key), 0) + n * blobs[stored].element_size()
    return out


def _set_batch_counters(model: nn.Module, steps: int) -> None:
    """Give every BatchNorm the step counter training leaves it with (one per step)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_batches_tracked is not None:
            m.num_batches_tracked.fill_(int(steps))


def _row_groups(spec: NetSpec, model: nn.Module) -> dict[str, list[str]]:
    """The table's rows, from the network's own structure: for the DARTS network its stems,
    each cell and the classifier; for any other network each top-level child that holds
    parameters (e.g. conv1, bn1, layer1..3, fc), in order."""
    if not spec.is_darts:
        return {n: [n] for n, m in model.named_children() if any(True for _ in m.parameters())}
    groups = {"stem": [n for n in ("stem", "stem0", "stem1") if hasattr(model, n)]}
    groups.update({f"cells.{i}": [f"cells.{i}"] for i in range(len(model.cells))})
    groups["classifier"] = ["classifier"]
    return groups


def _kind(m: nn.Module) -> str:
    """A short description of a row's module: its class, or a Sequential's blocks."""
    if isinstance(m, nn.Sequential) and len(m):
        kinds = {type(b).__name__ for b in m}
        return f"{len(m)} x {kinds.pop()}" if len(kinds) == 1 else f"{len(m)} modules"
    return type(m).__name__


def summarize(spec: NetSpec, model: nn.Module | None = None, data: dict[str, Any] | None = None,
              meta: dict[str, Any] | None = None, train_steps: int | None = None) -> dict[str, Any]:
    """The report as a dict: {network, rows: [...], auxiliary_head, totals}.

    `data` (retrain.setup.data_meta), `meta` (retrain.setup.export_meta) and `train_steps`
    (the optimizer steps of the run) make totals' file_bytes / file_bytes_wq exact
    (`file_bytes_exact`); without `data` they leave out the dataset's record. A pruned
    network's compression counts against the network before pruning; a network fs.max_ratio
    narrowed adds `unnarrowed` (the plain network at the width asked for) and
    `compression_unnarrowed` (that over the effective count)."""
    model = build_network(spec) if model is None else model
    # Sizes are those of the export, which is always hardened and has no auxiliary head.
    hard = harden_model(copy.deepcopy(model)).eval()
    if train_steps is not None:
        _set_batch_counters(hard, train_steps)
    exact = data is not None
    data = data if exact else {"name": "summary", "mean": [0.0], "std": [1.0]}
    sizes = _bytes_by_part(hard.state_dict())
    sizes_wq = _bytes_by_part(quantized_state_dict(hard))
    macs = count_macs(model, spec.input_size, spec.in_channels)
    groups = _row_groups(spec, model)
    rows = []
    seen: tuple[set[int], set[int]] = (set(), set())
    for part, names in groups.items():
        row: dict[str, Any] = {"part": part}
        if part.startswith("cells."):
            cell = model.get_submodule(part)
            row["type"] = f"{'reduce' if cell.reduction else 'normal'} C={cell.C}"
        elif not spec.is_darts:
            row["type"] = _kind(model.get_submodule(part))
        row.update(param_stats(nn.ModuleList(model.get_submodule(n) for n in names),
                               nn.ModuleList(hard.get_submodule(n) for n in names), seen))
        row["macs"] = sum(macs.get(n, 0) for n in names)
        row["bytes"] = sizes.get(part, 0)
        row["bytes_wq"] = sizes_wq.get(part, 0)
        rows.append(row)
    # Totals over everything but the auxiliary head (DARTS's count).
    def body(net: nn.Module) -> nn.Module:
        return nn.ModuleList(m for n, m in net.named_children() if n != "auxiliary_head")

    totals = param_stats(body(model), body(hard))
    totals["macs"] = sum(r["macs"] for r in rows)
    totals["bytes"] = sum(r["bytes"] for r in rows)
    totals["bytes_wq"] = sum(r["bytes_wq"] for r in rows)
    totals["file_bytes"] = exported_size(hard, spec, data, wq=False, meta=meta)
    # A --fs off network has no FS vectors to quantise: nothing writes a WQ file for it.
    totals["file_bytes_wq"] = (None if not spec.has_fs
                               else exported_size(hard, spec, data, wq=True, meta=meta))
    totals["file_bytes_exact"] = exact
    if spec.pruned:  # compression against the network before its channels were pruned
        full = param_report(build_network(dataclasses.replace(spec, pruned=None)))["total"]
        totals.update(uncompressed=full, compression=full / totals["effective"],
                      compression_wq=full / totals["effective_wq"])
    if "width_from" in spec.extra:  # narrowed for fs.max_ratio: also against the width asked for
        asked = dataclasses.replace(spec, settings={**spec.settings, "width": spec.extra["width_from"]},
                                    conversion=None, extra={})
        full = param_report(build_network(asked))["total"]
        totals.update(unnarrowed=full, compression_unnarrowed=full / totals["effective"])
    if not spec.is_darts:
        # The FSNet papers' tables count BatchNorm's running mean and variance as parameters.
        stats = sum(m.running_mean.numel() + m.running_var.numel() for m in hard.modules()
                    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None)
        totals["bn_statistics"] = stats
        totals["papers_count"] = totals["effective"] + stats
        totals["papers_count_wq"] = totals["effective_wq"] + stats
    aux = None
    if hasattr(model, "auxiliary_head"):
        aux = {"part": "auxiliary_head", **param_stats(model.auxiliary_head, hard.auxiliary_head)}
    if hasattr(model, "unshared"):  # a shared-filter network (space/models/shardnet.py)
        totals.update(sharing_stats(spec, model))
    # The ratio a parameter target fitted: a figure of the built network, beside its spec.
    fitted = fitted_ratio(model) if (spec.conversion or {}).get("params") is not None else None
    return {"network": spec.to_dict(), "fitted_ratio": fitted, "rows": rows,
            "auxiliary_head": aux, "totals": totals}


def sharing_stats(spec: NetSpec, model: nn.Module) -> dict[str, Any]:
    """|W_conv| (conv weights and biases, each shared tensor once), that of the unshared
    counterpart the network names (`model.unshared`: a registered name and settings; None:
    the network is its own), and C, their ratio: ShaRDNet's compression factor."""
    w_conv = conv_weights(model)
    if model.unshared is None:
        name, w_unshared = spec.model, w_conv
    else:
        name, settings = model.unshared
        other = get_model(name, spec.num_classes, spec.in_channels, spec.input_size, **settings)
        w_unshared = conv_weights(other)
        name += "".join(f" {k}={v}" for k, v in settings.items())
    return {"w_conv": w_conv, "unshared": name, "w_conv_unshared": w_unshared,
            "sharing_compression": w_unshared / w_conv}
