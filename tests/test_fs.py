"""FSConv2d / DFSConv2d: equivalence with nn.Conv2d, indexing, gradient rules, cache, DFS."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from genotypes import FSSpec
from space.layers.fs import DFSConv2d, FSConv2d
from space.layers.fs_model import (
    fs_layers,
    harden_model,
    is_fs_layer,
    offset_parameters,
    pointwise_conv,
    set_temperature,
    weight_parameters,
)

# (in, out, kernel, stride, padding, dilation, groups)
GEOMETRIES = [
    (4, 6, 1, 1, 0, 1, 1),
    (4, 6, 3, 1, 1, 1, 1),
    (4, 6, (3, 2), 2, (1, 0), 1, 1),
    (6, 4, 3, 1, 2, 2, 2),
    (5, 5, 3, 2, 1, 1, 5),  # depthwise
    (4, 8, (1, 5), 1, (0, 2), (1, 2), 4),
]


@pytest.mark.parametrize("geo", GEOMETRIES)
@pytest.mark.parametrize("bias", [False, True])
def test_ratio1_equals_conv2d_both_ways(geo, bias):
    cin, cout, k, s, p, d, g = geo
    conv = nn.Conv2d(cin, cout, k, s, p, d, g, bias=bias).double()
    fs = FSConv2d(cin, cout, k, s, p, d, g, bias=bias).double()
    assert fs.L == conv.weight.numel() and fs.compression == 1.0
    for direction in ("conv->fs", "fs->conv"):
        with torch.no_grad():
            if direction == "conv->fs":
                fs.fs.copy_(conv.weight.flatten())
                if bias:
                    fs.bias.copy_(conv.bias)
            else:
                fs.fs.normal_()
                conv.weight.copy_(fs.fs.view_as(conv.weight))
                if bias:
                    fs.bias.normal_()
                    conv.bias.copy_(fs.bias)
        assert torch.equal(fs.filters(), conv.weight)
        x1 = torch.randn(2, cin, 9, 8, dtype=torch.float64, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_(True)
        y1, y2 = conv(x1), fs(x2)
        assert_close(y2, y1, rtol=0, atol=0)
        g_out = torch.randn_like(y1)
        conv.zero_grad()
        fs.zero_grad()
        y1.backward(g_out)
        y2.backward(g_out)
        assert_close(fs.fs.grad, conv.weight.grad.flatten(), rtol=1e-12, atol=1e-12)
        assert_close(x2.grad, x1.grad, rtol=1e-12, atol=1e-12)
        if bias:
            assert_close(fs.bias.grad, conv.bias.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geo", GEOMETRIES)
@pytest.mark.parametrize("ratio", [1.0, 1.7, 2.0, 3.0])
def test_filters_shape_and_compression(geo, ratio):
    cin, cout, k, s, p, d, g = geo
    kh, kw = (k, k) if isinstance(k, int) else k
    n = cin // g * kh * kw
    for cls in (FSConv2d, DFSConv2d):
        layer = cls(cin, cout, k, s, p, d, g, ratio=ratio)
        assert layer.filters().shape == (cout, cin // g, kh, kw)
        assert layer.L == math.ceil(cout * n / ratio) and layer.fs.numel() == layer.L
        assert layer.compression == pytest.approx(cout * n / layer.L)
        conv = nn.Conv2d(cin, cout, k, s, p, d, g)
        x = torch.randn(1, cin, 10, 9)
        assert layer(x).shape == conv(x).shape


def _tiny() -> FSConv2d:
    # K=3 filters of n=4 in L=ceil(12/1.5)=8: offsets floor(k*8/3) = 0, 2, 5.
    layer = FSConv2d(4, 3, 1, ratio=1.5).double()
    with torch.no_grad():
        layer.fs.copy_(torch.arange(8.0, dtype=torch.float64))
    return layer


# Hand-written reads: filter 2 wraps around (5, 6, 7, 0).
TINY_READS = [[0, 1, 2, 3], [2, 3, 4, 5], [5, 6, 7, 0]]


def test_wraparound_indexing_hand_checked():
    layer = _tiny()
    assert layer.L == 8 and layer.offsets.tolist() == [0, 2, 5]
    expected = torch.tensor(TINY_READS, dtype=torch.float64).view(3, 4, 1, 1)
    assert torch.equal(layer.filters(), expected)


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_gradient_rule_hand_count(reduce):
    layer = _tiny()
    layer.grad_reduce = reduce
    G = torch.randn(3, 4, dtype=torch.float64)
    (layer.filters().view(3, 4) * G).sum().backward()
    total, count = [0.0] * 8, [0] * 8
    for k, reads in enumerate(TINY_READS):
        for j, e in enumerate(reads):
            total[e] += G[k, j].item()
            count[e] += 1
    assert count == [2, 1, 2, 2, 1, 2, 1, 1]
    want = [t / c if reduce == "mean" else t for t, c in zip(total, count, strict=True)]
    assert_close(layer.fs.grad, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)


def test_mean_gradient_through_conv_and_double_backward():
    layer = _tiny()
    ref = _tiny()
    ref.grad_reduce = "sum"
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    assert torch.equal(layer(x), ref(x))
    layer(x).square().sum().backward()
    ref(x).square().sum().backward()
    count = torch.tensor([2, 1, 2, 2, 1, 2, 1, 1], dtype=torch.float64)
    assert_close(layer.fs.grad, ref.fs.grad / count, rtol=1e-12, atol=1e-12)
    # Double backward (e.g. gradient penalties / second-order DARTS) goes through.
    (g,) = torch.autograd.grad(layer(x).square().sum(), layer.fs, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), layer.fs)
    assert torch.isfinite(gg).all() and gg.abs().sum() > 0


def test_unread_elements_get_zero_grad():
    layer = FSConv2d(4, 3, 1, ratio=1.5)
    layer.set_offsets(torch.tensor([0, 0, 1]))  # reads 0..4 only; 5, 6, 7 unread
    layer(torch.randn(1, 4, 2, 2)).sum().backward()
    assert torch.isfinite(layer.fs.grad).all()
    assert torch.equal(layer.fs.grad[5:], torch.zeros(3))


@pytest.mark.parametrize("cls", [FSConv2d, DFSConv2d])
@pytest.mark.parametrize("ratio", [0.5, 0.999, 13.0, 1e9, float("inf"), float("nan")])
def test_ratio_errors_are_one_line(cls, ratio):
    with pytest.raises(ValueError) as err:
        cls(4, 3, 1, ratio=ratio)  # K=3, n=4: ratio 13 gives L=1 < 4
    msg = str(err.value)
    assert "\n" not in msg and f"{cls.__name__}(4, 3, kernel_size=(1, 1)" in msg
    assert "ratio" in msg


def test_same_padding_and_reset():
    layer = DFSConv2d(4, 6, (3, 5), padding="same", ratio=2.0)
    assert layer(torch.randn(1, 4, 7, 8)).shape == (1, 6, 7, 8)
    with torch.no_grad():
        layer.offset_logits.normal_()
    layer.reset_parameters()
    assert torch.equal(layer.offset_logits, torch.zeros_like(layer.offset_logits))


def test_largest_valid_ratio():
    layer = FSConv2d(4, 3, 1, ratio=3.0)  # L = n: filters are rotations of one vector
    assert layer.L == 4 and layer.offsets.tolist() == [0, 1, 2]
    for k in range(3):
        assert torch.equal(layer.filters()[k].flatten(), layer.fs.roll(-k))


@pytest.mark.parametrize("cls", [FSConv2d, DFSConv2d])
def test_eval_cache_reuse_and_invalidation(cls):
    layer = cls(8, 8, 1, ratio=2.0)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer.eval()
    with torch.no_grad():
        w1 = layer.filters()
        assert layer.filters() is w1 and not w1.requires_grad
    with torch.inference_mode():
        assert layer.filters() is w1
    layer.train()
    out = layer(torch.randn(2, 8, 3, 3))
    wt = layer.filters()
    assert wt is not w1 and wt.requires_grad and layer.filters() is not wt
    out.square().sum().backward()
    opt.step()  # in-place update bumps the parameter version
    layer.eval()
    with torch.no_grad():
        w2 = layer.filters()
        assert w2 is not w1 and not torch.equal(w2, w1)
        assert layer.filters() is w2
        layer.fs.mul_(2.0)
        w3 = layer.filters()
        assert w3 is not w2 and torch.equal(w3, layer._gather())
    # Eval mode with gradients wanted: a fresh, differentiable gather.
    w4 = layer.filters()
    assert w4.requires_grad and w4 is not w3


def test_dfs_cache_follows_temperature_and_loaded_state():
    layer = DFSConv2d(8, 8, 1, ratio=2.0).eval()
    with torch.no_grad():
        layer.offset_logits.normal_()
        w1 = layer.filters()
        layer.temperature = 0.1
        w2 = layer.filters()
    assert not torch.equal(w1, w2)
    other = DFSConv2d(8, 8, 1, ratio=2.0).eval()
    other.load_state_dict(layer.state_dict())
    with torch.no_grad():
        other.temperature = 0.1
        assert torch.equal(other.filters(), w2)


def test_init_matches_conv2d():
    conv = nn.Conv2d(64, 128, 3, bias=True)
    for ratio in (1.0, 2.0):
        fs = FSConv2d(64, 128, 3, bias=True, ratio=ratio)
        bound = 1.0 / math.sqrt(fs.n)
        assert conv.weight.abs().max() <= bound and fs.fs.abs().max() <= bound
        assert fs.fs.abs().max() > 0.99 * bound and fs.bias.abs().max() <= bound
        assert fs.fs.std().item() == pytest.approx(conv.weight.std().item(), rel=0.02)
        assert fs.fs.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def _candidates(layer: DFSConv2d) -> torch.Tensor:
    """(K, M', n) candidate filters by explicit loops (reference)."""
    out = torch.empty(layer.K, layer.num_candidates, layer.n, dtype=layer.fs.dtype)
    for k in range(layer.K):
        for m, c in enumerate(layer.shifts.tolist()):
            for j in range(layer.n):
                out[k, m, j] = layer.fs[(layer.offsets[k] + c + j) % layer.L]
    return out


def test_dfs_uniform_mix_at_init_and_temperature():
    layer = DFSConv2d(4, 6, 1, ratio=2.0, num_offsets=4).double()
    # s = L/K = 2 < M = 4: floor(m*2/4) = 0, 0, 1, 1 -> two distinct candidates.
    assert layer.shifts.tolist() == [0, 1] and layer.offset_logits.shape == (6, 2)
    assert torch.equal(layer.offset_logits, torch.zeros(6, 2))
    cand = _candidates(layer)
    assert_close(layer.filters().view(6, 4), cand.mean(1), rtol=1e-12, atol=1e-12)
    assert_close(layer.offset_entropy(), torch.tensor(math.log(2), dtype=torch.float64))
    with torch.no_grad():
        layer.offset_logits.copy_(torch.randn(6, 2, dtype=torch.float64))
    for t in (1.0, 0.3):
        layer.temperature = t
        p = torch.softmax(layer.offset_logits / t, 1)
        want = (p.unsqueeze(-1) * cand).sum(1)
        assert_close(layer.filters().view(6, 4), want, rtol=1e-12, atol=1e-12)
    assert not torch.equal(layer.filters(), _with_temp(layer, 1.0))
    p = torch.softmax(layer.offset_logits / 0.3, 1)
    assert_close(layer.mixing_weights(), p, rtol=1e-12, atol=1e-15)
    assert_close(layer.offset_entropy(), -(p * p.log()).sum(1).mean(), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError):
        layer.temperature = 0.0


def _with_temp(layer: DFSConv2d, t: float) -> torch.Tensor:
    old, layer.temperature = layer.temperature, t
    w = layer.filters()
    layer.temperature = old
    return w


@pytest.mark.parametrize(("ratio", "M", "shifts"), [
    (2.0, 4, [0, 1]),  # K=8, n=4, L=16, s=2
    (4.0, 4, [0]),  # s=1: all candidates collapse onto the offset
    (1.0, 4, [0, 1, 2, 3]),  # s=4
    (1.0, 3, [0, 1, 2]),  # floor(m*4/3)
    (1.5, 5, [0, 1, 2]),  # L=22, s=2.75: floor(m*2.75/5) = 0,0,1,1,2
])
def test_dfs_duplicate_candidates_dropped(ratio, M, shifts):
    layer = DFSConv2d(4, 8, 1, ratio=ratio, num_offsets=M)
    assert layer.shifts.tolist() == shifts
    assert layer.num_candidates == len(shifts) and layer.offset_logits.shape == (8, len(shifts))
    assert layer.filters().shape == (8, 4, 1, 1)


def test_dfs_harden_exact_with_one_hot_logits():
    layer = DFSConv2d(6, 8, 3, padding=1, groups=2, bias=True, ratio=2.0, num_offsets=4)
    choice = torch.randint(0, layer.num_candidates, (8,))
    with torch.no_grad():
        layer.offset_logits.zero_()
        layer.offset_logits[torch.arange(8), choice] = 1e4
    p = layer.mixing_weights()
    assert torch.equal(p, nn.functional.one_hot(choice, layer.num_candidates).float())
    assert layer.offset_entropy().item() == 0.0
    hard = layer.harden()
    assert type(hard) is FSConv2d and hard.L == layer.L and hard.grad_reduce == layer.grad_reduce
    assert (hard.stride, hard.padding, hard.groups) == (layer.stride, layer.padding, layer.groups)
    assert torch.equal(hard.offsets, (layer.offsets + layer.shifts[choice]) % layer.L)
    assert torch.equal(hard.fs, layer.fs) and torch.equal(hard.bias, layer.bias)
    x = torch.randn(2, 6, 7, 7)
    assert torch.equal(hard.filters(), layer.filters())
    assert torch.equal(hard(x), layer(x))
    # The DFS mean rule at one-hot logits is exactly the hardened layer's FS mean rule.
    hard(x).square().sum().backward()
    layer(x).square().sum().backward()
    assert_close(layer.fs.grad, hard.fs.grad, rtol=1e-6, atol=1e-7)


def test_dfs_gradients_and_weighted_mean_rule():
    layer = DFSConv2d(4, 6, 1, ratio=2.0, num_offsets=4).double()
    ref = DFSConv2d(4, 6, 1, ratio=2.0, num_offsets=4, grad_reduce="sum").double()
    with torch.no_grad():
        layer.offset_logits.normal_()
        ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    layer(x).square().sum().backward()
    ref(x).square().sum().backward()
    assert layer.offset_logits.grad.abs().sum() > 0 and layer.fs.grad.abs().sum() > 0
    assert_close(layer.offset_logits.grad, ref.offset_logits.grad, rtol=1e-12, atol=1e-12)
    # Hand soft count: each read of element e by (k, m) weighs p[k, m].
    p = layer.mixing_weights().detach()
    count = torch.zeros(layer.L, dtype=torch.float64)
    for k in range(6):
        for m, c in enumerate(layer.shifts.tolist()):
            for j in range(4):
                count[(layer.offsets[k] + c + j) % layer.L] += p[k, m]
    assert_close(layer.fs.grad, ref.fs.grad / count, rtol=1e-10, atol=1e-12)


def test_parameter_partition_and_helpers():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), DFSConv2d(8, 8, 1, ratio=2.0), nn.BatchNorm2d(8),
        FSConv2d(8, 8, 1, ratio=2.0), DFSConv2d(8, 4, 1, ratio=2.0, bias=True),
    )
    names = [n for n, _ in fs_layers(model)]
    assert names == ["1", "3", "4"] and is_fs_layer(model[3]) and not is_fs_layer(model[0])
    offs, ws = offset_parameters(model), weight_parameters(model)
    assert [id(p) for p in offs] == [id(model[1].offset_logits), id(model[4].offset_logits)]
    assert model[1].offset_parameters() == [model[1].offset_logits]
    ids = sorted(id(p) for p in offs + ws)
    assert ids == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    set_temperature(model, 0.5)
    assert model[1].temperature == 0.5 and model[4].temperature == 0.5


def test_harden_model_in_place_and_state_dict_round_trip():
    model = nn.Sequential(DFSConv2d(8, 8, 1, ratio=2.0), nn.ReLU(),
                          nn.Sequential(DFSConv2d(8, 8, 3, padding=1, ratio=3.0)))
    with torch.no_grad():
        for p in offset_parameters(model):
            p.normal_(std=3.0)
    model = model.double().eval()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    argmax = [m.offset_logits.argmax(1) for _, m in fs_layers(model)]
    out = harden_model(model)
    assert out is model and all(type(m) is FSConv2d for _, m in fs_layers(model))
    assert not model.training and model[0].fs.dtype == torch.float64
    for (_, m), a in zip(fs_layers(model), argmax, strict=True):
        assert a.ne(0).any() and not torch.equal(m.offsets, torch.arange(m.K) * m.L // m.K)
    y = model(x)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    fresh = nn.Sequential(FSConv2d(8, 8, 1, ratio=2.0), nn.ReLU(),
                          nn.Sequential(FSConv2d(8, 8, 3, padding=1, ratio=3.0))).double().eval()
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh(x), y)
    assert harden_model(nn.Sequential(nn.ReLU())) is not None


def test_deterministic_under_seed():
    def run() -> torch.Tensor:
        torch.manual_seed(123)
        layer = DFSConv2d(8, 8, 3, padding=1, ratio=2.0)
        return layer(torch.randn(2, 8, 6, 6))

    assert torch.equal(run(), run())


def test_pointwise_conv_factory_and_repr():
    plain = pointwise_conv(8, 16, stride=2)
    assert type(plain) is nn.Conv2d and plain.bias is None and plain.stride == (2, 2)
    assert plain.kernel_size == (1, 1) and plain.padding == (0, 0)
    dfs = pointwise_conv(8, 16, 2, fs=FSSpec(ratio=2.0, dfs=True, num_offsets=3))
    assert type(dfs) is DFSConv2d and dfs.num_offsets == 3 and dfs.stride == (2, 2)
    assert dfs.bias is None and dfs.ratio == 2.0
    fs = pointwise_conv(8, 16, fs=FSSpec(ratio=4.0, dfs=False))
    assert type(fs) is FSConv2d and fs.L == 32 and fs.bias is None
    assert "ratio=4" in repr(fs) and "L=32" in repr(fs)
