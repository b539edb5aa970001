"""Exported models: self-describing files holding a hardened network's weights and nothing else.

An export stores the network spec (genotype, widths, classes, input size, FS settings), the
dataset's normalisation, and the weights *packed*: every tensor flattened into one blob per
dtype plus a manifest of (key, dtype, shape, start). FS layers contribute their FS vector and
offsets (never gathered filters), so the file size follows the compression ratio; packing
avoids torch.save's per-tensor record overhead (~1,650 tensors in a DARTS network), and the
integer offsets are stored in the narrowest integer type that holds them. `model-wq.pt`
holds the same network with 8-bit FS vectors (space.layers.wq).

    model = load_exported("runs/.../model.pt")          # an nn.Module in eval mode

`python -m retrain.export RUN_DIR --onnx [--wq]` writes the network as ONNX (retrain.onnx_cli,
run by this package's __main__.py, so that the command's module and this library are two).
"""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from common.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from common.errors import UserError
from retrain.model import NetSpec, build_network
from space.layers.fs import DFSConv2d
from space.layers.wq import load_quantized_state_dict, quantized_state_dict

KIND = "retrain-model"
_NARROW = (torch.int8, torch.int16, torch.int32)


def _narrow_int(t: torch.Tensor) -> torch.Tensor:
    """An int64 tensor in the narrowest integer dtype that holds its values exactly."""
    if t.dtype != torch.int64 or t.numel() == 0:
        return t
    lo, hi = int(t.min()), int(t.max())
    for dt in _NARROW:
        info = torch.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return t.to(dt)
    return t


def pack_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """{manifest: [[key, stored dtype, original dtype, shape, start], ...], blobs: {dtype: 1-D}}.

    A tensor under several keys (a shared layer, e.g. ShaRDNet's one conv at every position:
    one key per position, one tensor) is packed once: its later keys point at the same start,
    and `unpack_state_dict` gives them back as one tensor.

    `manifest_z` holds the manifest as zlib-compressed JSON bytes (a uint8 tensor): the ~2,000
    repetitive key names would otherwise take ~2% of a float export and ~6% of an 8-bit one."""
    manifest: list[list[Any]] = []
    parts: dict[str, list[torch.Tensor]] = {}
    sizes: dict[str, int] = {}
    packed_at: dict[tuple, tuple[str, int]] = {}  # the same memory -> (stored dtype, start)
    for key, t in sd.items():
        same = (t.device, t.data_ptr(), tuple(t.shape), t.stride(), t.dtype)
        t = t.detach().cpu()
        orig = str(t.dtype).removeprefix("torch.")
        if t.numel() and same in packed_at:
            stored, start = packed_at[same]
            manifest.append([key, stored, orig, list(t.shape), start])
            continue
        stored_t = _narrow_int(t)
        stored = str(stored_t.dtype).removeprefix("torch.")
        start = sizes.get(stored, 0)
        packed_at[same] = (stored, start)
        manifest.append([key, stored, orig, list(t.shape), start])
        parts.setdefault(stored, []).append(stored_t.reshape(-1))
        sizes[stored] = start + t.numel()
    blobs = {dt: torch.cat(ts) if ts else torch.empty(0) for dt, ts in parts.items()}
    z = zlib.compress(json.dumps(manifest, separators=(",", ":")).encode(), 9)
    return {"manifest_z": torch.frombuffer(bytearray(z), dtype=torch.uint8), "blobs": blobs}


def manifest_of(packed: dict[str, Any]) -> list[list[Any]]:
    return json.loads(zlib.decompress(packed["manifest_z"].numpy().tobytes()))


def unpack_state_dict(packed: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The inverse of `pack_state_dict` (tensors are views of the blobs, in original dtypes;
    keys packed once, a shared tensor's, get one tensor object)."""
    out: dict[str, torch.Tensor] = {}
    made: dict[tuple, torch.Tensor] = {}
    for key, stored, orig, shape, start in manifest_of(packed):
        where = (stored, orig, start, tuple(shape))
        if where in made and made[where].numel():
            out[key] = made[where]
            continue
        blob = packed["blobs"][stored]
        n = 1
        for s in shape:
            n *= int(s)
        t = blob[start:start + n].view(*shape) if shape else blob[start:start + n].reshape(())
        out[key] = made[where] = t.to(getattr(torch, orig))
    return out


def export_payload(model: nn.Module, spec: NetSpec, data: dict[str, Any], wq: bool,
                   meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `save_exported` writes for a hardened `model` (its auxiliary head is dropped:
    inference never uses it)."""
    if any(isinstance(m, DFSConv2d) for m in model.modules()):
        raise ValueError("export needs a hardened model: call space.layers.fs_model.harden_model first")
    if wq:
        sd = quantized_state_dict(model)
    else:
        sd = model.state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("auxiliary_head.")}
    net = spec.to_dict()
    # Offsets are fixed (hardened) in every export.
    if not spec.is_darts:
        if spec.has_dfs:
            net["conversion"] = {**net["conversion"], "mode": "fs"}
    else:
        net["auxiliary"] = False
        if net["fs"] is not None:
            net["fs"]["dfs"] = False
    return {"net": net, "data": dict(data), "weights": "wq8" if wq else "float",
            "packed": pack_state_dict(sd), "meta": dict(meta or {})}


def save_exported(model: nn.Module, spec: NetSpec, data: dict[str, Any], path: Path,
                  wq: bool = False, meta: dict[str, Any] | None = None) -> int:
    """Write the export atomically; returns its size in bytes."""
    save_checkpoint(export_payload(model, spec, data, wq, meta), Path(path), KIND)
    return Path(path).stat().st_size


def exported_size(model: nn.Module, spec: NetSpec, data: dict[str, Any], wq: bool = False,
                  meta: dict[str, Any] | None = None) -> int:
    """Bytes `save_exported(model, spec, data, wq=wq, meta=meta)` writes, serialised in memory
    the same way (nothing written). Equal to the file's size when `data` and `meta` are the
    run's and `model` holds the run's integer buffers (see retrain.summary.summarize)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "kind": KIND, **export_payload(model, spec, data, wq, meta)}, buf)
    return buf.tell()


def _rebuild(state: dict[str, Any], path: Path) -> tuple[nn.Module, NetSpec]:
    try:
        spec = NetSpec.from_dict(state["net"])
        model = build_network(spec)
        sd = unpack_state_dict(state["packed"])
        if state.get("weights") == "wq8":
            load_quantized_state_dict(model, sd)
        else:
            model.load_state_dict(sd)
    except UserError:
        raise
    except Exception as e:  # a DFSNet-DARTS file, but not an intact export
        raise UserError(f"{path} is not a usable exported model ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160] if str(e) else ''}); export it again") from None
    return model.eval(), spec


def load_exported_full(path: str | Path) -> tuple[nn.Module, NetSpec, dict[str, Any]]:
    """(model in eval mode, its NetSpec, the file's data/meta dict) from an exported file."""
    path = Path(path)
    state = load_checkpoint(path)
    if state.get("kind") != KIND:
        what = state.get("kind")
        raise UserError(f"{path} is a {what!r} checkpoint, not an exported model; give the "
                        "model.pt or model-wq.pt of a retrain run")
    model, spec = _rebuild(state, path)
    info = {"data": state.get("data", {}), "meta": state.get("meta", {}),
            "weights": state.get("weights", "float")}
    return model, spec, info


def load_exported(path: str | Path) -> nn.Module:
    """The network an exported file (model.pt or model-wq.pt) holds, in eval mode; it
    returns (logits, None) like every network here."""
    return load_exported_full(path)[0]
