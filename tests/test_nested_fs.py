"""Nested-ratio FS layers (space/layers/nested_fs.py) and the supernet's searched ratios."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from genotypes import PRIMITIVES, FSSpec
from space.darts.supernet import SearchNetwork
from space.layers.fs import DFSConv2d, FSConv2d
from space.layers.fs_model import offset_parameters, set_temperature
from space.layers.nested_fs import NestedFSConv2d, nested_layers, ratio_mix

RATIOS = (1.0, 2.0, 4.0, 8.0)
pytestmark = pytest.mark.usefixtures("one_thread")


def _separate(layer: NestedFSConv2d, i: int) -> torch.nn.Module:
    """The FSConv2d / DFSConv2d of ratio i, on the nested layer's prefix (and logits)."""
    r = layer.ratios[i]
    C_in, K = layer.in_channels, layer.out_channels
    if layer.dfs:
        ref = DFSConv2d(C_in, K, 1, ratio=r, num_offsets=layer.num_offsets)
    else:
        ref = FSConv2d(C_in, K, 1, ratio=r)
    ref = ref.to(layer.fs.dtype)
    with torch.no_grad():
        ref.fs.copy_(layer.fs[: ref.L])
        if layer.dfs:
            assert ref.num_candidates == layer.num_offsets  # no duplicate shifts at these sizes
            ref.offset_logits.copy_(layer.offset_logits[:, i])
    return ref


@pytest.mark.parametrize("dfs", [False, True])
@pytest.mark.parametrize(("C_in", "K"), [(64, 64), (144, 36)])  # paper-width 1x1 convs
def test_one_hot_ratio_equals_separate_layer(dfs: bool, C_in: int, K: int) -> None:
    """At a one-hot ratio weight, filters and the FS gradient (the paper's mean rule) equal
    those of a separate FS/DFS layer of that ratio on the prefix; the rest gets no gradient."""
    torch.manual_seed(0)
    layer = NestedFSConv2d(C_in, K, 1, ratios=RATIOS, dfs=dfs).double()
    if dfs:
        with torch.no_grad():
            layer.offset_logits.normal_()
    for i in range(len(RATIOS)):
        ref = _separate(layer, i)
        w = torch.zeros(1, len(RATIOS), dtype=torch.float64)
        w[0, i] = 1.0
        with ratio_mix(w):
            got = layer.filters()
        want = ref.filters()
        assert got.shape == want.shape == (K, C_in, 1, 1)
        assert torch.equal(got, want)
        probe = torch.randn_like(got)
        g_got, = torch.autograd.grad((got * probe).sum(), layer.fs)
        g_want, = torch.autograd.grad((want * probe).sum(), ref.fs)
        torch.testing.assert_close(g_got[: ref.L], g_want, rtol=1e-12, atol=1e-14)
        assert not g_got[ref.L:].any()


def test_mixed_ratios_are_the_weighted_sum() -> None:
    """At soft ratio weights the filters are sum_i w_i W_i (linear in the weights)."""
    torch.manual_seed(1)
    layer = NestedFSConv2d(32, 32, 1, ratios=RATIOS, dfs=True).double()
    with torch.no_grad():
        layer.offset_logits.normal_()
    w = torch.softmax(torch.randn(1, len(RATIOS), dtype=torch.float64), dim=-1)
    with ratio_mix(w):
        got = layer.filters()
    want = sum(w[0, i] * _separate(layer, i).filters() for i in range(len(RATIOS)))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_without_ratio_weights_is_one_clear_error() -> None:
    layer = NestedFSConv2d(8, 8, 1, ratios=RATIOS)
    with pytest.raises(RuntimeError, match="ratio_mix"):
        layer(torch.randn(1, 8, 4, 4))


def _ratio_net(dfs: bool = True, **kw) -> SearchNetwork:
    torch.manual_seed(0)
    net = SearchNetwork(C=8, layers=5, fs=FSSpec(2.0, dfs, 4), ratios=RATIOS, **kw)
    with torch.no_grad():
        for p in (net.ratios_normal, net.ratios_reduce):
            p.normal_()
    return net


def test_supernet_nests_every_candidate_op_but_not_the_preprocessing() -> None:
    net = _ratio_net()
    assert [p.shape for p in net.arch_parameters()[2:]] == [(14, 8, 4)] * 2
    for cell in net.cells:
        assert not nested_layers(cell.preprocess0) and not nested_layers(cell.preprocess1)
        for e, mixed in enumerate(cell._ops):
            for o, op in enumerate(mixed._ops):
                layers = nested_layers(op)
                expect = PRIMITIVES[o].startswith(("sep", "dil")) or (
                    PRIMITIVES[o] == "skip_connect" and cell.reduction and e in (0, 1, 2, 3, 5, 6, 9, 10))
                assert bool(layers) == expect
                assert all(m.slot == (int(cell.reduction) * 14 + e) * 8 + o for m in layers)
    # Offset logits of nested DFS layers are upper-level parameters too; temperature reaches them.
    ids = {id(p) for p in offset_parameters(net)}
    assert all(id(m.offset_logits) in ids for m in nested_layers(net))
    set_temperature(net, 0.5)
    assert all(m.temperature == 0.5 for m in nested_layers(net))


@pytest.mark.parametrize("dfs", [False, True])
def test_fast_path_equals_reference_with_searched_ratios(dfs: bool) -> None:
    """The batched FilterBank path and the reference evaluation agree on logits and on every
    architecture gradient (float64, 32x32 inputs)."""
    net = _ratio_net(dfs).double()
    ref = copy.deepcopy(net)
    ref.fast = False
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 3, 5, 9])
    losses = [F.cross_entropy(m(x), y) for m in (net, ref)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=1e-12)
    grads = [torch.autograd.grad(loss, [*m.arch_parameters(), *offset_parameters(m)])
             for loss, m in zip(losses, (net, ref), strict=True)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-13)
    assert grads[0][2].abs().sum() > 0  # the ratio logits do get a gradient


def test_genotype_records_the_strongest_ratio_per_kept_op() -> None:
    net = _ratio_net()
    g = net.genotype()
    for c, cell in enumerate(("normal", "reduce")):
        logits = (net.ratios_normal, net.ratios_reduce)[c]
        per = getattr(g.fs, f"{cell}_ratios")
        start = {0: 0, 1: 2, 2: 5, 3: 9}
        for k, (op, j) in enumerate(getattr(g, cell)):
            row = start[k // 2] + j
            o = PRIMITIVES.index(op)
            if net.ratio_has_fs[c, row, o]:
                assert per[k] == RATIOS[int(logits[row, o].argmax())]
            else:
                assert per[k] is None


def test_ratio_search_needs_fs() -> None:
    with pytest.raises(ValueError, match="need FS layers"):
        SearchNetwork(C=8, layers=5, fs=None, ratios=RATIOS)
