"""Float32 gradients of the search step against float64, on the shapes a search runs: C=8,
5 cells, a batch of 4 real 32x32 CIFAR-10 images, the fast path (channels_last, CPU kernels)
against the reference evaluation (fast=False) in float64.

Where a ReLU input of a draw lies within float32 rounding of zero, float32 and float64 take
the two sides of the kink and the gradients legitimately differ there, by up to ~1e-2 in the
tensors downstream of the flipped element, in any implementation (see
bench/arch_grad_precision.py and docs/benchmarks.md). Which draws flip depends on the
summation order of the CPU's kernels: on an AVX-512 machine (2026-12-07) the worst weight
tensor was over 1e-4 from float64 on 5 of 10 draws in the fast path and on 3 in the plain
path. On one of them a batch-norm output of 1.8e-7 (typical 0.59) before a ReLU in cell 2
put 6.9e-3 into a 1x1 conv's weight gradient, all of it in that element's output channel. A
single draw therefore cannot bound the worst tensor.

What these tests guard is the systematic error, which is on every draw: ATen's channels_last
batch norm summed its statistics in one float32 pass, which put 1.3e-4 into the first-order
architecture gradient on every draw, and the plain path does not have it. So each figure is
taken over DRAWS network initialisations (the same images), and its median over the draws,
which two flipped draws of five cannot move, is bounded at 1e-5: over ten times what the
fast and the plain path measure on draws without a flip, under a tenth of what the one-pass
statistics gave. The second-order step is not asserted: its finite difference crosses
further kinks at w +- eps*v and is 1e-2..1e-1 off on most draws, in both paths and in the
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


def _errors(base: SearchNetwork, data) -> tuple[float, float]:
    """The median tensor's error of the first-order architecture gradient (alphas, and the
    DFS offset logits when the space has them) and of the weight gradients, `base` in float32
    on the fast path against the plain path in float64."""
    truth = copy.deepcopy(base).double()
    truth.fast = False
    fast = copy.deepcopy(base).float()
    want, got = _gradients(truth, data), _gradients(fast, data)
    return tuple(statistics.median(_rel(a, b) for a, b in zip(got[k], want[k], strict=True)
                                   if b.norm() > 0) for k in ("arch", "weights"))


@pytest.mark.parametrize("fs", [None, FSSpec(2.0, True, 4)], ids=["fs-off", "dfs"])
def test_float32_gradients_match_float64_at_32px(fs, cifar_subset):
    torch.set_num_threads(2)
    data = _batches(cifar_subset)
    errors = []
    for seed in range(DRAWS):
        torch.manual_seed(seed)
        errors.append(_errors(SearchNetwork(8, 10, 5, fs=fs), data))
    # Each draw's median tensor measured 5e-7..8e-7 in the fast path and 3e-7..6e-7 in the
    # plain one where no kink flipped (docs/benchmarks.md); the one-pass batch norm put 1.3e-4
    # into the architecture gradient.
    for k in (0, 1):
        assert statistics.median(e[k] for e in errors) < 1e-5, (k, errors)
