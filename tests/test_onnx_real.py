"""Real images: DARTS_V2 at the smoke preset, retrained briefly with --fs off, fs and dfs on a
class-balanced part of ../shared/data/cifar10-subset; the run's model.onnx and the 8-bit
model-wq.onnx (python -m retrain.export) checked in onnxruntime against PyTorch: logits on
real test images within 1e-4 (relative), top-1 on the test split equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from retrain.evaluate import load_test_split
from retrain.export import load_exported_full
from retrain.onnx_export import inference_session, read_metadata

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _evaluate(model: Path, data: Path) -> dict:
    return json.loads(_run("retrain.evaluate", str(model), "--dataset", str(data), "--threads",
                           "1", "--json").stdout)


def _max_rel(pt: Path, ox: Path, data: Path) -> float:
    """max |ort - torch| / max |torch| of the logits on 64 real test images (PyTorch in
    float64, the same weights)."""
    model, _, info = load_exported_full(pt)
    ds = load_test_split(str(data), "data", False, info["data"], 64)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        ref = model.double()(x.double())[0]
    out = inference_session(ox, 1).run(None, {"input": x.numpy()})[0].astype(np.float64)
    return float(np.abs(out - ref.numpy()).max() / ref.abs().max().item())


@pytest.mark.slow
@pytest.mark.parametrize("fs", ["off", "fs", "dfs"])
def test_smoke_networks_in_onnxruntime_on_real_images(cifar_subset, tmp_path, fs):
    out = tmp_path / fs
    # One epoch; DFS keeps learned offsets until the export hardens them (harden_epoch 1).
    _run("retrain", "--genotype", "DARTS_V2", "--dataset", str(cifar_subset), "--preset", "smoke",
         "--epochs", "1", "--threads", "1", "--fs", fs, "--set", "fs.harden_epoch=1",
         "--set", "data.max_images=300", "--set", "data.max_test_images=200", "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
    _, _, info = load_exported_full(out / "model.pt")
    assert read_metadata(out / "model.onnx")["data"] == info["data"]  # normalisation, classes
    assert _max_rel(out / "model.pt", out / "model.onnx", cifar_subset) < 1e-4
    assert m["test_acc_onnx"] == m["test_acc"]
    ev = _evaluate(out / "model.onnx", cifar_subset)
    assert ev["top1"] == m["test_acc"] and ev["images"] == m["test_images"]
    if fs == "off":
        assert not (out / "model-wq.pt").exists() and "model-wq.pt" not in m["file_bytes"]
        return
    _run("retrain.export", str(out), "--onnx", "--wq")
    wq = out / "model-wq.onnx"
    onnx.checker.check_model(str(wq), full_check=True)
    assert wq.stat().st_size < 0.5 * (out / "model.onnx").stat().st_size
    assert _max_rel(out / "model-wq.pt", wq, cifar_subset) < 1e-4
    assert _evaluate(wq, cifar_subset)["top1"] == m["test_acc_wq"]
