"""What exact batch statistics cost: a search step and a retrain step with them and with
ATen's, in one process, interleaved (figures, not a test).

    .venv/bin/python bench/batch_stats.py [--repeats 20] [--threads 2]

ATen's channels_last CPU batch norm sums its batch statistics in one float32 pass; the search
supernet takes them in two accurate passes instead (space/layers/cpu_kernels.py, `exact=True`),
because its architecture gradients need them (bench/arch_grad_precision.py). Retrain's
networks keep ATen's. This bench times both choices on the same model, switching the mark
(space.layers.fused.exact_batch_stats) between steps in a random order, so that the ratio is not
the difference between two processes (which varies by up to 30% on a small VM):

* search: SearchNetwork C=8, 5 cells, DFS ratio 2, batch 32 (the smoke preset), a
  first-order architecture step (search/architect.py) then the weight step
  (common/weight_step.py);
* retrain: DARTS_V2 C=16, 8 cells, auxiliary head, drop path 0.1, batch 64, --fs off, the
  weight step as bench/retrain_step.py times it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.retrain_step import round_robin  # noqa: E402
from common.runtime import grad_scaler  # noqa: E402
from common.weight_step import WeightStep  # noqa: E402
from genotypes import FSSpec, load_genotype  # noqa: E402
from retrain.model import NetSpec, build_network  # noqa: E402
from search.architect import Architect  # noqa: E402
from space.darts.supernet import SearchNetwork  # noqa: E402
from space.layers.fused import exact_batch_stats  # noqa: E402

CPU = torch.device("cpu")


def search_step(batch: int):
    torch.manual_seed(0)
    net = SearchNetwork(8, 10, 5, fs=FSSpec(2.0, True, 4)).train()
    upper, lower = net.arch_parameters() + net.offset_parameters(), net.weight_parameters()
    g = torch.Generator().manual_seed(1)
    xt, xv = (torch.randn(batch, 3, 32, 32, generator=g) for _ in range(2))
    yt, yv = (torch.randint(0, 10, (batch,), generator=g) for _ in range(2))
    w_opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9, weight_decay=3e-4)
    arch = Architect(net, upper, lower, w_opt, order="first")
    weights = WeightStep(w_opt, grad_scaler(CPU, False), CPU, False, lower, 5.0, upper)

    def step() -> None:
        arch.step(xt, yt, xv, yv, 0.025)
        weights(lambda x, y: (F.cross_entropy(logits := net(x), y), logits), xt, yt)
    return net, step


def retrain_step(batch: int):
    torch.manual_seed(0)
    spec = NetSpec(load_genotype("DARTS_V2"), 16, 8, 10, (32, 32), auxiliary=True, fs=None)
    net = build_network(spec).to(memory_format=torch.channels_last).train()
    net.drop_path_prob = 0.1
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=3e-4)
    weights = WeightStep(opt, grad_scaler(CPU, False), CPU, False, list(net.parameters()), 5.0)

    def loss(x, y):
        logits, aux = net(x)
        return F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y), logits
    return net, lambda: weights(loss, x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, cpu, {args.threads} threads; median (min) of "
          f"{args.repeats} steps per row, the two rows of a step interleaved")
    print(f"{'step':<8} {'exact ms':>16} {'ATen ms':>16} {'exact / ATen':>13}")
    for name, (net, step) in (("search", search_step(32)), ("retrain", retrain_step(64))):
        fns = {on: lambda on=on, net=net, step=step: (exact_batch_stats(net, on), step())
               for on in (True, False)}
        t = round_robin(fns, args.repeats, 2, "cpu")
        med = {on: statistics.median(v) for on, v in t.items()}
        print(f"{name:<8} {med[True]:9.1f} ({min(t[True]):5.1f}) {med[False]:9.1f} "
              f"({min(t[False]):5.1f}) {med[True] / med[False]:12.3f}x")


if __name__ == "__main__":
    main()
