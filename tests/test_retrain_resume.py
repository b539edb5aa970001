"""Resume: a run killed (SIGKILL) mid-training, before and after the DFS hardening epoch,
and resumed, ends with exactly the weights, optimizer state, log and metrics of an
uninterrupted run (the uninterrupted one loads its images with 2 workers, the killed one in
its own process and then with 1 worker: augmentation is seeded per image, common.loader)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_retrain_cli import make_folder

from common.checkpoint import load_checkpoint
from retrain.export import unpack_state_dict

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 6
ARGS = ["--genotype", "DARTS_V2", "--preset", "smoke", "--set", "init_channels=4", "--set",
        "layers=3", "--batch-size", "8", "--threads", "1", "--set", "data.workers=0",
        "--epochs", str(EPOCHS), "--set", "fs.harden_epoch=2", "--set", "drop_path_prob=0.3"]
TIMING = {"seconds", "images_per_s"}


def _cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "retrain", *extra]


def _log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _kill_after(run: Path, argv: list[str], epochs_logged: int) -> None:
    """Start the run and SIGKILL it as soon as `epochs_logged` epochs are in its log."""
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while len(_log(run)) < epochs_logged:
            assert p.poll() is None, p.stderr.read().decode()
            assert time.time() < deadline, "the run made no progress"
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()
    assert not (run / "metrics.json").exists(), "the run finished before it could be killed"


def _final(run: Path) -> dict:
    return load_checkpoint(run / "latest.pt", "retrain")


#: Log keys that depend on the machine's speed, not on the run's arithmetic.
TIMING_KEYS = {"seconds", "images_per_s", "threads", "load", "busy", "cpu_threads"}


def assert_same_run(full: Path, part: Path, epochs: int) -> list[dict]:
    """The two runs logged the same figures (timings aside) for `epochs` epochs and ended
    with identical weights; returns the log."""
    logs = [[{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS}
             for x in (run / "log.jsonl").read_text().splitlines()] for run in (full, part)]
    assert logs[0] == logs[1] and len(logs[0]) == epochs
    a, b = _final(full)["model"], _final(part)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    return logs[0]


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path):
    data = make_folder(tmp_path / "data", per_class=30, test_per_class=4)
    full, cut = tmp_path / "full", tmp_path / "cut"
    base = ARGS + ["--dataset", str(data)]
    subprocess.run(_cmd(*base, "--set", "data.workers=2", "--out", str(full)), cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)

    _kill_after(cut, _cmd(*base, "--out", str(cut)), 2)          # checkpoint before hardening
    assert not _final(cut)["hardened"]
    # Resumed with another worker count (it may change on resume: augmentation is per image).
    _kill_after(cut, _cmd("--resume", str(cut), "--workers", "1"), 4)  # after hardening
    assert _final(cut)["hardened"]
    r = subprocess.run(_cmd("--resume", str(cut)), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout

    a, b = _final(full), _final(cut)
    assert a["epoch"] == b["epoch"] == EPOCHS
    assert list(a["model"]) == list(b["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    strip = lambda log: [{k: v for k, v in r.items() if k not in TIMING} for r in log]  # noqa: E731
    la, lb = strip(_log(full)), strip(_log(cut))
    assert la == lb and [r["epoch"] for r in la] == list(range(EPOCHS))
    assert [r["hardened"] for r in la] == [False, False] + [True] * (EPOCHS - 2)
    ma, mb = (json.loads((run / "metrics.json").read_text()) for run in (full, cut))
    for key in ("test_acc", "test_acc_wq", "test_top5", "test_loss", "best_test_acc", "counts",
                "file_bytes"):
        assert ma[key] == mb[key], key
    pa, pb = (load_checkpoint(run / "model.pt")["packed"] for run in (full, cut))
    ua, ub = unpack_state_dict(pa), unpack_state_dict(pb)
    assert ua.keys() == ub.keys() and all(torch.equal(ua[k], ub[k]) for k in ua)
