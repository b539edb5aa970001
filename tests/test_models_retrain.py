"""Registered networks through the retrain pipeline: the rebuild record, the exported files
(float, 8-bit WQ, ONNX in onnxruntime), `--model list` / `--summary`, the one-line errors,
and a short training run on real images that resumes exactly."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from cli_exits import one_line_exit
from test_onnx_export import DATA, _rel

from genotypes import ZOO, to_dict
from retrain.cli import main
from retrain.export import load_exported_full, save_exported
from retrain.model import NetSpec, build_network
from retrain.onnx_export import build_onnx, session_options
from space.layers.fs3d import FS3dConv2d
from space.layers.fs_model import harden_model
from space.layers.wq import quantize_model_

CONVERSIONS = {
    "dfs": {"mode": "dfs", "ratio": 4.0, "policy": "ratio", "params": None, "num_offsets": 4,
            "grad_reduce": "mean"},
    "fs3d": {"mode": "fs3d", "ratio": None, "policy": "paper", "params": None,
             "num_offsets": 4, "grad_reduce": "mean"},
}


def _trained_like(kind: str, seed: int = 0):
    """A hardened ResNet-8 (width 8) converted as `kind`, with non-trivial BN statistics."""
    torch.manual_seed(seed)
    spec = NetSpec(None, 0, 0, 3, (12, 12), model="resnet8", settings={"width": 8},
                   conversion=CONVERSIONS[kind])
    net = build_network(spec).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 12, 12) * 2 + 0.5)
    return harden_model(net).eval(), spec


def test_the_rebuild_record_names_the_network_and_old_records_still_read():
    _, spec = _trained_like("dfs")
    d = spec.to_dict()
    assert d["model"] == "resnet8" and d["settings"] == {"width": 8} and "genotype" not in d
    again = NetSpec.from_dict(json.loads(json.dumps(d)))
    assert again.to_dict() == d
    assert list(build_network(again).state_dict()) == list(build_network(spec).state_dict())
    old = NetSpec.from_dict({"genotype": to_dict(ZOO["DARTS_V2"]), "init_channels": 8, "layers": 3,
                             "num_classes": 10, "input_size": [32, 32]})
    assert old.is_darts and old.model == "darts"


@pytest.mark.parametrize("kind", ["dfs", "fs3d"])
def test_float_and_wq_files_reload_to_the_same_network(tmp_path, kind):
    net, spec = _trained_like(kind)
    x = torch.randn(4, 3, 12, 12)
    save_exported(net, spec, DATA, tmp_path / "model.pt")
    save_exported(net, spec, DATA, tmp_path / "model-wq.pt", wq=True)
    loaded, lspec, _ = load_exported_full(tmp_path / "model.pt")
    assert lspec.conversion["mode"] == ("fs" if kind == "dfs" else "fs3d")  # hardened
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    wq, _, _ = load_exported_full(tmp_path / "model-wq.pt")
    torch.testing.assert_close(wq(x), quantize_model_(copy.deepcopy(net))(x), rtol=0, atol=0)
    if kind == "fs3d":
        assert any(isinstance(m, FS3dConv2d) for m in loaded.modules())
    # The 8-bit file stores about a byte per FS element instead of four.
    assert (tmp_path / "model-wq.pt").stat().st_size < 0.5 * (tmp_path / "model.pt").stat().st_size


@pytest.mark.parametrize("kind", ["dfs", "fs3d"])
def test_onnx_export_of_a_converted_network_matches_pytorch(kind):
    net, spec = _trained_like(kind, seed=1)
    proto = build_onnx(net, spec, DATA)
    assert "Gather" not in {n.op_type for n in proto.graph.node}  # gathered convs
    sess = ort.InferenceSession(proto.SerializeToString(), session_options(1),
                                providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 12, 12, dtype=torch.float64)
    ref = net.double()(x).detach()
    out = sess.run(None, {"input": x.float().numpy()})[0].astype(np.float64)
    assert _rel(out, ref) < 1e-4


def test_model_list_and_summary_json(capsys):
    assert main(["--model", "list"]) == 0
    out = capsys.readouterr().out
    assert "resnet20        269,722" in out and "tv:<name>" in out and "darts" in out
    assert main(["--model", "resnet20", "--fs", "fs", "--ratio", "4", "--summary", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    t = report["totals"]
    assert t["effective"] == 68_950 and t["uncompressed"] == 269_722
    assert [r["part"] for r in report["rows"]] == ["conv1", "bn1", "layer1", "layer2", "layer3",
                                                    "fc"]
    assert sum(r["params"] for r in report["rows"]) == t["params"]
    assert main(["--model", "resnet20", "--fs", "off", "--set", "model.width=8", "--summary"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("network: resnet20 (width 8), 10 classes, input 32x32; convs: plain")
    assert "parameters 68,050; FS 0" in table and "bytes WQ" not in table
    # A parameter target names the ratio it fitted (3.94 for ResNet-20 at 70k).
    assert main(["--model", "resnet20", "--fs", "fs", "--set", "fs.params=70k", "--summary",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fitted_ratio"] == pytest.approx(3.94, abs=0.005)
    assert main(["--model", "resnet20", "--fs", "fs", "--set", "fs.params=70k", "--summary"]) == 0
    assert "convs: 1D FS, ratio 3.94, fitted to 70,000 parameters" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "resnet21", "--summary"], r"unknown model 'resnet21'; `--model list` shows"),
    (["--model", "tv:nosuch", "--summary"], r"unknown torchvision model 'nosuch'"),
    (["--model", "resnet20", "--genotype", "DARTS_V2", "--summary"], r"not both"),
    (["--genotype", "DARTS_V2", "--fs", "fs3d", "--summary"],
     r"3D FS, fs.policy, fs.params and fs.max_ratio"),
    (["--genotype", "DARTS_V2", "--set", "model.width=8", "--summary"],
     r"model.width applies to a --model network"),
    (["--model", "resnet20", "--set", "model.growth=8", "--summary"],
     r"model.growth does not apply to resnet20"),
    (["--model", "resnet20", "--fs", "fs", "--ratio", "100", "--summary"],
     r"ratio 100 is above every layer's filter count \(at most 64\)"),
    (["--model", "resnet20", "--fs", "fs", "--fs-policy", "paper", "--summary"],
     r"the paper policy sets 3D FS layers"),
    (["--model", "resnet20", "--fs", "fs", "--set", "fs.params=1k", "--summary"],
     r"below this network's smallest FS form"),
    (["--model", "resnet20", "--fs", "fs3d", "--fs-policy", "paper", "--set",
      "model.width=7", "--summary"], r"no K3 of the paper's table divides its 7 filters"),
])
def test_bad_network_choices_are_one_line(argv, message, capsys):
    err = one_line_exit(main, argv, capsys)
    assert __import__("re").search(message, err), err


@pytest.mark.slow
def test_a_converted_resnet_trains_on_real_images_and_resumes_exactly(tmp_path, cifar_subset):
    """Four epochs straight, against a run killed after its second epoch and resumed: the
    same log and final weights (the DFS layers harden at epoch 3, after the resume)."""
    import subprocess

    from test_retrain_resume import _kill_after, assert_same_run

    base = [sys.executable, "-m", "retrain", "--model", "resnet8", "--set", "model.width=8",
            "--fs", "dfs", "--ratio", "2", "--preset", "cnn-subset", "--dataset",
            str(cifar_subset), "--threads", "1", "--epochs", "4", "--set",
            "data.max_images=400", "--set", "data.max_test_images=200", "--set",
            "export.onnx=false", "--set", "fs.harden_epoch=3"]
    full, part = tmp_path / "full", tmp_path / "part"
    subprocess.run([*base, "--out", str(full)], check=True, capture_output=True)
    _kill_after(part, [*base, "--out", str(part)], 2)
    subprocess.run([sys.executable, "-m", "retrain", "--resume", str(part), "--threads", "1"],
                   check=True, capture_output=True)
    log = assert_same_run(full, part, 4)
    assert log[-1]["hardened"] and log[-1]["train_acc"] > 15.0  # chance is 10
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["counts"]["effective"] < metrics["counts"]["uncompressed"]


def test_a_study_reads_a_converted_networks_run_as_an_fs_arm():
    from study.layout import figures

    metrics = {"test_acc": 60.0, "test_acc_wq": 59.5, "counts": {"effective": 1000},
               "network": {"model": "resnet20", "settings": {}, "conversion": CONVERSIONS["dfs"]}}
    fig = figures(metrics)
    assert fig["fs"] and fig["top1_wq"] == 59.5  # the report's WQ columns are filled
    plain = figures({**metrics, "network": {"model": "resnet20", "conversion": None}})
    assert not plain["fs"]


@pytest.mark.parametrize("network", [["--model", "resnet8", "--set", "model.width=4"],
                                     ["--genotype", "DARTS_V2", "--set", "init_channels=4",
                                      "--set", "layers=3"]], ids=["resnet8", "darts"])
def test_two_seeds_differ_and_one_seed_repeats(tmp_path, network):
    """A seed decides the initial weights, the data order and the augmentation: two seeds give
    other first-epoch figures, and the same seed gives the same ones to the last digit."""
    from test_retrain_cli import make_folder

    data = make_folder(tmp_path / "data", per_class=16, test_per_class=8)
    logs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        assert main([*network, "--dataset", str(data), "--preset", "smoke", "--fs", "fs",
                     "--epochs", "1", "--batch-size", "8", "--threads", "1", "--seed", str(seed),
                     "--set", "export.onnx=false", "--out", str(out)]) == 0
        rec = json.loads((out / "log.jsonl").read_text().splitlines()[0])
        logs[name] = (rec["train_loss"], rec["train_acc"], rec["test_loss"])
    assert logs["a"] == logs["b"]
    assert logs["a"][0] != logs["c"][0] and logs["a"][2] != logs["c"][2]
