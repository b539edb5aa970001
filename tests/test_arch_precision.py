"""Float32 gradients of the search step against float64, on the shapes a search runs: C=8,
5 cells, a batch of 4 real 32x32 CIFAR-10 images, the fast path (channels_last, CPU kernels)
against the reference evaluation (fast=False) in float64. In float64 the two paths agree to
7e-15 (FS off, draws 0-3): they compute one function, with the same subgradients.

Where a ReLU input of a draw lies within float32 rounding of zero, float32 and float64 take
the two sides of the kink, and the gradients of every tensor upstream of that element differ
by up to ~1e-2, in any implementation (bench/arch_grad_precision.py, docs/benchmarks.md).
Which draws flip depends on the summation order of the CPU's kernels: on an AVX-512 machine
(2026-12-07) the worst weight tensor was more than 1e-4 off on 5 of 10 draws in the fast path
and on 3 in the plain one. On draw 2, a batch-norm output of 1.8e-7 (typical magnitude 0.59)
in front of a ReLU in cell 2 put 6.9e-3 into a 1x1 conv's weight gradient, all of it in that
element's output channel. One draw cannot bound a gradient, then.

What these tests guard is the systematic error, which is on every draw: ATen's channels_last
batch norm sums its statistics in one float32 pass; the search network takes exact batch
statistics instead (space.layers.fused). So each figure is the median over DRAWS network
initialisations (the same images), which two flipped draws of five cannot move. Measured at
1 thread on that machine, exact statistics against the one-pass ones (each draw's figure,
median over the five draws):

    FS off  alphas   7.5e-7  against 4.7e-4     (bound 1e-5)
            weights  7.8e-7  against 2.0e-6     (bound 1e-5; the median weight tensor)
    DFS     alphas   5.7e-6  against 7.2e-4     (bound 1e-4: the plain path's own is 4.0e-5)
            offsets  6.9e-7  against 2.5e-6     (bound 1e-5; the median offset-logit tensor)
            weights  7.1e-7  against 1.4e-4     (bound 1e-5)

The second-order step is not asserted: its finite difference crosses further kinks at
w +- eps*v and is more than 1e-2 off on 4 to 6 draws of 10, in both paths and in the
reference code (docs/benchmarks.md).
"""
from __future__ import annotations

import copy
import statistics

import pytest
import torch
import torch.nn.functional as F

from genotypes import FSSpec
from search.architect import Architect
from space.darts.supernet import SearchNetwork
from space.layers.fused import exact_batch_stats

pytestmark = pytest.mark.slow


def _batches(root, count: int = 2, batch: int = 4):
    """`count` batches of real images, one class after another, float64."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(),
                             transforms.Normalize((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))])
    ds = datasets.ImageFolder(str(root / "train"), tf)
    by_class: dict[int, list[int]] = {}
    for i, (_, y) in enumerate(ds.samples):
        by_class.setdefault(y, []).append(i)
    picks = [by_class[c % 10][c // 10] for c in range(count * batch)]
    xs = torch.stack([ds[i][0] for i in picks]).double()
    ys = torch.tensor([ds.samples[i][1] for i in picks])
    return [(xs[k * batch:(k + 1) * batch], ys[k * batch:(k + 1) * batch]) for k in range(count)]


def _gradients(net: SearchNetwork, data) -> dict[str, list[torch.Tensor]]:
    """The first-order architecture gradient (validation batch) and the weight gradients
    (training batch) of `net` in its own dtype, as the search steps them."""
    dtype = next(net.parameters()).dtype
    (xt, yt), (xv, yv) = [(x.to(dtype), y) for x, y in data]
    upper = net.arch_parameters() + net.offset_parameters()
    ids = {id(p) for p in upper}
    lower = [p for p in net.parameters() if id(p) not in ids]
    opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9, weight_decay=3e-4)
    arch = Architect(net, upper, lower, opt, order="first")
    return {"arch": arch.gradient(xt, yt, xv, yv, xi=0.025)[0],
            "weights": list(torch.autograd.grad(F.cross_entropy(net(xt), yt), lower))}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).norm() / b.norm())


DRAWS = 5


def figures(got: dict[str, list[torch.Tensor]], want: dict[str, list[torch.Tensor]]
            ) -> dict[str, float]:
    """One draw's errors: the alphas (the larger of normal and reduce), the median DFS
    offset-logit tensor (when the space has them) and the median weight tensor."""
    def median(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
        return statistics.median(_rel(x, y) for x, y in zip(a, b, strict=True) if y.norm() > 0)

    out = {"alphas": max(_rel(a, b) for a, b in zip(got["arch"][:2], want["arch"][:2],
                                                    strict=True)),
           "weights": median(got["weights"], want["weights"])}
    if len(want["arch"]) > 2:
        out["offsets"] = median(got["arch"][2:], want["arch"][2:])
    return out


def draw_figures(fs: FSSpec | None, data, seed: int, exact: bool = True) -> dict[str, float]:
    """`figures` of draw `seed`: the fast path in float32 against the plain one in float64
    (`exact=False`: with ATen's one-pass batch statistics, the error this test guards)."""
    torch.manual_seed(seed)
    base = SearchNetwork(8, 10, 5, fs=fs)
    truth = copy.deepcopy(base).double()
    truth.fast = False
    fast = exact_batch_stats(copy.deepcopy(base).float(), on=exact)
    return figures(_gradients(fast, data), _gradients(truth, data))


@pytest.mark.parametrize("fs", [None, FSSpec(2.0, True, 4)], ids=["fs-off", "dfs"])
def test_float32_gradients_match_float64_at_32px(fs, cifar_subset):
    torch.set_num_threads(2)
    data = _batches(cifar_subset)
    draws = [draw_figures(fs, data, seed) for seed in range(DRAWS)]
    # The bounds and the figures they stand against: the module's docstring.
    bounds = {"alphas": 1e-5, "weights": 1e-5} if fs is None else {
        "alphas": 1e-4, "offsets": 1e-5, "weights": 1e-5}
    for key, bound in bounds.items():
        assert statistics.median(d[key] for d in draws) < bound, (key, draws)
