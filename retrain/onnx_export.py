"""ONNX export of a retrained network, for runtimes other than PyTorch (onnxruntime, and any
runtime that reads standard ONNX at the recorded opset).

Two kinds of file, both with input ``input`` (N, C, H, W float32, N dynamic) and output
``logits`` (N, classes):

* float (``model.onnx``): every FS layer's filters gathered into the plain Conv weight it
  stands for; BatchNorm folded into the convolutions by the exporter's optimiser. Nothing but
  Conv, Relu, Add, Concat, pooling, Gemm: any runtime runs it; its size is the plain network's.
* WQ (``model-wq.onnx``): the FS vectors as uint8 initializers (space.layers.wq's 256 levels), turned
  into conv weights inside the graph: ``DequantizeLinear(codes, step, 0) + min``, then a
  Gather by the window index ``(offsets[k] + j) mod L`` (layout "fs": the file holds L codes
  per layer, so its size follows the compression), or, layout "conv", the gathered codes
  (K*n per layer, 1 byte each: a quarter of the float file, whatever the ratio). space.layers.wq's
  levels are ``min + code * (max - min) / 255``: the zero point is not an integer in general,
  so the minimum is added after a zero-point-0 DequantizeLinear and the levels are exactly
  model-wq.pt's. The conv weights depend on initializers only, so a runtime that folds
  constants computes them once at load; onnxruntime keeps a DequantizeLinear unfolded
  unless its QDQ handling is off (`session_options` turns it off).

Neither graph normalises its input: the dataset's mean and std (and class names, input size,
the network spec) are in the model's metadata (`read_metadata`), as the export records them.

    from retrain.onnx_export import export_onnx
    export_onnx(model, spec, data, "model.onnx")              # float
    export_onnx(model, spec, data, "model-wq.onnx", wq=True)  # 8-bit FS vectors
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from common.evaluate import split_logits
from retrain.model import NetSpec
from space.layers.fs import DFSConv2d
from space.layers.fs_model import fs_places
from space.layers.wq import quantize_tensor

OPSET = 20
INPUT, OUTPUT = "input", "logits"
LAYOUTS = ("fs", "conv")
_PREFIX = "net."  # the wrapper's attribute: initializer names are "net." + state_dict keys


class _Logits(nn.Module):
    """The network's logits alone (a DARTS network returns (logits, auxiliary logits or
    None); the registry's other networks their logits)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return split_logits(self.net(x))[0]


def plain_network(model: nn.Module) -> nn.Module:
    """A copy of a hardened `model` with every FS layer replaced by the nn.Conv2d holding its
    gathered filters (same name, so the same state_dict key `<name>.weight`)."""
    if any(isinstance(m, DFSConv2d) for m in model.modules()):
        raise ValueError("ONNX export needs a hardened model: call space.layers.fs_model.harden_model first")
    net = copy.deepcopy(model).eval()
    done: dict[int, nn.Module] = {}  # a layer shared by several parents: one conv for all
    for name, fs in fs_places(net):
        if id(fs) in done:
            parent, _, attr = name.rpartition(".")
            setattr(net.get_submodule(parent), attr, done[id(fs)])
            continue
        conv = nn.Conv2d(fs.in_channels, fs.out_channels, fs.kernel_size, fs.stride, fs.padding,
                         fs.dilation, fs.groups, bias=fs.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(fs.filters())
            if fs.bias is not None:
                conv.bias.copy_(fs.bias)
        parent, _, attr = name.rpartition(".")
        done[id(fs)] = conv.to(fs.fs.device)
        setattr(net.get_submodule(parent), attr, done[id(fs)])
    return net


def _torch_export(net: nn.Module, spec: NetSpec):
    """The ONNXProgram of `net`'s logits, unoptimised (the caller optimises a copy)."""
    x = torch.zeros(2, spec.in_channels, *spec.input_size)
    # A registered global hook makes every op run its reference forward, layer by layer as
    # declared (space/darts/ops.py), so the exporter sees nn.Conv2d / BatchNorm modules and names
    # their initializers by their state_dict keys instead of tracing the CPU fast paths.
    hook = nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                _Logits(net.cpu().float()), (x,), input_names=[INPUT], output_names=[OUTPUT],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, opset_version=OPSET,
                dynamo=True, optimize=False, verbose=False)
    finally:
        hook.remove()


def _optimize(proto, keep: list[str]):
    """The exporter's optimiser (constant folding, BatchNorm folded into convs) with the
    initializers `keep` held out as graph inputs, so it neither folds nor rescales them."""
    import onnx
    import onnxscript.optimizer

    g = proto.graph
    held = {t.name: t for t in g.initializer if t.name in keep}
    for name, t in held.items():
        g.initializer.remove(t)
        g.input.append(onnx.helper.make_tensor_value_info(name, t.data_type, list(t.dims)))
    proto = onnxscript.optimizer.optimize(proto)
    for inp in [i for i in proto.graph.input if i.name in held]:
        proto.graph.input.remove(inp)
    return proto, held


def _wq_nodes(key: str, layer: nn.Module, layout: str, index_cache: dict[int, str]):
    """(initializers, nodes) that compute the conv weight `key` from the layer's 8-bit FS
    vector (see the module docstring)."""
    from onnx import helper, numpy_helper

    codes, lo, hi = quantize_tensor(layer.fs.detach().float().cpu())
    step = np.array(float((hi - lo) / 255), np.float32)
    shape = np.array(layer._weight_shape(), np.int64)
    b = key.removesuffix(".weight")
    inits = [numpy_helper.from_array(step, f"{b}.fs_scale"),
             numpy_helper.from_array(np.array(0, np.uint8), f"{b}.fs_zero_point"),
             numpy_helper.from_array(np.array(float(lo), np.float32), f"{b}.fs_min"),
             numpy_helper.from_array(shape, f"{b}.weight_shape")]
    dq = [helper.make_node("DequantizeLinear", [f"{b}.fs_q", f"{b}.fs_scale", f"{b}.fs_zero_point"],
                           [f"{b}.fs_step"]),
          helper.make_node("Add", [f"{b}.fs_step", f"{b}.fs_min"], [f"{b}.fs"])]
    if layout == "conv":
        layer._ensure_index()
        gathered = codes.reshape(-1)[layer._index.cpu()].numpy()
        inits.append(numpy_helper.from_array(gathered, f"{b}.fs_q"))
        return inits, dq + [helper.make_node("Reshape", [f"{b}.fs", f"{b}.weight_shape"], [key])]
    # Layout "fs": index[k, j] = (offsets[k] + j) mod L, computed in the graph.
    n, L = layer.n, layer.L
    if n not in index_cache:
        index_cache[n] = f"fs_window_{n}"
        inits.append(numpy_helper.from_array(np.arange(n, dtype=np.int32)[None, :], index_cache[n]))
    narrow = np.int16 if L <= np.iinfo(np.int16).max else np.int32
    offsets = layer.offsets.cpu().numpy().astype(narrow)[:, None]
    inits += [numpy_helper.from_array(codes.numpy(), f"{b}.fs_q"),
              numpy_helper.from_array(offsets, f"{b}.offsets"),
              numpy_helper.from_array(np.array(L, np.int32), f"{b}.fs_length")]
    nodes = dq + [
        helper.make_node("Cast", [f"{b}.offsets"], [f"{b}.offsets32"], to=6),  # int32
        helper.make_node("Add", [f"{b}.offsets32", index_cache[n]], [f"{b}.window"]),
        helper.make_node("Mod", [f"{b}.window", f"{b}.fs_length"], [f"{b}.index"]),
        helper.make_node("Gather", [f"{b}.fs", f"{b}.index"], [f"{b}.filters"]),
        helper.make_node("Reshape", [f"{b}.filters", f"{b}.weight_shape"], [key])]
    return inits, nodes


def build_onnx(model: nn.Module, spec: NetSpec, data: dict[str, Any], wq: bool = False,
               layout: str = "fs", meta: dict[str, Any] | None = None):
    """The checked onnx.ModelProto of a hardened `model` (see the module docstring)."""
    import onnx

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    program = _torch_export(plain_network(model), spec)
    places = {_PREFIX + name + ".weight": m for name, m in fs_places(model)} if wq else {}
    proto, held = _optimize(program.model_proto, list(places))
    # A shared layer's weight is one initializer, named after one of its places.
    layers = {k: m for k, m in places.items() if k in held}
    lacking = {id(m) for m in places.values()} - {id(m) for m in layers.values()}
    if lacking or len(layers) != len({id(m) for m in layers.values()}):
        raise RuntimeError("the exported graph does not hold each FS conv weight once "
                           f"({sorted(set(places) - set(held))[:4]} lacking)")
    inits, nodes, cache = [], [], {}
    for key, layer in layers.items():
        i, n = _wq_nodes(key, layer, layout, cache)
        inits += i
        nodes += n
    g = proto.graph
    g.initializer.extend(inits)
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)  # the weights first: nodes must be in topological order
    # The exporter's per-node debug records (source stacks, module paths) and intermediate
    # shapes take most of a small model's bytes; a runtime needs neither.
    for node in g.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del g.value_info[:]
    del proto.metadata_props[:]
    info = {"weights": "wq8" if wq else "float", "wq_layout": layout if wq else None,
            "opset": OPSET, "normalization": "not in the graph: input = (pixel/255 - mean) / std",
            "mean": list(data.get("mean", [])), "std": list(data.get("std", [])),
            "net": spec.to_dict(), "data": dict(data), "meta": dict(meta or {})}
    for k, v in info.items():
        proto.metadata_props.add(key=f"dfsnet.{k}", value=json.dumps(v))
    proto.producer_name, proto.doc_string = "dfsnet-darts", "DARTS network with FS convolutions"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: nn.Module, spec: NetSpec, data: dict[str, Any], path: str | Path,
                wq: bool = False, layout: str = "fs", meta: dict[str, Any] | None = None) -> int:
    """Write the ONNX file of a hardened `model` (atomically); returns its size in bytes."""
    proto = build_onnx(model, spec, data, wq, layout, meta)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(path)
    return path.stat().st_size


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The `dfsnet.*` metadata of an ONNX file written here (keys without the prefix)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key.removeprefix("dfsnet."): json.loads(p.value)
            for p in proto.metadata_props if p.key.startswith("dfsnet.")}


def session_options(threads: int | None = None):
    """onnxruntime session options: `threads` intra-op threads (None: onnxruntime's choice),
    one inter-op thread, and QDQ handling off so that DequantizeLinear is folded at load."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    return so


def inference_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session of `path` (see session_options)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads),
                                providers=["CPUExecutionProvider"])


class OnnxModule(nn.Module):
    """An onnxruntime session as a CPU module returning (logits, None), like the networks
    here, so that common.evaluate.evaluate evaluates an ONNX file unchanged."""

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        out = self.session.run([OUTPUT], {INPUT: x.detach().float().contiguous().cpu().numpy()})[0]
        return torch.from_numpy(out), None
