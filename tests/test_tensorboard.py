"""TensorBoard logs (common.tensorboard): a tiny search and a tiny retrain with --tensorboard,
read back with tensorboard's own event reader and checked against log.jsonl."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from image_folders import make_image_folder
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_retrain_cli import TINY as RETRAIN_TINY
from test_retrain_cli import make_folder
from test_search_cli import TINY as SEARCH_TINY

from common.tensorboard import scalars_of
from retrain.cli import main as retrain_main
from search.cli import main as search_main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _events(run: Path) -> EventAccumulator:
    files = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert files, "no event file"
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0,
                                                                    "tensors": 0})
    acc.Reload()
    return acc


def _check_scalars(acc: EventAccumulator, records: list[dict]) -> set[str]:
    """Every number of every log.jsonl record is the scalar of its key at step = epoch (the
    event file stores float32)."""
    tags = set(acc.Tags()["scalars"])
    for rec in records:
        expected = scalars_of(rec)
        assert expected and set(expected) <= tags
        for tag, value in expected.items():
            events = [e for e in acc.Scalars(tag) if e.step == rec["epoch"]]
            assert len(events) == 1, tag
            assert math.isclose(events[0].value, value, rel_tol=1e-6, abs_tol=1e-6), tag
    return tags


@pytest.mark.slow
def test_search_tensorboard_matches_log_jsonl(tmp_path):
    run = tmp_path / "search"
    folder = make_image_folder(tmp_path / "imgs")
    search_main([str(folder), *SEARCH_TINY, "--epochs", "2", "--out", str(run), "--tensorboard",
                 "--set", "runtime.plot=false"])
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    acc = _events(run)
    tags = _check_scalars(acc, records)
    assert {"train_loss", "valid_acc", "lr", "seconds", "offset_entropy", "temperature"} <= tags
    for cell in ("normal", "reduce"):  # one heat map per epoch and cell
        images = acc.Images(f"alphas/{cell}")
        assert [i.step for i in images] == [0, 1] and images[0].width > images[0].height > 0
    texts = acc.Tensors("genotype/text_summary")
    assert [t.step for t in texts] == [0, 1]
    last = texts[-1].tensor_proto.string_val[0].decode()
    assert "Genotype(normal=[" in last and records[-1]["genotype"]["normal"][0][0] in last


@pytest.mark.slow
def test_retrain_tensorboard_and_off_by_default(tmp_path):
    folder = make_folder(tmp_path / "imgs")
    run = tmp_path / "retrain"
    base = ["--genotype", "DARTS_V2", "--dataset", str(folder), *RETRAIN_TINY, "--epochs", "2",
            "--set", "export.onnx=false"]
    assert retrain_main([*base, "--out", str(run), "--tensorboard"]) == 0
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    tags = _check_scalars(_events(run), records)
    assert {"train_loss", "test_acc", "test_top5", "lr", "seconds", "drop_path_prob"} <= tags
    assert "hardened" not in tags  # booleans are not scalars
    assert retrain_main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "tensorboard").exists()
    assert not (tmp_path / "plain" / "model.onnx").exists()  # export.onnx=false


def test_pipelines_import_onnx_and_tensorboard_only_when_used():
    code = ("import sys, search.cli, search.run, retrain.cli, retrain.run, retrain.evaluate; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', "
            "'onnxscript', 'tensorboard') or m.startswith('torch.utils.tensorboard')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
