"""bench/device_check.sh without a GPU: one plain line, exit status 0, no figures written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "device_check.sh"


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "OUT": str(tmp_path / "out"), **env}
    return subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=full, capture_output=True,
                          text=True, timeout=120)


def test_no_gpu_listed_says_so_and_writes_nothing(tmp_path):
    r = _run(tmp_path, NVIDIA_SMI=str(tmp_path / "no-nvidia-smi"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        "device_check: no CUDA GPU on this machine (nvidia-smi lists none); nothing measured, "
        "no figures written"]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_a_gpu_torch_cannot_use_says_so_and_writes_nothing(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Some GPU (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    r = _run(tmp_path, NVIDIA_SMI=str(smi), PYTHON=sys.executable)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "GPU 0: Some GPU" in lines[0] and "sees no CUDA device" in lines[0]
    assert not (tmp_path / "out").exists()
