"""The DARTS search network (supernet) with FS/DFS 1x1 convolutions.

With ``fs=None`` it is quark0/darts ``cnn/model_search.py``'s Network module for module: the
same parameters in the same creation order (so a seed gives the same initial weights), and the
same ``state_dict`` keys (``stem.0.weight``, ``cells.0.preprocess0.op.1.weight``,
``cells.0._ops.0._ops.4.op.1.weight``, ``classifier.weight``, ...); only the alphas differ,
being registered parameters here (``alphas_normal``/``alphas_reduce``) instead of loose tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from genotypes import PRIMITIVES, FSSpec, Genotype, derive
from space.darts.search_cell import SearchCell
from space.layers import fs_model
from space.layers.fs_bank import batched_filters
from space.layers.fused import batch_norm, exact_batch_stats, set_fast
from space.layers.nested_fs import nest_layers, ratio_mix


class CellWeights(NamedTuple):
    """What the edges of one kind of cell compute with, as an algorithm's weighting gives it:
    `ops` (edges, ops) op weights; `edges` (edges,) node-sum weights or None; `sampled` the
    op index each edge runs (a hard sample: `ops` rows are one-hot) or None (all ops run)."""

    ops: Tensor
    edges: Tensor | None = None
    sampled: list[int] | None = None


#: net, reduction -> CellWeights: how a search algorithm turns the architecture parameters
#: into the weights of one forward (search/algorithms/).
Weighting = Callable[["SearchNetwork", bool], CellWeights]


def softmax_weighting(net: SearchNetwork, reduction: bool) -> CellWeights:
    """DARTS's relaxation, the default: softmax over each edge's ops, and with edge
    normalisation (PC-DARTS) each edge weighted by its softmaxed beta."""
    alphas = net.alphas_reduce if reduction else net.alphas_normal
    # Softmax per call, never cached: functional_call may swap the alphas between calls.
    return CellWeights(F.softmax(alphas, dim=-1), net.edge_weights(reduction))


def node_softmax(betas: Tensor, steps: int) -> Tensor:
    """PC-DARTS's edge normalisation: softmax of the betas over each node's incoming edges
    (node i has 2 + i), concatenated in edge order."""
    out, start = [], 0
    for i in range(steps):
        out.append(F.softmax(betas[start:start + 2 + i], dim=-1))
        start += 2 + i
    return torch.cat(out)


class SearchNetwork(nn.Module):
    """DARTS supernet: stem (3x3 conv + BN, `stem_multiplier * C` channels), `layers` search
    cells with reductions at layers//3 and 2*layers//3, global average pooling and a linear
    classifier. Every 1x1 conv is an FS layer (a DFS layer when ``fs.dfs``) when `fs` is given.

    `ratios` (with `fs`): the FS layers of every candidate op become nested-ratio layers
    (space/layers/nested_fs.py) mixed by the op's ratio logits ``ratios_normal``/``ratios_reduce``,
    (edges, ops, len(ratios)) architecture parameters shared by all cells of a kind, as the
    alphas are. The cell preprocessing keeps `fs.ratio`.

    `partial_channels` K > 1: every edge mixes its ops on 1/K of the channels
    (space/darts/partial.py); `edge_norm`: (edges,) logits ``betas_normal``/``betas_reduce``
    weight each edge in its node's sum by their softmax over the node's incoming edges
    (PC-DARTS; created after the alphas, as there). `weighting` (an attribute a search
    algorithm may replace) turns the architecture parameters into each forward's
    `CellWeights`; the default is `softmax_weighting`.

    `fast=False` evaluates exactly as the reference code does (all 8 ops including `none`,
    ``sum(w * op(x))``, contiguous memory format): the in-repo speed baseline. `fast=True` (the
    default) computes the same function faster; see space/darts/mixed.py and the README.
    """

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        fs: FSSpec | None = None,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        in_channels: int = 3,
        *,
        fast: bool = True,
        ratios: tuple[float, ...] | list[float] | None = None,
        partial_channels: int = 1,
        edge_norm: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= multiplier <= steps:
            raise ValueError(f"multiplier={multiplier} must be in 1..steps={steps}")
        self._C, self._num_classes, self._layers = C, num_classes, layers
        self._steps, self._multiplier = steps, multiplier
        self.fs = fs
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            self.cells.append(
                SearchCell(steps, multiplier, C_prev_prev, C_prev, C_curr, reduction, reduction_prev, fs,
                           partial=partial_channels)
            )
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        # Created last, as in DARTS, so a seed gives the reference's weights and alphas.
        k = steps * (steps + 3) // 2  # edges per cell: 14 for DARTS's 4 steps
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(k, len(PRIMITIVES)))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(k, len(PRIMITIVES)))
        self.edge_norm = edge_norm
        if edge_norm:
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(k))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(k))
        self.weighting: Weighting = softmax_weighting
        self.ratios: tuple[float, ...] | None = None
        if ratios is not None:
            self._nest(tuple(sorted(float(r) for r in ratios)), k)
        # Accurate float32 batch statistics on CPU: the architecture gradients need them.
        exact_batch_stats(self)
        self.fast = fast

    @property
    def fast(self) -> bool:
        """The fused forward (True) or the plain one that calls every layer as a module, as
        the DARTS code does (False; module hooks fire there). Setting it switches every op,
        mixed op and cell (space.layers.fused.set_fast)."""
        return self.__dict__.get("_fast", True)

    @fast.setter
    def fast(self, on: bool) -> None:
        self.__dict__["_fast"] = bool(on)
        set_fast(self, on)

    def _nest(self, ratios: tuple[float, ...], edges: int) -> None:
        """Make every candidate op's FS layers nested-ratio layers; slot of (cell kind,
        edge, op) = (kind * edges + edge) * ops + op, kind 0 normal, 1 reduce."""
        if self.fs is None:
            raise ValueError("searched ratios need FS layers: use fs mode fs or dfs, not off")
        ops = len(PRIMITIVES)
        self.ratios = ratios
        # has_fs[kind, edge, op]: the op has FS layers there (skip_connect only when strided).
        has_fs = torch.zeros(2, edges, ops, dtype=torch.bool)
        for cell in self.cells:
            kind = int(cell.reduction)
            for e, mixed in enumerate(cell._ops):
                for o, op in enumerate(mixed._ops):
                    n = nest_layers(op, ratios, (kind * edges + e) * ops + o)
                    has_fs[kind, e, o] = n > 0
        self.register_buffer("ratio_has_fs", has_fs, persistent=False)
        self.ratios_normal = nn.Parameter(torch.zeros(edges, ops, len(ratios)))
        self.ratios_reduce = nn.Parameter(torch.zeros(edges, ops, len(ratios)))

    def ratio_weights(self) -> Tensor | None:
        """softmax over ratios of every op's logits, (2 * edges * ops, R) in slot order."""
        if self.ratios is None:
            return None
        logits = torch.cat([self.ratios_normal, self.ratios_reduce])
        return F.softmax(logits.flatten(0, 1), dim=-1)

    def edge_weights(self, reduction: bool) -> Tensor | None:
        """The node-sum weight of every edge (`node_softmax` of the betas), None without
        edge normalisation."""
        if not self.edge_norm:
            return None
        return node_softmax(self.betas_reduce if reduction else self.betas_normal, self._steps)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images (any size >= 8 px: the network pools globally)."""
        w_ratio = self.ratio_weights()
        if w_ratio is None:
            return self._forward(x)
        with ratio_mix(w_ratio):
            return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        w_normal, w_reduce = self.weighting(self, False), self.weighting(self, True)
        if not self.fast:
            s0 = s1 = self.stem(x)
            for cell in self.cells:
                w = w_reduce if cell.reduction else w_normal
                s0, s1 = s1, cell(s0, s1, w.ops, edges=w.edges, sampled=w.sampled)
            return self.classifier(self.global_pooling(s1).flatten(1))
        # channels_last: oneDNN's depthwise/pointwise convs and pools are several times faster
        # in NHWC on CPU; every later op keeps the format of its input. On CUDA the input's
        # format decides (runtime.channels_last).
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        # All FS/DFS filters of the supernet in one batch (space/layers/fs_bank.py).
        with batched_filters(self):
            out = batch_norm(self.stem[1], self.stem[0](x))
            # Both preprocessing ops of a cell start with a ReLU of a previous cell's output,
            # and each output feeds two cells: take that ReLU once.
            s0 = s1 = out
            r0 = r1 = F.relu(out)
            last = len(self.cells) - 1
            for i, cell in enumerate(self.cells):
                w = w_reduce if cell.reduction else w_normal
                out = cell(s0, s1, w.ops, relus=(r0, r1), edges=w.edges, sampled=w.sampled)
                if i < last:
                    s0, s1, r0, r1 = s1, out, r1, F.relu(out)
        return self.classifier(self.global_pooling(out).flatten(1))

    # -- parameter groups ------------------------------------------------------------------

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights: [alphas_normal, alphas_reduce], each (14, 8), with edge
        normalisation [betas_normal, betas_reduce], each (14,), and with searched ratios
        [ratios_normal, ratios_reduce], each (14, 8, R)."""
        out = [self.alphas_normal, self.alphas_reduce]
        if self.edge_norm:
            out += [self.betas_normal, self.betas_reduce]
        return out if self.ratios is None else [*out, self.ratios_normal, self.ratios_reduce]

    def offset_parameters(self) -> list[nn.Parameter]:
        """The offset logits of every DFS layer (empty without DFS)."""
        return fs_model.offset_parameters(self)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: convs, FS vectors, BN affines (stem), the classifier."""
        skip = {id(p) for p in self.arch_parameters()} | {id(p) for p in self.offset_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    # -- reporting ---------------------------------------------------------------------------

    def genotype(self, max_skip: int | None = None, max_free: int | None = None) -> Genotype:
        """The DARTS derivation of the current alphas (with edge normalisation, of softmax(alpha)
        times the edge's weight, PC-DARTS's rule), recording this network's FSSpec and,
        with searched ratios, each kept op's ratio (genotypes are defined for DARTS's 14-edge
        cells, i.e. steps=4). `max_skip`, `max_free`: genotypes.derive's caps on skip_connect
        and on parameter-free ops per cell."""
        kw = {}
        if self.edge_norm:  # PC-DARTS: op weights scaled by their edge's weight
            with torch.no_grad():
                kw["edge_scale"] = (self.edge_weights(False), self.edge_weights(True))
        if self.ratios is not None:
            kw.update(ratios=self.ratios, ratio_logits=(self.ratios_normal, self.ratios_reduce),
                      has_fs=(self.ratio_has_fs[0], self.ratio_has_fs[1]))
        return derive(self.alphas_normal, self.alphas_reduce, fs=self.fs, max_skip=max_skip,
                      max_free=max_free, **kw)

    def arch_state(self) -> dict[str, list[list[float]]]:
        """Softmaxed alphas as nested lists (rows: edges, columns: PRIMITIVES), for logs."""
        with torch.no_grad():
            return {
                "normal": F.softmax(self.alphas_normal, dim=-1).tolist(),
                "reduce": F.softmax(self.alphas_reduce, dim=-1).tolist(),
            }

    def offset_entropy(self) -> float | None:
        """Mean over DFS layers of their offset entropy (nats); None without DFS layers."""
        return fs_model.offset_entropy(self)
