"""The DARTS evaluation networks (CIFAR and ImageNet) built from a genotype, with FS 1x1 convs.

They live in the space, beside the ops they are made of, so that both sides can build them:
retrain trains them (retrain.model adds the NetSpec that describes one), and the search counts
their parameters for a candidate genotype without importing retrain.

With ``fs=None`` the networks are the DARTS evaluation networks module for module: the same
layers in the same order, the same parameter count and the same ``state_dict`` key names
(``cells.N._ops.M.op.K.weight``, ``auxiliary_head.features.K.weight``, ``classifier.weight``),
so weights and logs can be compared line by line with the reference implementation. With an
``FSSpec`` every 1x1 convolution (cell preprocessing, the pointwise convs of sep/dil convs,
FactorizedReduce) is an FS layer (``fs.dfs=False``) or a DFS layer (``fs.dfs=True``): the
preprocessing with ``fs.ratio``, each op with the FS ratio of its genotype edge
(genotypes.op_ratio: a per-op ratio chosen by a search, else ``fs.ratio``).

Both networks end in global average pooling, so any input size and class count works; which
stem an input size gets is retrain.model.pick_stem's choice.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genotypes import FSSpec, Genotype, edge_fs
from space.darts.ops import FactorizedReduce, Identity, ReLUConvBN, make_op
from space.layers.fs_bank import batched_filters

__all__ = [
    "AugmentCell", "AuxiliaryHeadCIFAR", "AuxiliaryHeadImageNet", "NetworkCIFAR",
    "NetworkImageNet", "drop_path",
]


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of an op's output with probability `drop_prob`, scaling the rest by
    1/keep (DARTS's drop path). Out of place, so autograd never sees a modified view."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * (mask / keep)


class AugmentCell(nn.Module):
    """A discrete DARTS cell: two preprocessed inputs, four nodes summing two ops each, the
    concat of the `concat` nodes as output. Drop path hits every op except the identity.

    With an FSSpec, the preprocessing 1x1 convs have `fs.ratio` and each op the ratio of its
    edge (`fs.normal_ratios` / `fs.reduce_ratios` where set, see genotypes.op_ratio)."""

    def __init__(self, genotype: Genotype, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, fs: FSSpec | None = None) -> None:
        super().__init__()
        self.reduction, self.C = reduction, C
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_pp, C, fs=fs)
        else:
            self.preprocess0 = ReLUConvBN(C_pp, C, 1, 1, 0, fs=fs)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, fs=fs)
        edges = genotype.reduce if reduction else genotype.normal
        self._concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self._indices = tuple(i for _, i in edges)
        self._steps = len(edges) // 2
        self.multiplier = len(self._concat)
        # Only ops reading a cell input are strided in a reduction cell (DARTS's rule). Each
        # op gets its edge's FS ratio (genotypes.op_ratio); the preprocessing the global one.
        cell = "reduce" if reduction else "normal"
        self._ops = nn.ModuleList(
            make_op(name, C, 2 if reduction and i < 2 else 1, True, edge_fs(fs, cell, k))
            for k, (name, i) in enumerate(edges)
        )
        self._droppable = tuple(not isinstance(op, Identity) for op in self._ops)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_prob > 0.0
        for node in range(self._steps):
            total = None
            for k in (2 * node, 2 * node + 1):
                h = self._ops[k](states[self._indices[k]])
                if drop and self._droppable[k]:
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self._concat], dim=1)


class _AuxPool(nn.Module):
    """The auxiliary head's average pool (kernel 5, count_include_pad=False) on maps large
    enough for it; smaller maps (tiny inputs) are pooled adaptively to 2x2 instead."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.kernel + self.stride:
            return F.adaptive_avg_pool2d(x, 2)
        return F.avg_pool2d(x, self.kernel, self.stride, 0, count_include_pad=False)


class _AuxHead(nn.Module):
    """Auxiliary classifier at 2/3 depth (DARTS layout). Global average pooling after the
    2x2 conv makes it work on any map size; on DARTS's sizes that map is already 1x1."""

    def __init__(self, C: int, num_classes: int, stride: int, bn_after_conv2: bool) -> None:
        super().__init__()
        layers = [
            nn.ReLU(inplace=True), _AuxPool(5, stride), nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128), nn.ReLU(inplace=True), nn.Conv2d(128, 768, 2, bias=False),
        ]
        # The reference ImageNet head has no BN here (kept for parameter parity).
        layers += [nn.BatchNorm2d(768)] if bn_after_conv2 else []
        self.features = nn.Sequential(*layers, nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if x.shape[-1] != 1 or x.shape[-2] != 1:
            x = F.adaptive_avg_pool2d(x, 1)
        return self.classifier(x.flatten(1))


class AuxiliaryHeadCIFAR(_AuxHead):
    """DARTS's CIFAR auxiliary head (8x8 input -> 2x2 pool -> 1x1)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__(C, num_classes, stride=3, bn_after_conv2=True)


class AuxiliaryHeadImageNet(_AuxHead):
    """DARTS's ImageNet auxiliary head (7x7 input at 224 px -> 2x2 pool -> 1x1)."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__(C, num_classes, stride=2, bn_after_conv2=False)


class _Network(nn.Module):
    """Cells, auxiliary head and classifier shared by the CIFAR and ImageNet networks; the
    subclasses build the stem(s). forward returns (logits, aux logits or None) as DARTS."""

    aux_head_cls: type[_AuxHead] = AuxiliaryHeadCIFAR

    def _build_cells(self, C: int, num_classes: int, layers: int, auxiliary: bool,
                     genotype: Genotype, fs: FSSpec | None, C_stem: int,
                     reduction_prev: bool) -> None:
        self._layers, self._auxiliary = layers, auxiliary
        self.drop_path_prob = 0.0
        self._aux_at = 2 * layers // 3
        C_pp, C_p, C_curr = C_stem, C_stem, C
        self.cells = nn.ModuleList()
        C_aux = C_p
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            C_curr *= 2 if reduction else 1
            cell = AugmentCell(genotype, C_pp, C_p, C_curr, reduction, reduction_prev, fs)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
            if i == self._aux_at:
                C_aux = C_p
        if auxiliary:
            self.auxiliary_head = self.aux_head_cls(C_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def stem_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits_aux = None
        # All FS/DFS filters in one batch while training (space/layers/fs_bank.py).
        with batched_filters(self):
            s0, s1 = self.stem_forward(x)
            for i, cell in enumerate(self.cells):
                s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
                if i == self._aux_at and self._auxiliary and self.training:
                    logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1)), logits_aux


class NetworkCIFAR(_Network):
    """DARTS CIFAR network: 3x3 stem to 3C channels, `layers` cells with reductions at 1/3
    and 2/3 depth, auxiliary head after the second reduction. Arguments as in DARTS, plus fs."""

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool,
                 genotype: Genotype, fs: FSSpec | None = None, in_channels: int = 3) -> None:
        super().__init__()
        C_stem = 3 * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem)
        )
        self._build_cells(C, num_classes, layers, auxiliary, genotype, fs, C_stem, False)

    def stem_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s


class NetworkImageNet(_Network):
    """DARTS ImageNet network: two stems (/4 to C channels, then /2), cells as the CIFAR
    network with the first cell seeing a reduced input, global average pooling."""

    aux_head_cls = AuxiliaryHeadImageNet

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool,
                 genotype: Genotype, fs: FSSpec | None = None, in_channels: int = 3) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2), nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self._build_cells(C, num_classes, layers, auxiliary, genotype, fs, C, True)

    def stem_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)
