"""Real images: retrain DARTS_V2 with the smoke settings, shortened to fit CI (2 epochs on a
class-balanced 500-image part of ../shared/data/cifar10-subset), export both models and
reload each with `python -m retrain.evaluate` in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _evaluate(model: Path, data: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "retrain.evaluate", str(model), "--dataset",
                        str(data), "--threads", "1", "--json"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
def test_smoke_retrain_export_and_reload_on_real_images(cifar_subset, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "retrain", "--genotype", "DARTS_V2", "--dataset",
           str(cifar_subset), "--preset", "smoke", "--epochs", "2", "--threads", "1",
           "--set", "data.max_images=500", "--set", "data.max_test_images=250",
           "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and log[-1]["hardened"] and abs(m["test_images"] - 250) <= 5
    assert m["network"]["fs"] == {"ratio": 2.0, "dfs": False, "num_offsets": 4}
    assert m["counts"]["uncompressed"] == 246_106  # DARTS_V2 at C=16, 8 cells (quark0/darts)
    assert m["file_bytes"]["model-wq.pt"] < m["file_bytes"]["model.pt"]

    fl = _evaluate(out / "model.pt", cifar_subset)
    wq = _evaluate(out / "model-wq.pt", cifar_subset)
    assert fl["images"] == wq["images"] == m["test_images"]
    assert fl["top1"] == m["test_acc"] and fl["top5"] == m["test_top5"]
    assert abs(wq["top1"] - fl["top1"]) <= 1.0 and wq["top1"] == m["test_acc_wq"]
