"""A first-order search under torchrun with 2 CPU processes (gloo): it completes, only rank 0
writes a run directory, and both ranks end with bit-identical architecture parameters (the
architect averages their gradients; tests/test_architect.py checks the averaging itself)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from image_folders import make_image_folder

from common.checkpoint import load_checkpoint
from genotypes import load_genotype, validate

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "search", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    data = make_image_folder(tmp_path / "imgs")
    r = _torchrun(str(data), "--preset", "smoke", "--set", "init_channels=4", "--set", "layers=5",
                  "--batch-size", "8", "--epochs", "2", "--device", "cpu", "--threads", "1",
                  "--set", "runtime.draw_every=0", "--set", "runtime.plot=false", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "x 2 processes" in r.stdout
    assert "architecture parameters identical on all 2 ranks" in r.stdout
    assert r.stdout.count("search finished") == 1  # only rank 0 talks
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # only rank 0 writes
    run = runs[0]
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in records] == [0, 1]
    validate(load_genotype(run / "genotype.json"))
    state = load_checkpoint(run / "checkpoint.pt", "search")
    assert state["world_size"] == 2 and state["epoch"] == 2
    assert not any(k.startswith("module.") for k in state["model"])  # the bare network's keys

