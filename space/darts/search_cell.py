"""The DARTS search cell: two preprocessed inputs, `steps` nodes, each the sum of a MixedOp on
every earlier node, output the concat of the last `multiplier` nodes.

The search algorithm decides what an edge computes (space.darts.supernet.CellWeights): DARTS's
weighted sum of all ops, PC-DARTS's partial-channel sum scaled by the edge's normalised beta,
GDAS's single sampled op. The fused DARTS path serves full-channel sums of all ops; the
others, and the plain forward (space.layers.fused.set_fast off), take the per-edge path,
`node = sum_e edge_e * mixed_e(h_e)`, each mixed op called as a module."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from genotypes import FSSpec
from space.darts.mixed import MixedOp, NodeInput
from space.darts.ops import FactorizedReduce, ReLUConvBN
from space.darts.partial import PartialMixedOp


class SearchCell(nn.Module):
    """A DARTS search cell (model_search.Cell), module for module: ``preprocess0`` (a
    FactorizedReduce after a reduction cell, else a 1x1 ReLUConvBN), ``preprocess1``, ``_ops``
    (one MixedOp per edge, edge order: node 0 from inputs 0,1; node 1 from 0,1,2; ...) and the
    empty ``_bns`` list the reference also has. BN is affine=False throughout, as in search."""

    fast = True  # the fused node sums; off: the per-edge path (space.layers.fused.set_fast)

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        fs: FSSpec | None = None,
        partial: int = 1,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_prev_prev, C, affine=False, fs=fs)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False, fs=fs)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False, fs=fs)
        self._steps = steps
        self._multiplier = multiplier
        self._ops = nn.ModuleList()
        self._bns = nn.ModuleList()  # unused; kept so named_modules matches the reference
        for i in range(steps):
            for j in range(2 + i):
                # Only edges reading the cell inputs are strided in a reduction cell.
                stride = 2 if reduction and j < 2 else 1
                self._ops.append(MixedOp(C, stride, fs) if partial == 1
                                 else PartialMixedOp(C, stride, partial, fs))
        self.partial = partial

    def forward(
        self,
        s0: Tensor,
        s1: Tensor,
        weights: Tensor,
        *,
        relus: tuple[Tensor, Tensor] | None = None,
        edges: Tensor | None = None,
        sampled: list[int] | None = None,
    ) -> Tensor:
        """The cell output for inputs `s0` (c_{k-2}) and `s1` (c_{k-1}) and the (edges, ops)
        architecture `weights`. `relus`: ReLU(s0) and ReLU(s1), when the caller has them
        (both preprocessing ops start with a ReLU; the network computes it once per cell
        output, which feeds two cells). `edges`: a weight per edge for the node sums (edge
        normalisation); `sampled`: the one op each edge runs (its weights are a hard sample)."""
        r0, r1 = (None, None) if relus is None else relus
        if not self.fast or edges is not None or sampled is not None or self.partial != 1:
            return self.forward_edges(s0, s1, weights, edges, sampled, relus)
        s0 = self.preprocess0(s0, relu=r0)
        s1 = self.preprocess1(s1, relu=r1)
        share = self.training
        nodes = [NodeInput(s0, share_pools=share), NodeInput(s1, share_pools=share)]
        # One unbind per row: scalar views whose backward is a single stack, instead of
        # 14 * 8 separate indexing ops.
        rows = weights.unbind(0)
        offset = 0
        for _ in range(self._steps):
            acc = None
            for j, src in enumerate(nodes):
                acc = self._ops[offset + j].accumulate(acc, src, rows[offset + j].unbind(0))
            offset += len(nodes)
            nodes.append(NodeInput(acc, share_pools=share))
        return torch.cat([n.x for n in nodes[-self._multiplier :]], dim=1)

    def forward_edges(self, s0: Tensor, s1: Tensor, weights: Tensor, edges: Tensor | None,
                      sampled: list[int] | None,
                      relus: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Each node the sum over its incoming edges of ``edges[e] * mixed_e(h)`` (no factor
        without `edges`), every op and mixed op called as a module (with `sampled`, each
        edge runs its one sampled op). With every `fast` off this is DARTS's Cell.forward,
        line for line. Fast partial-channel edges share, per node, the ReLU and the pooling
        of the channels they read (PartialMixedOp.forward_shared)."""
        if self.fast:
            r0, r1 = (None, None) if relus is None else relus
            states = [self.preprocess0(s0, relu=r0), self.preprocess1(s1, relu=r1)]
        else:
            states = [self.preprocess0(s0), self.preprocess1(s1)]
        shared = self.fast and self.partial != 1 and sampled is None
        srcs: list[NodeInput] = []
        offset = 0
        for _ in range(self._steps):
            terms = []
            for j, h in enumerate(states):
                e = offset + j
                if shared:
                    if j == len(srcs):
                        srcs.append(NodeInput(h[:, : h.shape[1] // self.partial],
                                              share_pools=self.training))
                    y = self._ops[e].forward_shared(srcs[j], h, weights[e])
                else:
                    y = self._ops[e](h, weights[e], None if sampled is None else sampled[e])
                terms.append(y if edges is None else edges[e] * y)
            offset += len(states)
            states.append(sum(terms))
        return torch.cat(states[-self._multiplier :], dim=1)
