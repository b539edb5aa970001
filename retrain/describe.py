"""One-line descriptions of a network (a NetSpec's dict or fields) for the run's start lines
and the `--summary` table, in one place."""

from __future__ import annotations

from typing import Any

from genotypes import describe_op_ratios, fs_from_dict

__all__ = ["describe_conversion", "describe_network", "network_head"]


def describe_network(model: str, settings: dict[str, Any],
                     extra: dict[str, Any] | None = None) -> str:
    """A registered network and its settings: 'resnet20 (width 8)'; with `extra` (NetSpec's)
    the width the ratio cap narrowed it from: 'resnet20 (width 11, narrowed from 16 for
    fs.max_ratio 2)'."""
    note = extra or {}
    text = ", ".join(f"{k} {v}" + (f", narrowed from {note['width_from']} for fs.max_ratio "
                                   f"{note['max_ratio']:g}" if k == "width" and "width_from" in note
                                   else "")
                     for k, v in settings.items())
    return f"{model} ({text})" if text else model


def describe_conversion(conversion: dict[str, Any] | None, fitted: float | None = None) -> str:
    """One phrase for a registered network's FS conversion (space.layers.convert.Conversion);
    `fitted`: the ratio a parameter target gave (space.layers.convert.fitted_ratio)."""
    if conversion is None:
        return "plain (no FS)"
    c = conversion
    kind = {"fs": "1D FS", "dfs": "DFS", "fs3d": "3D FS"}[c["mode"]]
    if c["params"] is not None:
        how = (f"one ratio fitted to {c['params']:,} parameters" if fitted is None else
               f"ratio {fitted:.3g}, fitted to {c['params']:,} parameters")
    elif c["policy"] == "paper":
        how = "the paper's K3 per filter count, 1x1 at ratio 8"
    else:
        how = f"ratio {c['ratio']:g}"
    return f"{kind}, {how}" + (f", {c['num_offsets']} offsets" if c["mode"] == "dfs" else "")


def network_head(net: dict[str, Any], fitted: float | None = None) -> tuple[str, bool]:
    """(the table's first line, whether the network has FS layers) of a NetSpec's dict
    (`fitted`: the ratio a parameter target gave)."""
    size = f"input {net['input_size'][0]}x{net['input_size'][1]}"
    if net.get("model", "darts") != "darts":
        return (f"network: {describe_network(net['model'], net['settings'], net.get('extra'))}, "
                f"{net['num_classes']} classes, {size}; convs: "
                f"{describe_conversion(net['conversion'], fitted)}",
                net["conversion"] is not None)
    fs = net["fs"]
    fs_txt = "off (plain DARTS)" if fs is None else (
        f"{'DFS' if fs['dfs'] else 'FS'} ratio {fs['ratio']:g}"
        + (f", {fs['num_offsets']} offsets" if fs["dfs"] else ""))
    per_op = describe_op_ratios(fs_from_dict(fs))
    fs_txt += f" (cell inputs; ops {per_op.removeprefix('per op: ')})" if per_op else ""
    return (f"network: {net['stem']} stem, C={net['init_channels']}, {net['layers']} cells, "
            f"{net['num_classes']} classes, {size}; 1x1 convs: {fs_txt}", fs is not None)
