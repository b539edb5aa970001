"""Kill a search with SIGKILL during epoch 2, resume it, and get bit-for-bit the result of an
uninterrupted run with the same seed (the uninterrupted one uses 2 loader workers, the
interrupted one none: the batches do not depend on the worker count either)."""

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
from image_folders import make_image_folder

from common.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
TINY = ["--preset", "smoke", "--set", "init_channels=4", "--set", "layers=5", "--batch-size", "8",
        "--threads", "1", "--set", "runtime.draw_every=0", "--set", "runtime.plot=false",
        "--epochs", str(EPOCHS), "--seed", "3"]


def _search(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _finish(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    return out


def _checkpoint_epoch(run: Path) -> int:
    try:  # the file is replaced atomically: either the old or the new one is read
        return int(torch.load(run / "checkpoint.pt", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in records]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    data = make_image_folder(tmp_path / "imgs")
    full, cut = tmp_path / "full", tmp_path / "cut"
    reference = _search(str(data), *TINY, "--workers", "2", "--out", str(full), cwd=tmp_path)
    victim = _search(str(data), *TINY, "--workers", "0", "--out", str(cut), cwd=tmp_path)
    deadline = time.monotonic() + 400
    while _checkpoint_epoch(cut) < 2:  # epoch 1 (0-based) checkpointed: epoch 2 is running
        assert victim.poll() is None, victim.communicate()[0]
        assert time.monotonic() < deadline, "the search never reached epoch 2"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert _checkpoint_epoch(cut) == 2, "killed too late: epoch 2 had already finished"
    assert len((cut / "log.jsonl").read_text().splitlines()) <= 3

    out = _finish(_search("--resume", str(cut), cwd=tmp_path))
    assert f"resuming {cut} at epoch 3" in out  # 1-based: epoch index 2 runs again
    _finish(reference)

    a = load_checkpoint(full / "checkpoint.pt", "search")
    b = load_checkpoint(cut / "checkpoint.pt", "search")
    assert a["epoch"] == b["epoch"] == EPOCHS
    for key in ("alphas_normal", "alphas_reduce"):
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # weights too
    assert (full / "genotype.json").read_text() == (cut / "genotype.json").read_text()
    log_a = [json.loads(x) for x in (full / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (cut / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log_b] == list(range(EPOCHS))  # truncated, no duplicates
    assert _strip(log_a) == _strip(log_b)
    assert sorted(p.name for p in (cut / "genotypes").iterdir()) == [
        f"epoch-{e:03d}.json" for e in range(EPOCHS)]
    resumed = (cut / "config.yaml").read_text()
    assert "resumed:" in resumed and "--resume" in resumed
