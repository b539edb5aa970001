"""ONNX export (retrain.onnx_export, python -m retrain.export) on a tiny network: the graph
passes onnx.checker, onnxruntime's logits match PyTorch's (float64 reference), the 8-bit
file holds the FS codes and its size follows the compression, and `python -m retrain.evaluate`
evaluates an ONNX file as it evaluates the .pt it came from."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from cli_exits import one_line_exit
from onnx import numpy_helper
from test_retrain_cli import make_folder

from genotypes import ZOO, FSSpec
from retrain.evaluate import main as evaluate_main
from retrain.export import save_exported
from retrain.model import NetSpec, build_network
from retrain.onnx_cli import main as export_main
from retrain.onnx_export import OPSET, build_onnx, read_metadata, session_options
from space.layers.fs_model import fs_layers, harden_model
from space.layers.wq import quantize_model_

DATA = {"name": "tiny", "num_classes": 3, "input_size": [12, 12], "mean": [0.4, 0.5, 0.6],
        "std": [0.2, 0.25, 0.3], "classes": ["a", "b", "c"]}


def _net(fs: FSSpec | None, seed: int = 0):
    """A hardened tiny DARTS_V2 network with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    spec = NetSpec(ZOO["DARTS_V2"], 8, 3, 3, (12, 12), auxiliary=False, fs=fs)
    net = build_network(spec).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 12, 12) * 2 + 0.5)
    return harden_model(net).eval().double(), spec


def _ort_logits(proto, x: torch.Tensor) -> np.ndarray:
    """onnxruntime's logits for a float32 copy of x (the session the evaluator opens)."""
    sess = ort.InferenceSession(proto.SerializeToString(), session_options(1),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.float().numpy()})[0].astype(np.float64)


def _rel(out: np.ndarray, ref: torch.Tensor) -> float:
    return float(np.abs(out - ref.numpy()).max() / ref.abs().max().item())


@pytest.mark.parametrize("fs", [None, FSSpec(2.0, True, 4)], ids=["off", "dfs"])
def test_float_export_matches_pytorch_with_a_dynamic_batch(fs):
    net, spec = _net(fs)
    proto = build_onnx(net.float(), spec, DATA, meta={"batch_size": 4})
    g = proto.graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["logits"]
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET
    # Plain ops only: the FS layers are Conv weights, BatchNorm folded into them.
    ops = {n.op_type for n in g.node}
    assert "Gather" not in ops and "DequantizeLinear" not in ops and "Conv" in ops
    md = read_metadata_proto(proto)
    assert md["mean"] == DATA["mean"] and md["std"] == DATA["std"] and md["opset"] == OPSET
    assert md["weights"] == "float" and NetSpec.from_dict(md["net"]).to_dict() == spec.to_dict()
    for batch in (1, 5):  # float64 PyTorch is the reference
        x = torch.randn(batch, 3, 12, 12, dtype=torch.float64)
        ref = net.double()(x)[0].detach()
        assert _rel(_ort_logits(proto, x), ref) < 1e-4


def read_metadata_proto(proto) -> dict:
    return {p.key.removeprefix("dfsnet."): json.loads(p.value) for p in proto.metadata_props
            if p.key.startswith("dfsnet.")}


@pytest.mark.parametrize("layout", ["fs", "conv"])
def test_wq_export_holds_the_8bit_codes_and_computes_model_wq(layout):
    net, spec = _net(FSSpec(4.0, True, 4), seed=1)
    net = net.float()
    proto = build_onnx(net, spec, DATA, wq=True, layout=layout)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    layers = fs_layers(net)
    for name, m in layers:
        key = f"net.{name}"
        assert f"{key}.weight" not in inits  # computed in the graph, not stored
        codes = inits[f"{key}.fs_q"]
        assert codes.dtype == np.uint8
        assert codes.size == (m.L if layout == "fs" else m.K * m.n)
        # Independent check of the levels: min + code * step reproduces every FS element to
        # within half a step (the nearest of 256 levels between min and max).
        step, lo = float(inits[f"{key}.fs_scale"]), float(inits[f"{key}.fs_min"])
        assert int(inits[f"{key}.fs_zero_point"]) == 0
        fs = m.fs.detach().double().numpy()
        assert lo == pytest.approx(fs.min()) and step == pytest.approx((fs.max() - fs.min()) / 255)
        if layout == "fs":
            assert np.abs(lo + codes.astype(np.float64) * step - fs).max() <= step / 2 + 1e-6
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("DequantizeLinear") == len(layers)
    float_bytes = sum(a.nbytes for a in inits.values() if a.dtype == np.float32)
    code_bytes = sum(inits[f"net.{n}.fs_q"].nbytes for n, _ in layers)
    assert code_bytes * 4 > float_bytes / 10  # the FS codes are a real part of the file
    # onnxruntime computes model-wq.pt's network: the 8-bit levels (reference in float64).
    ref_net = quantize_model_(copy.deepcopy(net)).double()
    x = torch.randn(6, 3, 12, 12, dtype=torch.float64)
    ref = ref_net(x)[0].detach()
    out = _ort_logits(proto, x)
    assert _rel(out, ref) < 1e-4 and (out.argmax(1) == ref.numpy().argmax(1)).all()


def _exported_run(tmp_path: Path, fs: FSSpec | None, folder: Path) -> Path:
    net, spec = _net(fs)
    run = tmp_path / "run"
    run.mkdir()
    data = {**DATA, "name": str(folder)}
    save_exported(net.float(), spec, data, run / "model.pt", meta={"batch_size": 4})
    if fs is not None:
        save_exported(net.float(), spec, data, run / "model-wq.pt", wq=True, meta={"batch_size": 4})
    return run


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("onnx"))


@pytest.mark.slow
def test_cli_export_and_onnx_evaluation_agree_with_the_pt_files(tmp_path, folder, capsys):
    run = _exported_run(tmp_path, FSSpec(2.0, True, 4), folder)
    assert export_main([str(run), "--onnx", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["onnx"] == str(run / "model.onnx") and res["max_rel_diff"] < 1e-4
    assert export_main([str(run / "model-wq.pt"), "--onnx"]) == 0  # --wq implied
    assert "model-wq.onnx" in capsys.readouterr().out
    assert read_metadata(run / "model-wq.onnx")["weights"] == "wq8"
    onnx.checker.check_model(str(run / "model-wq.onnx"), full_check=True)
    figures = {}
    for name in ("model.pt", "model.onnx", "model-wq.pt", "model-wq.onnx"):
        assert evaluate_main([str(run / name), "--dataset", str(folder), "--json"]) == 0
        figures[name] = json.loads(capsys.readouterr().out)
    for pt, ox in (("model.pt", "model.onnx"), ("model-wq.pt", "model-wq.onnx")):
        assert figures[ox]["images"] == figures[pt]["images"] == 12
        assert figures[ox]["top1"] == figures[pt]["top1"]
        assert figures[ox]["loss"] == pytest.approx(figures[pt]["loss"], rel=1e-4)
    assert figures["model.onnx"]["weights"] == "ONNX float"


def test_cli_errors_are_one_line(tmp_path, folder, capsys):
    run = _exported_run(tmp_path, None, folder)
    assert "--onnx" in one_line_exit(export_main, [str(run)], capsys)
    assert "no FS layers" in one_line_exit(export_main, [str(run), "--onnx", "--wq"], capsys)
    assert "neither" in one_line_exit(export_main, [str(tmp_path / "nope"), "--onnx"], capsys)
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    err = one_line_exit(evaluate_main, [str(tmp_path / "bad.onnx"), "--dataset", str(folder)], capsys)
    assert "not an ONNX file written by" in err
