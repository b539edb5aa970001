"""Checks that need a CUDA GPU (marked `cuda`: skipped without one; bench/device_check.sh runs
them first): the second-order gradient under the default TF32 settings against float64, the
AMP weight step, the layout of the supernet's activations, runtime.deterministic, and the
CUDA RNG state a checkpoint keeps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common import checkpoint, runtime
from common.weight_step import WeightStep
from genotypes import FSSpec
from search.architect import Architect
from space.darts.supernet import SearchNetwork

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")
DFS = FSSpec(2.0, True, 4)


def _net(dtype=torch.float32, fs=DFS):
    torch.manual_seed(0)
    net = SearchNetwork(C=4, num_classes=3, layers=3, fs=fs).to(CUDA, dtype)
    upper = net.arch_parameters() + net.offset_parameters()
    lower = [p for p in net.parameters() if id(p) not in {id(q) for q in upper}]
    return net, upper, lower


def _rel(a, b) -> float:
    a = torch.cat([t.double().flatten() for t in a])
    b = torch.cat([t.double().flatten() for t in b])
    return float((a - b).norm() / b.norm())


def test_hessian_vector_product_in_fp32_matches_float64_with_tf32_allowed():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 16, 16, generator=g)
    y = torch.randint(0, 3, (8,), generator=g)
    out = {}
    for dtype in (torch.float64, torch.float32):
        net, upper, lower = _net(dtype, fs=None)  # DFS's fp32 second order is noisier (README)
        opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9)
        arch = Architect(net, upper, lower, opt, order="second")
        torch.manual_seed(2)
        v = [torch.randn(p.shape, dtype=torch.float64).to(CUDA, dtype) for p in lower]
        with runtime.full_fp32():
            out[dtype] = arch.hessian_vector_product(v, x.to(CUDA, dtype), y.to(CUDA))
    assert torch.backends.cudnn.allow_tf32  # restored after the block
    # fp32 on CPU: about 1e-5; TF32 convolutions would round the perturbation away.
    assert _rel(out[torch.float32], out[torch.float64]) < 1e-3


def test_amp_weight_step_is_finite_and_bf16_is_native_here():
    net, upper, lower = _net()
    opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9)
    step = WeightStep(opt, runtime.grad_scaler(CUDA, True), CUDA, True, clipped=lower, clip=5.0,
                      frozen=upper)
    x = torch.randn(8, 3, 16, 16, device=CUDA)
    y = torch.randint(0, 3, (8,), device=CUDA)
    loss, _, bad = step(lambda a, b: (F.cross_entropy(lo := net(a), b), lo), x, y)
    assert bad is None and loss == loss
    if torch.cuda.get_device_capability(CUDA) >= (8, 0):
        assert runtime.amp_dtype() == torch.bfloat16


@pytest.mark.parametrize("cl", [False, True])
def test_supernet_activations_follow_the_input_layout_on_cuda(cl):
    net, _, _ = _net()
    net = runtime.channels_last(net, cl)
    seen = []
    net.stem[0].register_forward_hook(lambda m, i, o: seen.append(
        o.is_contiguous(memory_format=torch.channels_last)))
    x = runtime.to_memory_format(torch.randn(4, 3, 16, 16, device=CUDA), cl)
    net(x)
    assert seen == [cl]


def test_deterministic_mode_repeats_a_dfs_step_bit_for_bit():
    runtime.set_determinism(True)
    try:
        results = []
        for _ in range(2):
            net, upper, lower = _net()
            runtime.deterministic_pooling(net)
            opt = torch.optim.SGD(lower, lr=0.05, momentum=0.9)
            g = torch.Generator().manual_seed(3)
            x = torch.randn(8, 3, 16, 16, generator=g).to(CUDA)
            y = torch.randint(0, 3, (8,), generator=g).to(CUDA)
            for _ in range(2):
                opt.zero_grad()
                F.cross_entropy(net(x), y).backward()
                opt.step()
            results.append([p.detach().clone() for p in net.parameters()])
        assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
    finally:
        runtime.set_determinism(False)


def test_checkpoint_keeps_this_devices_rng_state_only():
    state = checkpoint.rng_state()
    assert isinstance(state["cuda"], torch.Tensor)
    before = torch.rand(3, device=CUDA)
    checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(3, device=CUDA), before)
