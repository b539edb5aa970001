"""Batched filters: every FS/DFS layer of a model computed by a handful of tensor ops.

A DFS layer's filters cost about twenty small ops (softmax, soft read counts, gather, mix),
and the DARTS supernet has some 90 such layers per cell: per-layer, that is thousands of tiny
ops per forward and as many autograd nodes, a large share of a CPU search step. A FilterBank
concatenates the FS vectors (and offset logits) of all layers of one kind and runs
space/layers/fs_gather.py's functions once on the packed tensors, the same functions a layer runs
alone, then hands each layer its slice for the duration of the forward.

Parameters are read from the layers at every forward, so `torch.func.functional_call` (the
second-order architect swaps weights in) and optimiser steps are seen; the packed index is
rebuilt when a layer's offsets or temperature change, and the whole bank when a layer's
kind, gradient rule, device or dtype does, or when any module on the path from the model to
a layer is no longer the one the bank was built from (`harden_model`'s swaps and layers
swapped in by hand alike: the bank checks the model's current modules, a few dictionary
reads per layer). An FS layer put where there was none (in place of a plain convolution)
computes its own filters, correct but unbatched, until the bank is rebuilt. Banks are kept
per model object in a weak mapping (a deep copy or a DataParallel replica gets its own), not
in the model. The filters are handed over through a context variable, not module state, so
threads never see each other's.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch import Tensor

from space.layers import fs as fsmod
from space.layers.fs_gather import dfs_filters, fs_filters, mixing_weights
from space.layers.fs_model import is_fs_layer
from space.layers.nested_fs import NestedFSConv2d, current_ratio_weights


def _kind(m: nn.Module) -> tuple:
    """What layers must share to be packed together: kind (FS, DFS with its number of
    candidates, or nested with its ratio and offset counts), gradient rule, device, dtype."""
    if isinstance(m, NestedFSConv2d):
        kind: object = ("nested", len(m.ratios), m.num_offsets)
    else:
        kind = m.num_candidates if isinstance(m, fsmod.DFSConv2d) else 0
    return (kind, m.grad_reduce, m.fs.device, m.fs.dtype)


def bank_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, layer) of every layer a bank computes: FS, DFS and nested."""
    return [(name, m) for name, m in model.named_modules()
            if is_fs_layer(m) or isinstance(m, NestedFSConv2d)]


class _Group:
    """Layers of one `_kind`: their filters come from one packed call."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.layers = layers
        self.kind = _kind(layers[0])
        self.dfs, self.mean = self.kind[0] > 0, self.kind[1] == "mean"
        self._key: tuple | None = None

    def _state_key(self) -> tuple:
        return tuple(m.packing_key() for m in self.layers)

    def _pack(self) -> tuple:
        # Each layer's index shifted into the concatenated FS vector (and, for DFS, its rows
        # shifted into the concatenated logits), from the layers' Packing records.
        packs = [m.packing() for m in self.layers]
        idx, rows = [], []
        base = base_rows = 0
        for p in packs:
            idx.append(p.index + base)
            base += p.length
            if self.dfs:
                rows.append(p.row_of + base_rows)
                base_rows += p.rows
        self.index = torch.cat(idx)
        self.sizes = [p.size for p in packs]
        self.shapes = [p.shape for p in packs]
        if self.dfs:
            self.rows = torch.cat(rows)
            scales = [p.logit_scale for p in packs]
            # One temperature for all (the usual case): the same Python float a layer uses.
            self.scale = scales[0] if len(set(scales)) == 1 else torch.cat([
                m.offset_logits.new_full((p.rows, 1), s)
                for m, p, s in zip(self.layers, packs, scales, strict=True)
            ])
        else:
            multi = self.mean and any(p.multi_read for p in packs)
            self.inv = torch.cat([p.inv_count for p in packs]) if multi else None
        return tuple(p.key for p in packs)

    def filters(self) -> list[Tensor]:
        key = self._state_key()
        if key != self._key:
            self._key = self._pack()
        fs = torch.cat([m.fs for m in self.layers])
        if self.dfs:
            p = mixing_weights(torch.cat([m.offset_logits for m in self.layers]), self.scale)
            flat = dfs_filters(fs, p, self.index, self.rows, self.mean)
        else:
            flat = fs_filters(fs, self.index, self.inv)
        return [w.view(s) for w, s in zip(flat.split(self.sizes), self.shapes, strict=True)]


class _NestedGroup:
    """Nested-ratio layers of one `_kind`: one packed `dfs_filters` call with R*M candidates
    per filter, weighted by ratio weight x offset weight (space/layers/nested_fs.py)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.layers = layers
        self.kind = _kind(layers[0])
        self.mean = self.kind[1] == "mean"
        self._key: tuple | None = None

    def _pack(self) -> tuple:
        idx, rows, slots = [], [], []
        base = base_rows = 0
        for m in self.layers:
            idx.append(m._index + base)
            rows.append(m._rows + base_rows)
            slots.append(torch.full((m.K,), m.slot, dtype=torch.long, device=m._index.device))
            base += m.L
            base_rows += m.K
        self.index, self.rows, self.slot_of = torch.cat(idx), torch.cat(rows), torch.cat(slots)
        self.sizes = [m.K * m.n for m in self.layers]
        self.shapes = [(m.K, m.in_channels, *m.kernel_size) for m in self.layers]
        scales = {m.logit_scale for m in self.layers}
        self.scale = scales.pop() if len(scales) == 1 else torch.cat([
            m.fs.new_full((m.K * len(m.ratios), 1), m.logit_scale) for m in self.layers])
        return self._state_key()

    def _state_key(self) -> tuple:
        return tuple((m.slot, m.temperature) for m in self.layers)

    def filters(self) -> list[Tensor]:
        if self._state_key() != self._key:
            self._key = self._pack()
        w = current_ratio_weights().index_select(0, self.slot_of)  # (filters, R)
        first = self.layers[0]
        if first.offset_logits is None:
            q = w
        else:
            M = first.num_offsets
            logits = torch.cat([m.offset_logits.view(-1, M) for m in self.layers])
            q = (mixing_weights(logits, self.scale).view(*w.shape, M) * w.unsqueeze(-1))
            q = q.flatten(1)
        fs = torch.cat([m.fs for m in self.layers])
        flat = dfs_filters(fs, q, self.index, self.rows, self.mean)
        return [f.view(s) for f, s in zip(flat.split(self.sizes), self.shapes, strict=True)]


class FilterBank:
    """The FS/DFS layers of a model, grouped for batched filter computation (see the module
    docstring). Use `batched_filters(model)` rather than building one by hand."""

    def __init__(self, layers: Sequence[nn.Module],
                 links: Sequence[tuple[weakref.ref, str, nn.Module]] = ()) -> None:
        groups: dict[tuple, list[nn.Module]] = {}
        seen: set[int] = set()
        for m in layers:
            if id(m) in seen:  # a layer shared by two parents is computed once
                continue
            seen.add(id(m))
            groups.setdefault(_kind(m), []).append(m)
        self.groups = [_NestedGroup(g) if isinstance(g[0], NestedFSConv2d) else _Group(g)
                       for g in groups.values()]
        self.links = list(links)

    @classmethod
    def of(cls, model: nn.Module) -> FilterBank:
        """The bank of `model`'s FS/DFS layers, remembering the path to each (`current`)."""
        named = bank_layers(model)
        return cls([m for _, m in named], _links(model, [n for n, _ in named]))

    def current(self) -> bool:
        """Still valid: every module on the paths the bank was built from is still in place,
        and every layer still of its group's kind."""
        return (all(getattr(parent(), key, None) is child for parent, key, child in self.links)
                and all(_kind(m) == g.kind for g in self.groups for m in g.layers))

    @contextmanager
    def provide(self) -> Iterator[None]:
        """Compute every layer's filters now; inside the block (in this thread or task) each
        layer's `filters()` returns them."""
        handed = {id(m): w for g in self.groups for m, w in zip(g.layers, g.filters(), strict=True)}
        outer = fsmod.provided_filters.get()
        token = fsmod.provided_filters.set({**outer, **handed} if outer else handed)
        try:
            yield
        finally:
            fsmod.provided_filters.reset(token)


def _links(model: nn.Module, names: list[str]) -> list[tuple[weakref.ref, str, nn.Module]]:
    """(weak reference to the parent, key, child) of every step from `model` to the named
    layers, each once. Weak: the bank is held for the model (`_BANKS`) and must not keep
    the model alive."""
    links: dict[tuple[int, str], tuple[weakref.ref, str, nn.Module]] = {}
    for name in names:
        parent = model
        for key in name.split(".") if name else ():
            child = parent.get_submodule(key)
            links[(id(parent), key)] = (weakref.ref(parent), key, child)
            parent = child
    return list(links.values())


#: Each model's bank, held no longer than the model.
_BANKS: weakref.WeakKeyDictionary[nn.Module, FilterBank] = weakref.WeakKeyDictionary()


def bank_of(model: nn.Module) -> FilterBank | None:
    """The bank `batched_filters` keeps for `model` (None before its first batched forward)."""
    return _BANKS.get(model)


@contextmanager
def batched_filters(model: nn.Module) -> Iterator[None]:
    """Run the block (a forward of `model`) with all FS/DFS filters computed in one batch.

    Only where gradients flow or the model trains: in eval mode under no_grad each layer's own
    filter cache is cheaper still. The bank is kept for the model (`bank_of`) and rebuilt when
    it no longer fits (`FilterBank.current`)."""
    if not (model.training or torch.is_grad_enabled()):
        yield
        return
    bank = _BANKS.get(model)
    if bank is None or not bank.current():
        bank = _BANKS[model] = FilterBank.of(model)
    if not bank.groups:
        yield
        return
    with bank.provide():
        yield
