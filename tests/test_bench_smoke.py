"""Every script in bench/ runs once at its smallest size, so that a bench cannot silently
break (their figures are not checked here: they are measured on a quiet machine). Each runs
in its own process as a user runs it; a new script needs its line in BENCHES."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"
slow = pytest.mark.slow
TINY_NET = ["--init-channels", "8", "--layers", "2", "--size", "8", "--threads", "1"]
TINY_STEP = ["--C", "4", "--layers", "2", "--batch", "2", "--size", "8"]

#: script -> (its smallest arguments, marks); RUN stands for a tiny search run directory
#: (made once, by search_run), OUT for a fresh output folder, SELF for this checkout.
BENCHES: dict[str, tuple[list[str], list]] = {
    "against.py": (["SELF", "--rounds", "1", "--", "retrain_step.py", *TINY_NET, "--batch-size", "2",
                    "--repeats", "1"], [slow]),
    "arch_grad_precision.py": (["--size", "8", "--batch", "2", "--C", "4", "--layers", "2",
                                "--threads", "1", "--data", str(SUBSET)], [slow]),
    "arch_snr.py": (["RUN", "--batches", "2", "--threads", "1"], [slow]),
    "batch_stats.py": (["--repeats", "1", "--threads", "1"], [slow]),
    "cnn_step.py": (["--models", "resnet8", "--batch-size", "2", "--repeats", "1", "--threads", "1"],
                    [slow]),
    "device_check.sh": ([], []),  # without a GPU: one line, nothing measured
    "device_epoch.py": (["report", "--out", "OUT"], []),  # its `epoch`: GPU only (device_check.sh)
    "fs_layer.py": (["--repeats", "1", "--threads", "1"], [slow]),
    "gpu_steps.py": (["search", "--out", "OUT", "--steps", "1", "--warmup", "0",
                      *TINY_STEP], [slow]),
    "inference.py": ([*TINY_NET, "--batch-size", "2", "--repeats", "1", "--runtimes", "eager"],
                     [slow]),
    "offset_drift.py": (["RUN-1/checkpoint.pt", "RUN/checkpoint.pt", "--target-steps", "10"], [slow]),
    # its worker alone (one checkout's counts): the comparison profiles both checkouts (minutes)
    "op_counts.py": (["--worker", "SELF", "--step", "search1", "--fs", "off"], [slow]),
    "op_weights.py": (["RUN"], [slow]),
    "oversubscription.py": (["--data", str(SUBSET), "--steps", "2", "--max-seconds", "3",
                             "--quiet-steps", "1", "--busy-steps", "1"], [slow]),
    "retrain_step.py": ([*TINY_NET, "--batch-size", "2", "--repeats", "1"], [slow]),
    "shard_step.py": (["--n", "8", "--batch-size", "2", "--repeats", "1", "--threads", "1"], [slow]),
    "shardnet_table.py": ([], []),
    "search_step.py": (["--order", "1", "--fs", "off", "--algo", "all", "--steps", "1", "--warmup",
                        "0", "--threads", "1", *TINY_STEP], [slow]),
}
#: What the smoke run cannot reach here, and why.
NEEDS_DATA = {"arch_grad_precision.py", "oversubscription.py"}
NEEDS_GPU = {"gpu_steps.py": "its sections time CUDA steps; on a CPU its smallest run takes "
             "minutes (bench/device_check.sh runs it on a GPU)"}


def test_every_bench_script_has_its_smoke_line():
    scripts = {p.name for p in (ROOT / "bench").iterdir() if p.suffix in (".py", ".sh")}
    assert scripts == set(BENCHES)


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A two-epoch search on a tiny image folder: the run directory the log readers take
    (8 channels: every FS layer has all 4 candidate offsets, as offset_drift.py expects)."""
    from image_folders import make_image_folder

    base = tmp_path_factory.mktemp("bench-run")
    data = make_image_folder(base / "data", per_class=4, size=8)
    for epochs in (1, 2):  # RUN, and RUN-1 for a checkpoint at another step count
        out = base / ("run" if epochs == 2 else "run-1")
        r = subprocess.run([sys.executable, "-m", "search", str(data), "--preset", "smoke",
                            "--epochs", str(epochs), "--set", "init_channels=8", "--set", "layers=5",
                            "--batch-size", "4", "--threads", "1", "--out", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    return base / "run"


@pytest.mark.parametrize("script", [pytest.param(s, marks=m) for s, (_, m) in BENCHES.items()])
def test_bench_runs_at_its_smallest_size(script, tmp_path, request):
    args, _ = BENCHES[script]
    if script in NEEDS_GPU and not torch.cuda.is_available():
        pytest.skip(f"{script} needs a CUDA GPU: {NEEDS_GPU[script]}")
    if script in NEEDS_DATA and not SUBSET.is_dir():
        pytest.skip(f"{script} reads real images: {SUBSET} is missing")
    if any(a.startswith("RUN") for a in args):
        run = request.getfixturevalue("search_run")
        args = [str(run) + a[3:] if a.startswith("RUN") else a for a in args]
    args = [str(ROOT) if a == "SELF" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    if script == "device_epoch.py":
        (tmp_path / "out").mkdir()
    cmd = (["bash"] if script.endswith(".sh") else [sys.executable]) + [str(ROOT / "bench" / script)]
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    if script == "device_check.sh":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU: device_check.sh would measure (minutes)")
        env["NVIDIA_SMI"] = str(tmp_path / "no-nvidia-smi")
    r = subprocess.run([*cmd, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"{script} {' '.join(args)}\n{r.stderr[-3000:]}"
    if script == "device_epoch.py":  # the report goes to a file
        assert (tmp_path / "out" / "device_check.md").is_file()
    else:
        assert r.stdout.strip(), f"{script} printed nothing"
