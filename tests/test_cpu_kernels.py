"""space/layers/cpu_kernels.py computes the native ops' values and gradients, another way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from space.layers import cpu_kernels
from space.layers.cpu_kernels import batch_norm_train, conv1x1, depthwise_same

CL = torch.channels_last


def _input(c: int, hw: int = 9, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(c * 31 + hw)
    x = torch.randn(3, c, hw, hw, generator=g, dtype=dtype)
    return x.contiguous(memory_format=CL).requires_grad_()


def _twice_differentiable(out: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether a second backward through `out` works: ATen's ops allow it, the rewritten
    backwards (once differentiable) refuse it, which tells which path computed `out`."""
    (g,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    try:
        (gg,) = torch.autograd.grad(g.sum(), x, allow_unused=True)
    except RuntimeError:
        return False
    return gg is not None  # a rewritten backward's result is cut from the graph


def _grads(out: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(5)
    return torch.autograd.grad((out * torch.randn(out.shape, generator=g)).sum(), inputs,
                               retain_graph=True)


@pytest.mark.parametrize(("k", "d"), [(3, 2), (5, 2), (3, 1)])
def test_depthwise_same_equals_conv2d(k: int, d: int) -> None:
    x = _input(12)
    w = torch.randn(12, 1, k, k, requires_grad=True)
    pad = d * (k - 1) // 2
    got = depthwise_same(x, w, pad, d)
    want = F.conv2d(x, w, None, 1, pad, d, 12)
    assert not _twice_differentiable(got, x)  # the rewritten backward ran
    assert_close(got, want)
    for a, b in zip(_grads(got, [x, w]), _grads(want, [x, w]), strict=True):
        assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize(("c", "width"), [(8, 16), (24, 16), (16, 16), (12, 8), (16, 8)])
def test_batch_norm_train_equals_native(c: int, width: int, exact: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The vector width decides the path; set it so both paths run on any CPU.
    monkeypatch.setattr(cpu_kernels, "_WIDTH", width)
    x = _input(c)
    weight = torch.rand(c, requires_grad=True)
    bias = torch.randn(c, requires_grad=True)
    stats = [torch.zeros(c), torch.ones(c)]
    stats_ref = [t.clone() for t in stats]
    got = batch_norm_train(x, *stats, weight, bias, 0.1, 1e-5, exact)
    want = F.batch_norm(x, *stats_ref, weight, bias, True, 0.1, 1e-5)
    assert_close(got, want)
    if not exact:  # ATen's statistics and normalisation: the very same numbers
        assert torch.equal(got, want) and torch.equal(stats[1], stats_ref[1])
    assert got.is_contiguous(memory_format=CL)
    assert_close(stats[0], stats_ref[0])
    assert_close(stats[1], stats_ref[1])
    for a, b in zip(_grads(got, [x, weight, bias]), _grads(want, [x, weight, bias]), strict=True):
        assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Exact statistics, or a vector tail (the contiguous backward): the rewritten path.
    rewritten = exact or c % width != 0
    assert _twice_differentiable(got, x) != rewritten


@pytest.mark.parametrize("c", [8, 16, 24])
def test_batch_norm_statistics_are_float64_accurate_in_channels_last(c: int) -> None:
    """ATen's channels_last kernel sums the batch statistics in one float32 pass (relative
    variance error ~2e-6 at a search batch, 20x its contiguous kernel's), which put 1e-4 into
    the architecture gradients; these are two torch reductions."""
    g = torch.Generator().manual_seed(c)
    x = (3.0 + 0.5 * torch.randn(32, c, 32, 32, generator=g)).contiguous(memory_format=CL)
    stats = [torch.zeros(c), torch.ones(c)]
    y = batch_norm_train(x.requires_grad_(), *stats, None, None, 1.0, 1e-5, exact=True)
    x64 = x.detach().double().requires_grad_()
    y64 = F.batch_norm(x64, None, None, None, None, True, 0.0, 1e-5)
    var64 = x64.detach().var((0, 2, 3), unbiased=True)
    assert (stats[1].double() - var64).norm() / var64.norm() < 2e-7  # momentum 1: this batch's
    # The output is x * (invstd) - mean * invstd in one pass: float32 rounding times mean/std (6).
    assert (y.detach().double() - y64.detach()).norm() / y64.norm() < 1e-6
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (gx,) = torch.autograd.grad(y, x, gy.float().contiguous(memory_format=CL))
    (gx64,) = torch.autograd.grad(y64, x64, gy)
    assert (gx.double() - gx64).norm() / gx64.norm() < 1e-6


@pytest.mark.parametrize("exact", [True, False])
def test_batch_norm_without_affine_or_stats(exact: bool) -> None:
    x = _input(8)
    got = batch_norm_train(x, None, None, None, None, 0.1, 1e-5, exact)
    want = F.batch_norm(x, None, None, None, None, True, 0.1, 1e-5)
    assert_close(got, want)
    assert_close(_grads(got, [x])[0], _grads(want, [x])[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strided", [False, True])
def test_conv1x1_equals_conv2d(strided: bool) -> None:
    x = _input(16, hw=10)
    src = x[:, :, ::2, ::2] if strided else x  # FactorizedReduce feeds a strided view
    w = torch.randn(24, 16, 1, 1, requires_grad=True)
    got, want = conv1x1(src, w), F.conv2d(src, w)
    assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.shape == want.shape and got.is_contiguous(memory_format=CL)
    for a, b in zip(_grads(got, [x, w]), _grads(want, [x, w]), strict=True):
        assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_other_inputs_take_the_native_path_and_double_backward() -> None:
    """float64 (gradient checks) and contiguous tensors use the native, twice-differentiable ops."""
    x = _input(8, hw=5, dtype=torch.float64)
    w = torch.randn(8, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: depthwise_same(a, b, 1, 1), (x, w))
    bn = batch_norm_train(x, None, None, None, None, 0.1, 1e-5)
    assert _twice_differentiable(bn, x)
    plain = torch.randn(2, 8, 5, 5, requires_grad=True)
    assert _twice_differentiable(depthwise_same(plain, w.float(), 1, 1), plain)


def test_torch_func_transforms_work() -> None:
    x = _input(8, hw=9)
    w = torch.randn(8, 1, 3, 3)

    def f(w_: torch.Tensor) -> torch.Tensor:
        return depthwise_same(x, w_, 2, 2).square().sum()

    assert_close(torch.func.grad(f)(w), torch.autograd.grad(f(w.requires_grad_()), w)[0])
    y = torch.func.vmap(lambda t: batch_norm_train(t, None, None, None, None, 0.1, 1e-5))(
        torch.stack([x.detach(), 2 * x.detach()]))
    assert y.shape == (2, *x.shape)


def test_depthwise_with_bias_keeps_the_native_conv() -> None:
    from space.layers.cpu_kernels import depthwise

    dw = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=True)
    with torch.no_grad():
        dw.bias.fill_(5.0)
    x = _input(8, hw=16)
    assert_close(depthwise(dw, x), dw(x))


@pytest.mark.parametrize("width", [16, 32])
def test_the_supernet_takes_exact_statistics_and_retrain_networks_atens(
        width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search supernet marks every batch norm for exact statistics (its architecture
    gradients need them); retrain's networks keep ATen's, the same numbers as nn.BatchNorm2d
    (with the vector width at 32, the 16 channels take the contiguous-backward path)."""
    monkeypatch.setattr(cpu_kernels, "_WIDTH", width)
    import copy

    from genotypes import load_genotype
    from space.darts.network import NetworkCIFAR
    from space.darts.supernet import SearchNetwork
    from space.layers.fused import EXACT, batch_norm

    sup = SearchNetwork(16, 10, 5)
    bns = [m for m in sup.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) > 100 and all(getattr(m, EXACT, False) for m in bns)
    net = NetworkCIFAR(16, 10, 8, True, load_genotype("DARTS_V2"))
    assert not any(hasattr(m, EXACT) for m in net.modules())
    # A search batch at an offset mean: the marked BN's variance is float64's to 2e-7, the
    # unmarked one's output and statistics are nn.BatchNorm2d's, bit for bit.
    g = torch.Generator().manual_seed(0)
    x = (3.0 + 0.5 * torch.randn(32, 16, 32, 32, generator=g)).contiguous(memory_format=CL)
    var64 = x.double().var((0, 2, 3))
    marked, plain = sup.cells[0].preprocess1.op[2], net.cells[0].preprocess1.op[2]
    assert marked.num_features == plain.num_features == 16
    ref = copy.deepcopy(plain)
    for bn in (marked, plain, ref):
        bn.momentum = 1.0
    batch_norm(marked, x.requires_grad_())
    assert (marked.running_var.double() - var64).norm() / var64.norm() < 2e-7
    assert torch.equal(batch_norm(plain, x), ref(x))
    assert torch.equal(plain.running_var, ref.running_var)
