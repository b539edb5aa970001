"""Structural channel pruning (space.layers.channel_prune, `prune.*` in retrain): the target
is met and nearly reached, the plan replays exactly on a fresh network (checkpoints and
exports store the plan, not modules), what must stay whole stays whole, and a retrain that
prunes mid-run exports, reloads and resumes exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from common.errors import UserError
from space.layers.channel_prune import apply_plan, check_target, count_params, plan_pruning
from space.models import get_model

pytest.importorskip("torch_pruning")


def _trained_like(name: str, **settings) -> torch.nn.Module:
    """A network whose weights are not all alike (so the L1 ranking has something to rank)."""
    torch.manual_seed(0)
    m = get_model(name, **settings)
    for mod in m.modules():  # BatchNorm at its init would make every channel look the same
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.running_mean.uniform_(-0.1, 0.1)
    return m


@pytest.mark.parametrize("name,settings,target", [
    ("resnet20", {}, 70_000),                       # option A: residual stream kept whole
    ("resnet20", {"shortcut": "B"}, 70_000),        # projections: the graph follows them
    ("resnet18", {"width": 16}, 200_000),           # torchvision's ResNet-18, CIFAR stem
])
def test_pruning_meets_the_target_and_the_plan_replays_exactly(name, settings, target):
    m = _trained_like(name, **settings)
    before = count_params(m)
    plan = plan_pruning(m, target, 3, (32, 32), 10)
    after = count_params(m)
    assert plan and after <= target < before
    assert after > 0.9 * target  # the smallest ratio that gets there, not a much smaller net
    m.eval()
    fresh = apply_plan(get_model(name, **settings), json.loads(json.dumps(plan)), 3, (32, 32))
    fresh.load_state_dict(m.state_dict())  # every shape matches
    fresh.eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(fresh(x), m(x), rtol=0, atol=0)


def test_option_a_keeps_the_residual_stream_and_the_classifier_whole():
    m = _trained_like("resnet20")
    plan_pruning(m, 70_000, 3, (32, 32), 10)
    assert m.conv1.out_channels == 16 and m.fc.out_features == 10 and m.fc.in_features == 64
    for stage, width in ((m.layer1, 16), (m.layer2, 32), (m.layer3, 64)):
        for block in stage:
            assert block.conv2.out_channels == width  # the sum with the padded shortcut
            assert block.conv1.out_channels < width  # the inner channels carry the cut
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_an_unreachable_target_is_one_line_before_training():
    m = get_model("resnet20")
    with pytest.raises(ValueError, match="at least .* above the target 1,000; raise prune.params"):
        check_target(m, 1_000, 3, (32, 32), 10)
    assert count_params(m) == 269_722  # the check prunes a copy


def _retrain(cifar_subset, out, *extra):
    return [sys.executable, "-m", "retrain", "--model", "resnet8", "--fs", "off", "--preset",
            "cnn-subset", "--dataset", str(cifar_subset), "--threads", "1", "--epochs", "4",
            "--set", "data.max_images=300", "--set", "data.max_test_images=150", "--set",
            "prune.params=30k", "--set", "optimizer.cycles=2", "--out", str(out), *extra]


def test_a_retrain_prunes_mid_run_exports_and_resumes_exactly(tmp_path, cifar_subset, capsys):
    """Four epochs straight (pruned at the start of epoch 3), against a run killed after its
    third epoch and resumed: the same log and weights; the export reloads pruned."""
    from test_retrain_resume import _kill_after, assert_same_run

    full, part = tmp_path / "full", tmp_path / "part"
    r = subprocess.run(_retrain(cifar_subset, full), check=True, capture_output=True, text=True)
    assert "pruned with Torch-Pruning (global L1): 75,290 -> " in r.stdout
    _kill_after(part, _retrain(cifar_subset, part, "--set", "export.onnx=false"), 3)
    subprocess.run([sys.executable, "-m", "retrain", "--resume", str(part), "--threads", "1"],
                   check=True, capture_output=True)
    assert_same_run(full, part, 4)
    metrics = json.loads((full / "metrics.json").read_text())
    counts = metrics["counts"]
    assert counts["effective"] <= 30_000 and counts["uncompressed"] == 75_290
    assert counts["compression"] == pytest.approx(75_290 / counts["effective"])
    assert metrics["test_acc_onnx"] == pytest.approx(metrics["test_acc"], abs=0.2)
    from retrain.evaluate import main as evaluate

    capsys.readouterr()
    for name in ("model.pt", "model.onnx"):  # the pruned structure rebuilt from the file
        assert evaluate([str(full / name), "--dataset", str(cifar_subset), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(metrics["test_acc"])


def test_pruning_a_network_with_fs_layers_is_refused_in_one_line(cifar_subset, capsys):
    from retrain.cli import main

    with pytest.raises((SystemExit, UserError)):
        main(["--model", "resnet8", "--fs", "fs", "--dataset", str(cifar_subset), "--set",
              "prune.params=30k", "--epochs", "1", "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "prune.params prunes the channels of a plain --model network" in err[-1]


def test_the_summary_says_it_prunes_and_refuses_what_cannot_be_pruned(capsys):
    from retrain.cli import main

    assert main(["--model", "resnet20", "--fs", "off", "--set", "prune.params=70k", "--epochs",
                 "20", "--summary"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("pruned to at most 70,000 parameters at the start of epoch 11 of 20")
    for extra, msg in ((["--set", "prune.params=1k"], "above the target 1,000; raise prune.params"),
                       (["--set", "prune.params=70k", "--epochs", "1"], "give --epochs 2 or more")):
        with pytest.raises(SystemExit):
            main(["--model", "resnet20", "--fs", "off", "--summary", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0]
