"""Standard CNNs converted to FS layers against the plain network: training step and inference
(figures, not a test).

    .venv/bin/python bench/cnn_step.py [--models resnet56,resnet18] [--batch-size 64]
        [--ratio 4] [--threads 2] [--repeats 5] [--json OUT]

For each network: plain (nn.Conv2d), 1D FS at --ratio (hardened: fixed offsets), DFS at
--ratio (learned offsets, the first half of a retrain) and 3D FS at the paper policy, all
built by the registry and converted by space.layers.convert from the same seed. A training step is
forward, cross-entropy, backward and an SGD momentum step; inference is an eval-mode forward
under torch.inference_mode, where an FS layer gathers its filters once and keeps them
(space/layers/fs.py's cache), so it runs the plain network's convolutions. Variants run
round-robin in a fresh random order each repeat, so machine noise hits all alike; medians are
compared. Targets: FS training step <= 1.25x plain, FS inference within 5% of plain.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from space.layers.convert import Conversion, convert  # noqa: E402
from space.layers.fs_model import harden_model  # noqa: E402
from space.layers.report import param_report  # noqa: E402
from space.models import get_model  # noqa: E402

TRAIN_TARGET, INFER_TARGET = 1.25, 1.05


def variants(model: str, ratio: float) -> dict[str, nn.Module]:
    """{plain, FS, DFS, FS3D}: the same network from the same seed."""
    out = {}
    for name, conv in (("plain", None), ("FS", Conversion("fs", ratio)),
                       ("DFS", Conversion("dfs", ratio)),
                       ("FS3D", Conversion("fs3d", policy="paper"))):
        torch.manual_seed(0)
        net = get_model(model)
        if conv is not None:
            convert(net, conv)
        out[name] = net.to(memory_format=torch.channels_last)
    return out


def _train_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()


def _timed(fn, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def bench_model(model: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    nets = variants(model, args.ratio)
    x = torch.randn(args.batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    opts = {k: torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9) for k, n in nets.items()}
    evals = {k: harden_model(n) if k == "DFS" else n for k, n in nets.items()}
    train: dict[str, list[float]] = {k: [] for k in nets}
    infer: dict[str, list[float]] = {k: [] for k in nets}
    for k, n in nets.items():  # warm-up: allocator, kernels, the FS caches
        n.train()
        _train_step(n, opts[k], x, y)
    rng = random.Random(0)
    for _ in range(args.repeats):
        order = list(nets)
        rng.shuffle(order)
        for k in order:
            nets[k].train()
            train[k].append(_timed(lambda k=k: _train_step(nets[k], opts[k], x, y), 1))
    for k in evals:
        evals[k].eval()
    for k in evals:  # one warm forward fills the FS filter caches
        with torch.inference_mode():
            evals[k](x)
    for _ in range(args.repeats):
        order = list(evals)
        rng.shuffle(order)
        for k in order:
            with torch.inference_mode():
                infer[k].append(_timed(lambda k=k: evals[k](x), 3))
    out = {}
    for k in nets:
        out[k] = {"params": param_report(evals[k])["total"],
                  "train_s": statistics.median(train[k]), "infer_s": statistics.median(infer[k])}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet56,resnet18")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ratio", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch_size}, 32x32, {args.threads} thread(s), {args.repeats} repeats, "
          f"torch {torch.__version__}; medians; x plain: training target <= {TRAIN_TARGET}, "
          f"inference <= {INFER_TARGET}")
    results = {}
    for model in args.models.split(","):
        r = results[model] = bench_model(model, args)
        base = r["plain"]
        print(f"\n{model}")
        print(f"{'variant':<7} {'params':>11} {'train step':>11} {'x plain':>8} "
              f"{'inference':>10} {'x plain':>8}")
        for k, v in r.items():
            print(f"{k:<7} {v['params']:>11,} {v['train_s'] * 1e3:>9.1f}ms "
                  f"{v['train_s'] / base['train_s']:>8.2f} {v['infer_s'] * 1e3:>8.1f}ms "
                  f"{v['infer_s'] / base['infer_s']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
