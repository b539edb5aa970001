"""Retrain training step: the FS network against the same genotype with --fs off (figures, not
a test).

    .venv/bin/python bench/retrain_step.py [--genotype DARTS_V2] [--init-channels 16]
        [--layers 8] [--batch-size 64] [--ratio 2] [--threads 2] [--repeats 10] [--device cpu]

Times one full SGD step (forward with auxiliary head and drop path, backward, gradient
clipping, momentum step), by common.weight_step.WeightStep as retrain.trainer runs it, for:
--fs off, FS (hardened, fixed offsets: the second half of training) and DFS (learned
offsets: the first half). Variants run
round-robin in a fresh random order each repeat, so machine noise hits all alike; medians
are compared. Also prints the exported file sizes (model.pt and model-wq.pt).
Target: FS train step <= 1.10x --fs off.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.runtime import grad_scaler  # noqa: E402
from common.weight_step import WeightStep  # noqa: E402
from genotypes import FSSpec, load_genotype  # noqa: E402
from retrain.export import exported_size  # noqa: E402
from retrain.model import NetSpec, build_network  # noqa: E402
from space.layers.fs_model import harden_model  # noqa: E402

TARGET = 1.10


def add_common(ap: argparse.ArgumentParser, batch: int) -> None:
    ap.add_argument("--genotype", default="DARTS_V2")
    ap.add_argument("--init-channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=batch)
    ap.add_argument("--size", type=int, default=32, help="input side (32: CIFAR)")
    ap.add_argument("--ratio", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-channels-last", action="store_true")


def variants(args: argparse.Namespace, auxiliary: bool) -> dict[str, tuple[NetSpec, nn.Module]]:
    """{off, FS (hardened), DFS}: same genotype, width and initial seed."""
    g = load_genotype(args.genotype)
    out = {}
    for name, fs in (("off", None), ("FS", FSSpec(args.ratio, True, 4)),
                     ("DFS", FSSpec(args.ratio, True, 4))):
        torch.manual_seed(0)
        spec = NetSpec(g, args.init_channels, args.layers, 10, (args.size, args.size),
                       auxiliary=auxiliary, fs=fs)
        m = build_network(spec)
        if name == "FS":
            harden_model(m)
        m = m.to(args.device)
        if not args.no_channels_last:
            m = m.to(memory_format=torch.channels_last)
        out[name] = (spec, m)
    return out


def file_sizes(models: dict[str, tuple[NetSpec, nn.Module]]) -> dict[str, tuple[int, int]]:
    data = {"name": "bench", "num_classes": 10, "input_size": [32, 32], "mean": [0.0] * 3,
            "std": [1.0] * 3}
    return {n: (exported_size(m.cpu(), s, data), exported_size(m.cpu(), s, data, wq=True))
            for n, (s, m) in models.items() if n != "DFS"}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def round_robin(fns: dict, repeats: int, warmup: int, device: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {n: [] for n in fns}
    rng = random.Random(0)
    for i in range(repeats + warmup):
        order = list(fns.items())
        rng.shuffle(order)
        for n, fn in order:
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i >= warmup:
                times[n].append((time.perf_counter() - t0) * 1e3)
    return times


def size_table(sizes: dict[str, tuple[int, int]]) -> list[str]:
    off = sizes["off"][0]
    return [f"exported files: --fs off model.pt {off:,} B; FS model.pt {sizes['FS'][0]:,} B "
            f"({off / sizes['FS'][0]:.2f}x smaller), model-wq.pt {sizes['FS'][1]:,} B "
            f"({off / sizes['FS'][1]:.2f}x smaller)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(ap, batch=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = variants(args, auxiliary=True)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=args.device)
    if not args.no_channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), device=args.device)
    crit = nn.CrossEntropyLoss()
    steps = {}
    for name, (_, m) in models.items():
        m.train()
        m.drop_path_prob = 0.1
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=3e-4)
        dev = torch.device(args.device)
        ws = WeightStep(opt, grad_scaler(dev, False), dev, False, list(m.parameters()), 5.0)

        def loss(x, y, m=m):
            logits, aux = m(x)
            return crit(logits, y) + 0.4 * crit(aux, y), logits

        steps[name] = lambda ws=ws, loss=loss: ws(loss, x, y)
    times = round_robin(steps, args.repeats, 2, args.device)
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads; {args.genotype} "
          f"C={args.init_channels} x {args.layers} cells, batch {args.batch_size}, "
          f"{args.size}px, ratio {args.ratio:g}; median of {args.repeats} round-robin steps")
    print(f"{'variant':<8} {'train step ms':>14} {'min ms':>9} {'vs off':>7} {'min vs off':>10}  "
          "target (on the median)")
    for n in ("off", "FS", "DFS"):
        r = med[n] / med["off"]
        verdict = ""
        if n == "FS":
            verdict = f"<= {TARGET:.2f}x {'PASS' if r <= TARGET else 'MISS'}"
        elif n == "DFS":
            verdict = "(first half of training only; no target)"
        rmin = min(times[n]) / min(times["off"])
        print(f"{n:<8} {med[n]:14.1f} {min(times[n]):9.1f} {r:7.3f} {rmin:10.3f}  {verdict}")
    print("\n".join(size_table(file_sizes(models))))


if __name__ == "__main__":
    main()
