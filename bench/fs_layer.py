"""Benchmark FSConv2d / DFSConv2d against nn.Conv2d on DARTS shapes (figures, not a test).

    .venv/bin/python bench/fs_layer.py [--threads 2] [--device cpu] [--repeats 60]

For each shape: median training step (forward + backward, input requiring grad as inside a
network), median eval forward (no_grad), memory, and ratios vs nn.Conv2d (PASS/MISS on the
medians; ratios of the minima are printed too, as they resist load from other processes).
Layers are timed round-robin in a shuffled order so machine noise hits all three alike.
Memory is torch.cuda.max_memory_allocated on CUDA; on CPU the bytes autograd saves for
backward (input included, each storage once) plus the parameter gradients.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from space.layers.fs import DFSConv2d, FSConv2d  # noqa: E402

# (label, C_in, C_out, kernel, groups, padding); batch 64 on 32x32 maps.
SHAPES = [
    ("1x1 64->64", 64, 64, 1, 1, 0),
    ("1x1 16->16", 16, 16, 1, 1, 0),
    ("dw3x3 64 g64", 64, 64, 3, 64, 1),
]
TARGETS = {"FS": (1.10, 1.03), "DFS": (1.25, 1.03)}  # (train step, eval forward) vs conv


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(cin: int, cout: int, k: int, groups: int, pad: int) -> dict[str, nn.Module]:
    geo = dict(padding=pad, groups=groups, bias=False)
    return {
        "Conv2d": nn.Conv2d(cin, cout, k, **geo),
        "FS": FSConv2d(cin, cout, k, ratio=2.0, **geo),
        "DFS": DFSConv2d(cin, cout, k, ratio=2.0, num_offsets=4, **geo),
    }


def train_step(layer: nn.Module, x: torch.Tensor, gout: torch.Tensor) -> None:
    for p in layer.parameters():
        p.grad = None
    x.grad = None
    layer(x).backward(gout)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def memory(layer: nn.Module, x: torch.Tensor, gout: torch.Tensor, device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(layer, x, gout)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()  # each storage once
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x)
    out.backward(gout)
    grads = sum(p.grad.numel() * p.grad.element_size() for p in layer.parameters())
    return sum(seen.values()) + grads


def bench_shape(shape: tuple, repeats: int, device: torch.device) -> list[tuple]:
    label, cin, cout, k, groups, pad = shape
    layers = {n: m.to(device) for n, m in build(cin, cout, k, groups, pad).items()}
    x = torch.randn(64, cin, 32, 32, device=device, requires_grad=True)
    with torch.no_grad():
        gout = torch.randn_like(layers["Conv2d"](x))
    train: dict[str, list[float]] = {n: [] for n in layers}
    evals: dict[str, list[float]] = {n: [] for n in layers}
    rng = random.Random(0)
    for i in range(repeats + 5):  # first 5 are warm-up
        # A fresh order each repeat: a fixed order biases whichever layer runs after which.
        order = list(layers.items())
        rng.shuffle(order)
        for n, m in order:
            m.train()
            t = timed(lambda m=m: train_step(m, x, gout), device)
            if i >= 5:
                train[n].append(t)
    # Eval in its own loop, as inference runs many batches between parameter updates.
    for i in range(repeats + 5):
        order = list(layers.items())
        rng.shuffle(order)
        for n, m in order:
            m.eval()
            with torch.no_grad():
                t = timed(lambda m=m: m(x), device)
            if i >= 5:
                evals[n].append(t)
    for m in layers.values():
        m.train()
    mem = {n: memory(m, x, gout, device) for n, m in layers.items()}
    ref_t, ref_e = statistics.median(train["Conv2d"]), statistics.median(evals["Conv2d"])
    min_t, min_e = min(train["Conv2d"]), min(evals["Conv2d"])
    rows = []
    for n in layers:
        tr, ev = statistics.median(train[n]), statistics.median(evals[n])
        rows.append((label, n, tr, ev, mem[n] / 2**10, tr / ref_t, ev / ref_e,
                     mem[n] / mem["Conv2d"], min(train[n]) / min_t, min(evals[n]) / min_e))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {args.threads}, "
          f"repeats {args.repeats}, batch 64, 32x32 maps, FS/DFS ratio 2, DFS M=4")
    head = (f"{'shape':<13} {'layer':<7} {'train ms':>9} {'eval ms':>8} {'mem KiB':>8} "
            f"{'train x':>8} {'eval x':>7} {'mem x':>6} {'min:tr x':>8} {'ev x':>5}  targets (median)")
    print(head)
    print("-" * len(head))
    misses = 0
    for shape in SHAPES:
        for label, n, tr, ev, mb, rt, re, rm, mt, me in bench_shape(shape, args.repeats, device):
            verdict = ""
            if n in TARGETS:
                tt, te = TARGETS[n]
                ok_t, ok_e = rt <= tt, re <= te
                misses += (not ok_t) + (not ok_e)
                verdict = (f"train<={tt:.2f}x {'PASS' if ok_t else 'MISS'}, "
                           f"eval<={te:.2f}x {'PASS' if ok_e else 'MISS'}")
            print(f"{label:<13} {n:<7} {tr:9.3f} {ev:8.3f} {mb:8.0f} {rt:8.3f} {re:7.3f} "
                  f"{rm:6.2f} {mt:8.3f} {me:5.2f}  {verdict}")
    print(f"{misses} target(s) missed")


if __name__ == "__main__":
    main()
