"""ShaRDNet's training step beside the same network unshared, at the same n (figures, not a
test).

    .venv/bin/python bench/shard_step.py [--n 64] [--batch-size 64] [--threads 2]
        [--repeats 7] [--json OUT]

For SL-VGGNet(n) and SL3-ResNet(n): the shared network (one conv module at every place) and
its unshared twin (the same network, each place given its own copy of the conv: the same
convolutions, L times the conv weights), from the same seed. A step is forward,
cross-entropy, backward and an SGD momentum step on a CIFAR-size batch. The two run
round-robin in a fresh random order each repeat, so machine noise hits both alike; medians
are compared. Target: shared <= unshared (x 1.05 for noise): sharing adds no convolutions,
only the summing of one weight's gradient over its places, and the optimizer steps fewer
weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from space.models import get_model  # noqa: E402

TARGET = 1.05


def unshare(model: nn.Module) -> nn.Module:
    """A copy of `model` in which every module held at several places gets its own copy at
    each place after the first (same initial weights, separate parameters)."""
    net = copy.deepcopy(model)
    seen: set[int] = set()
    for parent in list(net.modules()):
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            if id(child) in seen and any(True for _ in child.parameters()):
                setattr(parent, name, copy.deepcopy(child))
            seen.add(id(child))
    return net


def _step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()


def measure(name: str, settings: dict, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    shared = get_model(name, **settings).train()
    nets = {"shared": shared, "unshared": unshare(shared).train()}
    opts = {k: torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9) for k, n in nets.items()}
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times: dict[str, list[float]] = {k: [] for k in nets}
    for k in nets:  # warm-up
        _step(nets[k], opts[k], x, y)
    order = list(nets)
    for _ in range(repeats):
        random.shuffle(order)
        for k in order:
            t0 = time.perf_counter()
            _step(nets[k], opts[k], x, y)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    params = {k: sum(p.numel() for p in n.parameters()) for k, n in nets.items()}
    return {"network": name, "settings": settings, "batch": batch, "median_s": med,
            "params": params, "ratio": med["shared"] / med["unshared"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    random.seed(0)
    rows = [measure("sl-vgg", {"width": a.n}, a.batch_size, a.repeats),
            measure("sl-resnet", {"width": a.n, "blocks": 3}, a.batch_size, a.repeats)]
    print(f"training step, batch {a.batch_size}, {a.threads} threads, median of {a.repeats}")
    print(f"{'network':<22}{'shared s':>10}{'unshared s':>12}{'ratio':>8}{'params':>22}")
    for r in rows:
        m, pr = r["median_s"], r["params"]
        label = f"{r['network']}(n={a.n})"
        print(f"{label:<22}{m['shared']:>10.3f}{m['unshared']:>12.3f}{r['ratio']:>8.2f}"
              f"{pr['shared']:>10,} / {pr['unshared']:,}")
    ok = all(r["ratio"] <= TARGET for r in rows)
    print(f"target shared <= {TARGET} x unshared: {'met' if ok else 'NOT met'}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
