"""The search space: DARTS parity with fs off, FS/DFS placement, the fast paths, the supernet API."""

from __future__ import annotations

import copy
import hashlib
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from genotypes import PRIMITIVES, FSSpec, Genotype, validate
from space.darts.mixed import MixedOp
from space.darts.ops import DilConv, FactorizedReduce, SepConv
from space.darts.search_cell import SearchCell
from space.darts.supernet import SearchNetwork
from space.layers.fs import DFSConv2d, FSConv2d
from space.layers.fs_model import fs_layers, is_fs_layer
from space.layers.fused import fast_mode, set_fast

FS = FSSpec(ratio=2.0, dfs=False, num_offsets=4)
DFS = FSSpec(ratio=2.0, dfs=True, num_offsets=4)
SPECS = {"off": None, "fs": FS, "dfs": DFS}

# Reference figures, obtained by running quark0/darts (commit f276dd3, cnn/model_search.py,
# Network(C, 10, layers, nn.CrossEntropyLoss()) with .cuda() patched out) on this machine:
# sum(p.numel() for p in net.parameters()) (its alphas are not parameters there) ...
REF_PARAMS = {(16, 8): 1_930_618, (8, 5): 394_210}
# ... and, for Network(8, 10, 5), sha256 over the lines f"{key}:{tuple(shape)}" of its
# state_dict (2650 entries), and over f"{name}:{type(module).__name__}" of named_modules()
# of cells[1] (a reduction cell, 632 modules) and cells[2] (a normal cell after a reduction,
# 600 modules; the cell itself excluded).
REF_STATE_DICT = (2650, "c0dbad86116862a8e912de4440b6b9a5f9d7159539259b68bddb41a208e99ce5")
REF_CELL_MODULES = {
    1: (632, "6afb8d113b5413f35dad574f1fa5f4eb8d2b3bbe2aa3ba6a338a36e8fd9a10d4"),
    2: (600, "edf29da5a3ac567d2aa2dfb4e163c17a4558df25d7b60a37d3bf1b3dbd027976"),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest)


def _sha(lines: list[str]) -> tuple[int, str]:
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _small(fs: FSSpec | None = None, **kw) -> SearchNetwork:
    kw = {"C": 4, "layers": 3, **kw}
    return SearchNetwork(fs=fs, **kw)


# -- parity with DARTS (fs off) -------------------------------------------------------------


@pytest.mark.parametrize(("C", "layers"), list(REF_PARAMS))
def test_parameter_count_equals_reference(C: int, layers: int) -> None:
    net = SearchNetwork(C, 10, layers)
    assert sum(p.numel() for p in net.weight_parameters()) == REF_PARAMS[C, layers]
    # Plus the two (14, 8) alpha matrices, parameters here.
    assert sum(p.numel() for p in net.parameters()) == REF_PARAMS[C, layers] + 2 * 14 * 8


def test_state_dict_keys_equal_reference() -> None:
    sd = SearchNetwork(8, 10, 5).state_dict()
    keys = [k for k in sd if not k.startswith("alphas_")]
    assert _sha([f"{k}:{tuple(sd[k].shape)}" for k in keys]) == REF_STATE_DICT
    for key in ("stem.0.weight", "cells.0.preprocess0.op.1.weight", "cells.0._ops.0._ops.4.op.1.weight",
                "cells.0._ops.0._ops.1.1.running_mean", "cells.2.preprocess0.conv_1.weight",
                "cells.1._ops.0._ops.3.conv_2.weight", "classifier.weight"):
        assert key in sd
    assert sd["alphas_normal"].shape == sd["alphas_reduce"].shape == (14, len(PRIMITIVES))


@pytest.mark.parametrize("cell", sorted(REF_CELL_MODULES))
def test_module_structure_equals_reference(cell: int) -> None:
    c = SearchNetwork(8, 10, 5).cells[cell]
    lines = [f"{n}:{type(m).__name__}" for n, m in c.named_modules() if n]
    assert _sha(lines) == REF_CELL_MODULES[cell]


def test_op_layout_readable() -> None:
    """The same structure as above, spelled out for one edge."""
    edge = SearchNetwork(8, 10, 5).cells[0]._ops[0]
    assert [type(m).__name__ for m in edge._ops] == [
        "Zero", "Sequential", "Sequential", "Identity", "SepConv", "SepConv", "DilConv", "DilConv"]
    assert [type(m).__name__ for m in edge._ops[4].op] == [
        "ReLU", "Conv2d", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "Conv2d", "BatchNorm2d"]
    assert [type(m).__name__ for m in edge._ops[1]] == ["MaxPool2d", "BatchNorm2d"]
    assert not any(m.affine for m in edge.modules() if isinstance(m, nn.BatchNorm2d))


def test_alphas_init_like_darts() -> None:
    torch.manual_seed(3)
    net = _small()
    for a in net.arch_parameters():
        assert a.shape == (14, 8) and 0 < a.abs().max() < 1e-2


# -- FS placement -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [FS, DFS, FSSpec(ratio=4.0, dfs=True, num_offsets=2)])
def test_fs_layers_exactly_at_the_1x1_convs(spec: FSSpec) -> None:
    plain, net = SearchNetwork(8, 10, 5), SearchNetwork(8, 10, 5, fs=spec)
    pointwise = {n for n, m in plain.named_modules()
                 if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)}
    assert {n for n, _ in fs_layers(net)} == pointwise
    kind = DFSConv2d if spec.dfs else FSConv2d
    for _, m in fs_layers(net):
        assert type(m) is kind and m.ratio == spec.ratio
        if spec.dfs:
            assert m.num_offsets == spec.num_offsets
    # Everything else stays a plain conv: the stem and the depthwise convs.
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            assert name == "stem.0" or (m.groups == m.in_channels == m.out_channels), name


def test_fs_layer_count_per_op() -> None:
    net = SearchNetwork(8, 10, 5, fs=DFS)
    per = {SepConv: 2, DilConv: 1, FactorizedReduce: 2}
    for cls, n in per.items():
        for m in net.modules():
            if isinstance(m, cls):
                assert sum(is_fs_layer(c) for c in m.modules()) == n
    # 14 edges x (2 sep x 2 + 2 dil x 1) + 2 preprocess (+1 more for a FactorizedReduce) +
    # 8 stride-2 skip FactorizedReduces x 2 in a reduction cell.
    expected = 0
    for cell in net.cells:
        expected += 14 * 6 + 2 + isinstance(cell.preprocess0, FactorizedReduce) + 16 * cell.reduction
    assert len(fs_layers(net)) == expected == 464


# -- the fast paths equal the DARTS computation --------------------------------------------


def _grads(out: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    g = torch.randn_like(out, generator=torch.Generator().manual_seed(5))
    return torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("spec", ["off", "dfs"])
def test_mixed_op_skipping_none_equals_naive_sum(stride: int, spec: str) -> None:
    op = MixedOp(4, stride, SPECS[spec])
    ref = copy.deepcopy(op)
    alphas = torch.randn(8, requires_grad=True)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    fast = op(x, F.softmax(alphas, dim=-1))
    w = F.softmax(alphas, dim=-1)
    naive = sum(wk * m(x) for wk, m in zip(w, ref._ops, strict=True))  # all 8 ops, Zero included
    torch.testing.assert_close(fast, naive)
    params, ref_params = list(op.parameters()), list(ref.parameters())
    ga, gb = _grads(fast, [x, alphas, *params]), _grads(naive, [x, alphas, *ref_params])
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(op.buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("reduction", "reduction_prev"), [(False, False), (True, False), (False, True)])
def test_cell_fast_path_equals_naive(reduction: bool, reduction_prev: bool) -> None:
    cell = SearchCell(4, 4, 6, 8, 4, reduction, reduction_prev, fs=DFS)
    ref = copy.deepcopy(cell)
    alphas = (1e-1 * torch.randn(14, 8)).requires_grad_()
    s0 = torch.randn(2, 6, 18 if reduction_prev else 9, 18 if reduction_prev else 9)
    s1 = torch.randn(2, 8, 9, 9)
    fast = cell(s0, s1, F.softmax(alphas, dim=-1))
    naive = set_fast(ref, False)(s0, s1, F.softmax(alphas, dim=-1))
    torch.testing.assert_close(fast, naive)
    ga = _grads(fast, [alphas, *cell.parameters()])
    gb = _grads(naive, [alphas, *ref.parameters()])
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Shared pooling outputs still leave every edge's BN with DARTS's running statistics.
    for a, b in zip(cell.buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("spec", ["off", "fs", "dfs"])
def test_network_fast_equals_naive(spec: str) -> None:
    torch.manual_seed(0)
    net = _small(SPECS[spec])
    ref = copy.deepcopy(net)
    ref.fast = False
    x = torch.randn(2, 3, 16, 16)
    for mode in ("train", "eval"):
        net.train(mode == "train")
        ref.train(mode == "train")
        out, expect = net(x), ref(x)
        torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-5)
        ga = _grads(out, list(net.parameters()))
        gb = _grads(expect, list(ref.parameters()))
        for a, b in zip(ga, gb, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


# -- the supernet API ---------------------------------------------------------------------------


@pytest.mark.parametrize(("hw", "classes", "in_ch"), [((32, 32), 10, 3), ((28, 28), 10, 1),
                                                      ((64, 48), 100, 3), ((8, 8), 7, 3),
                                                      ((13, 11), 5, 4)])
def test_forward_shapes(hw: tuple[int, int], classes: int, in_ch: int) -> None:
    net = _small(DFS, num_classes=classes, in_channels=in_ch)
    out = net(torch.randn(2, in_ch, *hw))
    assert out.shape == (2, classes) and torch.isfinite(out).all()
    out.sum().backward()
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, in_ch, *hw)).shape == (1, classes)


@pytest.mark.parametrize("spec", ["off", "fs", "dfs"])
def test_parameter_groups_partition(spec: str) -> None:
    net = _small(SPECS[spec])
    groups = [net.arch_parameters(), net.offset_parameters(), net.weight_parameters()]
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in net.parameters()}
    assert net.arch_parameters() == [net.alphas_normal, net.alphas_reduce]
    assert len(net.offset_parameters()) == (len(fs_layers(net)) if spec == "dfs" else 0)
    assert (net.offset_entropy() is None) == (spec != "dfs")


@pytest.mark.parametrize("spec", ["off", "dfs"])
def test_genotype_and_arch_state(spec: str) -> None:
    net = _small(SPECS[spec])
    with torch.no_grad():
        net.alphas_normal[:, PRIMITIVES.index("sep_conv_3x3")] += 1.0
    g = net.genotype()
    assert isinstance(g, Genotype) and g.fs == SPECS[spec]
    validate(g)
    assert all(op == "sep_conv_3x3" for op, _ in g.normal)
    state = net.arch_state()
    assert len(state["normal"]) == len(state["reduce"]) == 14
    assert all(abs(sum(row) - 1) < 1e-5 and len(row) == 8 for row in state["normal"])
    if spec == "dfs":
        assert 0 < net.offset_entropy() <= torch.log(torch.tensor(4.0)).item() + 1e-6


def test_deterministic_under_seed() -> None:
    def run() -> torch.Tensor:
        torch.manual_seed(7)
        net = _small(DFS)
        return net(torch.randn(2, 3, 16, 16))

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)


def test_functional_call() -> None:
    net = _small(DFS)
    x = torch.randn(2, 3, 16, 16)
    tensors = {k: v.clone() for k, v in {**dict(net.named_parameters()), **dict(net.named_buffers())}.items()}
    torch.testing.assert_close(functional_call(net, tensors, (x,)), net(x))
    # Swapped-in alphas and weights are the ones used, and get the gradients.
    alphas = torch.randn(14, 8, requires_grad=True)
    w = tensors["classifier.weight"].detach().clone().requires_grad_()
    out = functional_call(net, {**tensors, "alphas_normal": alphas, "classifier.weight": w}, (x,))
    assert not torch.allclose(out, net(x))
    ga, gw = torch.autograd.grad(out.square().sum(), [alphas, w])
    assert ga.abs().sum() > 0 and gw.abs().sum() > 0
    assert net.alphas_normal.grad is None


def test_state_dict_round_trip() -> None:
    torch.manual_seed(1)
    a, b = _small(DFS), _small(DFS)
    b.load_state_dict(a.state_dict())
    a.eval()
    b.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


# -- optional: against a quark0/darts checkout ---------------------------------------------


@pytest.mark.skipif(not os.environ.get("DARTS_REFERENCE"),
                    reason="set DARTS_REFERENCE to a quark0/darts checkout's cnn/ directory")
def test_against_reference_checkout() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from search_step import _load_reference

    ms = _load_reference(os.environ["DARTS_REFERENCE"])
    torch.manual_seed(0)
    ref = ms.Network(8, 10, 5, nn.CrossEntropyLoss())
    torch.manual_seed(0)
    net = SearchNetwork(8, 10, 5)
    # Same creation order: a seed gives the same weights and alphas.
    net_sd = {k: v for k, v in net.state_dict().items() if not k.startswith("alphas_")}
    assert list(net_sd) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(v, net_sd[k]), k
    assert torch.equal(ref.alphas_normal, net.alphas_normal)
    missing, unexpected = net.load_state_dict(ref.state_dict(), strict=False)
    assert sorted(missing) == ["alphas_normal", "alphas_reduce"] and not unexpected
    x = torch.randn(2, 3, 32, 32)
    expect = ref(x)
    net.fast = False
    torch.testing.assert_close(net(x), expect, rtol=0, atol=0)
    net.fast = True
    torch.testing.assert_close(net(x), expect, rtol=1e-4, atol=1e-5)


# -- module hooks -------------------------------------------------------------------------------


def _op_layers(net: nn.Module) -> list[nn.Module]:
    """The layers inside the cells' ops (what the fast forwards compute without calling)."""
    return [m for cell in net.cells for m in cell.modules()
            if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.ReLU) or is_fs_layer(m)]


@pytest.mark.parametrize("spec", ["off", "dfs"])
def test_hooks_fire_in_the_evaluation_network(spec: str) -> None:
    """In the plain forward (set_fast off) a hook on any layer of an op fires, and the
    network's output and gradients are those of the unhooked fast forward (float64, the
    DARTS_V2 network at 32x32, C=16, 8 cells)."""
    from genotypes import load_genotype
    from space.darts.network import NetworkCIFAR

    torch.manual_seed(0)
    fs = {"off": None, "dfs": FSSpec(ratio=2.0, dfs=True, num_offsets=4)}[spec]
    net = NetworkCIFAR(16, 10, 8, False, load_genotype("DARTS_V2"), fs=fs).double().train()
    hooked_net = set_fast(copy.deepcopy(net), False)
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    fired: set[int] = set()
    layers = _op_layers(hooked_net)
    for m in layers:
        m.register_forward_hook(lambda m, i, o: fired.add(id(m)))
    back: list[int] = []
    bn = hooked_net.cells[0]._ops[0].op[3]  # the first SepConv's first BN
    bn.register_full_backward_hook(lambda m, gi, go: back.append(1))
    out, expect = hooked_net(x)[0], net(x)[0]
    assert fired == {id(m) for m in layers}  # every layer of every op, none skipped
    torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-12)
    ga, gb = _grads(out, list(hooked_net.parameters())), _grads(expect, list(net.parameters()))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert back == [1]


@pytest.mark.slow  # float64 supernet passes with hooks on every module: tens of seconds
@pytest.mark.parametrize("share", ["all", "half"])
def test_hooks_fire_on_every_module_of_the_supernet(share: str) -> None:
    """In the supernet's plain forward (fast off) a hook on any module fires: the stem and
    its BN, the pools and their BNs, skip_connect, `none`, the ops, the mixed ops, the cells.
    With hooks on every module, or on a seeded half of them, the output and every gradient,
    alphas included, and the running statistics are those of the unhooked fast path
    (float64, C=8, 5 cells, 32x32)."""
    torch.manual_seed(0)
    net = SearchNetwork(8, 10, 5, fs=DFS).double().train()
    hooked_net = copy.deepcopy(net)
    hooked_net.fast = False
    mods = [m for m in hooked_net.modules() if not isinstance(m, nn.ModuleList)]
    if share == "half":
        keep = torch.randperm(len(mods), generator=torch.Generator().manual_seed(0))
        mods = [mods[i] for i in keep[: len(mods) // 2].tolist()]
    fired: set[int] = set()
    for m in mods:
        m.register_forward_hook(lambda m, i, o: fired.add(id(m)))
    # A ReLU module's hook sees the op's input itself, as in DARTS, not the shared ReLU(x).
    relu_in: list[float] = []
    sep = hooked_net.cells[1]._ops[0]._ops[PRIMITIVES.index("sep_conv_3x3")]
    for relu in (hooked_net.cells[1].preprocess1.op[0], sep.op[0]):
        relu.register_forward_hook(lambda m, i, o: relu_in.append(i[0].min().item()))
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    out, expect = hooked_net(x), net(x)
    assert len(fired) == len(mods) > 100  # every hooked module was called
    assert len(relu_in) == 2 and max(relu_in) < 0
    torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-12)
    ga, gb = _grads(out, list(hooked_net.parameters())), _grads(expect, list(net.parameters()))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # Running statistics too (the pools' BNs update once per edge, hooked or shared).
    for a, b in zip(hooked_net.buffers(), net.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # float64 supernet backward with hooks on every module: tens of seconds
def test_backward_hooks_and_kept_outputs_in_the_supernet() -> None:
    """In the plain forward, full backward hooks on a cell, a mixed op, a ReLU-led op, a
    preprocessing op and a pool fire once with nonzero input gradients (the cell's for s1 is
    its preprocessing's), and forward hooks that keep their outputs get what DARTS computes:
    the op unscaled, nothing written into afterwards. A global full backward hook runs too.
    Output and weight gradients are the unhooked fast path's (float64, C=8, 5 cells, 32x32)."""
    torch.manual_seed(0)
    net = SearchNetwork(8, 10, 5, fs=DFS).double().train()
    hooked_net = copy.deepcopy(net)
    hooked_net.fast = False
    cell = hooked_net.cells[1]
    mixed = cell._ops[0]
    watched = {"cell": cell, "mixed": mixed, "op": mixed._ops[mixed._order[0]],
               "pre": cell.preprocess1, "pool": mixed._ops[PRIMITIVES.index("max_pool_3x3")]}
    assert watched["op"].fused == "relu_led"
    grads: dict[str, list] = {}
    kept: dict[str, list] = {}
    for name, m in watched.items():
        m.register_full_backward_hook(
            lambda m, gi, go, name=name: grads.setdefault(name, []).append(gi))
        m.register_forward_hook(
            lambda m, i, o, name=name: kept.setdefault(name, []).append((i, o, o.detach().clone())))
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    out, expect = hooked_net(x), net(x)
    torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-12)
    ga, gb = _grads(out, list(hooked_net.parameters())), _grads(expect, list(net.parameters()))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert {n: len(g) for n, g in grads.items()} == dict.fromkeys(watched, 1)
    for name, (gi,) in grads.items():
        assert gi[0] is not None and gi[0].abs().sum() > 0, name
    assert grads["cell"][0][1].abs().sum() > 0  # s1, a positional input of the cell
    torch.testing.assert_close(grads["cell"][0][1], grads["pre"][0][0], rtol=1e-10, atol=1e-14)
    for name, [(_, o, o_then)] in kept.items():
        assert torch.equal(o, o_then), name  # nothing wrote into a hooked module's output
    (i, o, _), = kept["op"]
    torch.testing.assert_close(o, copy.deepcopy(watched["op"]).forward_reference(i[0]))
    (i, o, _), = kept["mixed"]
    torch.testing.assert_close(o, copy.deepcopy(mixed).forward_reference(*i[:2]))
    handle = nn.modules.module.register_module_full_backward_hook(lambda m, gi, go: None)
    try:
        again, xg = copy.deepcopy(hooked_net), x.clone().requires_grad_()
        y = again(xg)
        torch.testing.assert_close(y, expect, rtol=1e-10, atol=1e-12)
        y.sum().backward()
    finally:
        handle.remove()


def test_global_hooks_and_the_search_ops() -> None:
    """A global forward hook sees the ops' layers in the plain forward; a hook on a MixedOp's
    SepConv conv fires there, with the fast path's output, and not in the fused forward,
    which computes the layer without calling it."""
    torch.manual_seed(0)
    net = _small(SPECS["dfs"]).double()
    hooked_net = copy.deepcopy(net)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    conv = hooked_net.cells[0]._ops[0]._ops[PRIMITIVES.index("sep_conv_3x3")].op[2]
    calls: list[int] = []
    conv.register_forward_hook(lambda m, i, o: calls.append(1))
    torch.testing.assert_close(hooked_net(x), net(x), rtol=1e-10, atol=1e-12)
    assert calls == []
    with fast_mode(hooked_net, False):
        torch.testing.assert_close(hooked_net(x), net(x), rtol=1e-10, atol=1e-12)
    assert calls == [1] and hooked_net.cells[0]._ops[0].fast  # switched back
    seen: list[type] = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(type(m)))
    try:
        sep = set_fast(copy.deepcopy(net.cells[0]._ops[0]._ops[PRIMITIVES.index("sep_conv_3x3")]),
                       False)
        sep(torch.randn(2, 4, 8, 8, dtype=torch.float64))
    finally:
        handle.remove()
    assert seen.count(nn.BatchNorm2d) == 2 and seen.count(nn.ReLU) == 2
    # A hook on the op's Sequential itself (DARTS's `op` attribute) fires too.
    sep = set_fast(copy.deepcopy(net.cells[0]._ops[0]._ops[PRIMITIVES.index("sep_conv_3x3")]),
                   False)
    sep.op.register_forward_hook(lambda m, i, o: calls.append(2))
    sep(torch.randn(2, 4, 8, 8, dtype=torch.float64))
    assert calls == [1, 2]
