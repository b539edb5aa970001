"""Batched FS/DFS filters (space/layers/fs_bank.py) equal each layer's own, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call
from torch.testing import assert_close

from space.layers import fs as fsmod
from space.layers import fs_model
from space.layers.fs import DFSConv2d, FSConv2d
from space.layers.fs_bank import FilterBank, bank_of, batched_filters
from space.layers.fs_model import harden_model


def _handed(m: nn.Module) -> torch.Tensor | None:
    """The filters a bank handed to layer `m` in the current context, if any."""
    return (fsmod.provided_filters.get() or {}).get(id(m))


def _mixed_model() -> nn.Sequential:
    """FS and DFS layers of several shapes, candidate counts, temperatures and gradient rules."""
    torch.manual_seed(0)
    layers = [
        DFSConv2d(8, 8, 1, ratio=2.0, num_offsets=4),
        DFSConv2d(8, 16, 1, ratio=2.0, num_offsets=4, temperature=0.5),
        DFSConv2d(4, 6, 1, ratio=2.0, num_offsets=4),  # 2 distinct candidates: its own group
        DFSConv2d(8, 8, 3, padding=1, groups=2, ratio=3.0, num_offsets=3, grad_reduce="sum"),
        FSConv2d(8, 8, 1, ratio=2.0),
        FSConv2d(8, 8, 1, ratio=1.0),  # identity gather
        FSConv2d(16, 8, 3, padding=1, ratio=4.0, grad_reduce="sum"),
    ]
    model = nn.Sequential(*layers).double()
    with torch.no_grad():
        for p in fs_model.offset_parameters(model):
            p.normal_(std=2.0)
    return model


def _filters(model: nn.Module) -> list[torch.Tensor]:
    return [m.filters() for m in model]


def _loss(filters: list[torch.Tensor]) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return sum((w * torch.randn(w.shape, generator=g, dtype=w.dtype)).sum() for w in filters)


def test_batched_filters_equal_per_layer_values_and_gradients() -> None:
    model = _mixed_model()
    alone = _filters(model)
    params = list(model.parameters())
    g_alone = torch.autograd.grad(_loss(alone), params)
    with batched_filters(model):
        batched = _filters(model)
        assert all(_handed(m) is w for m, w in zip(model, batched, strict=True))
    assert fsmod.provided_filters.get() is None
    assert len(bank_of(model).groups) == 5  # DFS M'=4, M'=2, M'=3 (sum rule); FS mean, FS sum
    for a, b in zip(alone, batched, strict=True):
        assert a.shape == b.shape
        assert_close(b, a, rtol=1e-14, atol=1e-15)
    g_batched = torch.autograd.grad(_loss(batched), params)
    for a, b in zip(g_alone, g_batched, strict=True):
        assert_close(b, a, rtol=1e-12, atol=1e-14)


def test_groups_split_by_kind_and_rule() -> None:
    model = _mixed_model()
    bank = FilterBank(list(model))
    kinds = sorted((type(g.layers[0]).__name__, len(g.layers)) for g in bank.groups)
    # DFS with 4 candidates (2 layers), 2 candidates, 3 candidates (sum rule); FS mean, FS sum.
    assert len(bank.groups) == 5
    assert kinds == [("DFSConv2d", 1), ("DFSConv2d", 1), ("DFSConv2d", 2), ("FSConv2d", 1),
                     ("FSConv2d", 2)]


class _Sum(nn.Module):
    """Applies every layer of `layers` taking 8 input channels, inside a batched forward."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with batched_filters(self):
            return sum(m(x).sum() for m in self.layers if m.in_channels == 8)


def test_functional_call_parameters_are_the_ones_used() -> None:
    net = _Sum(_mixed_model())
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    swapped = {n: (p.detach() * 1.5).requires_grad_() for n, p in net.named_parameters()}
    got = functional_call(net, swapped, (x,))
    ref = _Sum(_mixed_model())
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(1.5)
    # The bank reads parameters at forward time: swapped-in tensors are the ones used.
    assert_close(got, ref(x), rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(got, list(swapped.values()), allow_unused=True)
    used = [g for n, g in zip(swapped, grads, strict=True) if n.split(".")[1] not in ("2", "6")]
    assert used and all(g is not None and g.abs().sum() > 0 for g in used)
    assert all(p.grad is None for p in net.parameters())


def _assert_bank_matches_layers(model: nn.Module, rtol: float = 1e-14, atol: float = 1e-15) -> None:
    alone = _filters(model)
    params = list(model.parameters())
    g_alone = torch.autograd.grad(_loss(alone), params, allow_unused=True)
    with batched_filters(model):
        batched = _filters(model)
        assert all(_handed(m) is w for m, w in zip(model, batched, strict=True))
    for a, b in zip(alone, batched, strict=True):
        assert_close(b, a, rtol=rtol, atol=atol)
    g_batched = torch.autograd.grad(_loss(batched), params, allow_unused=True)
    for a, b in zip(g_alone, g_batched, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close(b, a, rtol=rtol * 100, atol=atol * 100)


def test_rebuilds_after_offsets_temperature_and_hardening() -> None:
    model = _mixed_model()
    with batched_filters(model):
        pass
    bank = bank_of(model)
    model[4].set_offsets(torch.randint(0, model[4].L, (8,)))
    model[0].temperature = 0.2
    _assert_bank_matches_layers(model)
    assert bank_of(model) is bank  # repacked, not rebuilt
    harden_model(model)
    assert not any(isinstance(m, DFSConv2d) for m in model)
    _assert_bank_matches_layers(model)
    assert bank_of(model) is not bank
    assert {type(g.layers[0]) for g in bank_of(model).groups} == {FSConv2d}


def test_a_layer_swapped_in_by_hand_is_batched() -> None:
    """The bank checks the model's current modules, not a counter only
    harden_model bumps: a layer set by hand is rebuilt into the bank and batched."""
    model = _mixed_model()
    _assert_bank_matches_layers(model)
    bank = bank_of(model)
    model[4] = FSConv2d(8, 8, 1, ratio=4.0).double()
    _assert_bank_matches_layers(model)  # every layer, the new one too, gets batched filters
    assert bank_of(model) is not bank
    outer = nn.Sequential(_mixed_model())  # a whole parent swapped: its layers are new too
    with batched_filters(outer):
        pass
    first = bank_of(outer)
    outer[0] = _mixed_model()
    with batched_filters(outer):
        assert all(_handed(m) is not None for _, m in fs_model.fs_layers(outer))
    assert bank_of(outer) is not first


def test_rebuilds_after_dtype_and_gradient_rule_changes() -> None:
    model = _mixed_model()
    model[1].temperature = 0.7  # two temperatures in one group: a per-row scale tensor
    _assert_bank_matches_layers(model)
    model.float()  # packed scales and inverse counts must follow the dtype
    _assert_bank_matches_layers(model, rtol=1e-5, atol=1e-6)
    model.double()
    _assert_bank_matches_layers(model)
    model[0].grad_reduce = "sum"  # now belongs with the sum-rule layers
    model[4].grad_reduce = "sum"
    _assert_bank_matches_layers(model)


def test_copies_get_their_own_bank() -> None:
    import copy

    model = _mixed_model()
    _assert_bank_matches_layers(model)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(2.0)
    _assert_bank_matches_layers(twin)
    assert bank_of(twin) is not bank_of(model)
    assert all(m in list(twin) for g in bank_of(twin).groups for m in g.layers)


def test_threads_never_see_each_others_filters() -> None:
    import threading

    models = [_mixed_model() for _ in range(3)]
    for i, m in enumerate(models):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(float(i))
    want = [[w.detach() for w in _filters(m)] for m in models]
    errors: list[str] = []
    barrier = threading.Barrier(len(models))

    def work(i: int) -> None:
        for _ in range(20):
            with batched_filters(models[i]):
                barrier.wait(timeout=30)  # all threads inside a batched forward at once
                for m, w in zip(models[i], want[i], strict=True):
                    if not torch.allclose(m.filters(), w, rtol=1e-12, atol=1e-12):
                        errors.append(f"thread {i}: wrong filters")
                barrier.wait(timeout=30)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and fsmod.provided_filters.get() is None


def test_interleaved_threads_leave_no_filters_behind() -> None:
    """Thread A enters, B enters, A leaves, B leaves: with filters kept as module state, B
    would restore A's stale filters on the layers for good."""
    import copy
    import threading

    model = _mixed_model()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, torch.Tensor | None] = {}

    def a() -> None:
        with batched_filters(model):
            a_in.set()
            b_in.wait(30)
            seen["a"] = _handed(model[0])
        a_out.set()

    def b() -> None:
        a_in.wait(30)
        with batched_filters(model):
            b_in.set()
            a_out.wait(30)
            seen["b"] = _handed(model[0])

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["a"] is not None and seen["b"] is not None and seen["a"] is not seen["b"]
    with torch.no_grad():
        model[0].fs.mul_(2.0)
    assert_close(model[0].filters(), copy.deepcopy(model[0]).filters(), rtol=0, atol=0)


def test_provided_filters_restored_on_error_and_skipped_in_eval() -> None:
    model = _mixed_model()
    with pytest.raises(RuntimeError, match="boom"), batched_filters(model):
        assert _handed(model[0]) is not None
        raise RuntimeError("boom")
    assert fsmod.provided_filters.get() is None
    model.eval()
    with torch.no_grad(), batched_filters(model):
        # Inference uses each layer's own filter cache instead.
        assert fsmod.provided_filters.get() is None
        w = model[0].filters()
        assert model[0].filters() is w


def test_shared_layer_computed_once() -> None:
    layer = DFSConv2d(8, 8, 1, ratio=2.0)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    bank = FilterBank([m for _, m in fs_model.fs_layers(model)] + [layer])
    assert sum(len(g.layers) for g in bank.groups) == 1
