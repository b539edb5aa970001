"""Parameter budgets: the exact and the expected size of the network a search derives.

The network counted is the retrain network (`space.darts.network.NetworkCIFAR`, or
`NetworkImageNet` for the images retrain gives the ImageNet stems) at width C with `layers`
cells (the paper preset's C=36, 20 cells unless the config says otherwise), without the
auxiliary head and with every FS layer hardened: exactly the effective total that
`python -m retrain --genotype G --summary` reports.

Exact count. Only the ops on the kept edges depend on the genotype, so

    P(G) = P0 + sum_{c in {normal, reduce}} sum_{kept edges e of c} T_c[e, op_e, r_e]

with T_c[e, o, r] = sum over the network's cells of kind c of the parameters of op o at that
cell's width, with the edge's stride, at FS ratio r (each entry counted once, from the op
built as the network builds it), and P0 (stems, cell preprocessing, classifier) the rest.
`BudgetModel.exact` builds the network itself; the test suite checks the two agree.

Expected count. With op weights pi, edge-keep weights kappa and ratio weights rho,

    E[P] = P0 + sum_c sum_e kappa_ce sum_{o != none} pi_ceo sum_r rho_ceor T_c[e, o, r],

linear in each, so at one-hot weights (the derived genotype's) it is P(G). From the search's
parameters:

    pi_eo   = softmax(alpha_e)_o / (1 - softmax(alpha_e)_none)        (derivation drops none)
    s_e     = max_{o != none} softmax(alpha_e)_o,  q_e = s_e / sum_{f -> same node} s_f
              (with PC-DARTS's edge normalisation s_e is multiplied by the edge's weight,
              softmax of the betas over the node's edges, as its derivation does)
    kappa_e = q_e + sum_{f -> same node, f != e} q_f q_e / (1 - q_f)
    rho_eor = softmax(beta_eo)_r

kappa_e is the Plackett-Luce probability that edge e is among two edges drawn without
replacement with probabilities q: the derivation keeps 2 edges per node, sum_e kappa_e = 2,
and a node with two inputs keeps both (kappa = 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from genotypes import PRIMITIVES, FSSpec, Genotype, op_ratio
from genotypes.primitives import NUM_INPUTS, NUM_NODES
from space.darts.network import NetworkCIFAR, NetworkImageNet
from space.darts.ops import make_op

NUM_EDGES = NUM_NODES * (NUM_NODES + 2 * NUM_INPUTS - 1) // 2
#: Supernet edge row -> (node, input).
EDGES = [(node, j) for node in range(NUM_NODES) for j in range(NUM_INPUTS + node)]
CELLS = ("normal", "reduce")


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _hard(fs: FSSpec | None) -> FSSpec | None:
    """The exported form: fixed offsets (a hardened DFS layer has the same FS length)."""
    return None if fs is None else dataclasses.replace(fs, dfs=False)


def _reduction_layers(layers: int) -> tuple[int, int]:
    return layers // 3, 2 * layers // 3


class BudgetModel:
    """Exact and expected parameter counts of the derived network at one width.

    `ratios`: the ratios an op may take (the search's candidates, or just fs.ratio); `fs`:
    the FS settings of the network (global ratio for the preprocessing; None: plain convs).
    """

    def __init__(self, fs: FSSpec | None, ratios: Sequence[float], C: int = 36,
                 layers: int = 20, num_classes: int = 10, in_channels: int = 3,
                 imagenet: bool = False) -> None:
        self.fs, self.C, self.layers, self.imagenet = fs, int(C), int(layers), bool(imagenet)
        self._tables_on: dict[torch.device, Tensor] = {}
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.ratios = tuple(float(r) for r in ratios) if fs is not None else (1.0,)
        self._cache: dict[tuple, int] = {}
        red = _reduction_layers(self.layers)
        widths = {"normal": [], "reduce": []}
        Cc = self.C
        for i in range(self.layers):
            if i in red:
                Cc *= 2
            widths["reduce" if i in red else "normal"].append(Cc)
        self.widths = widths
        # tables[c][e, o, r], float64: exact integers well below 2**53.
        self.tables = torch.zeros(2, NUM_EDGES, len(PRIMITIVES), len(self.ratios),
                                  dtype=torch.float64)
        for c, cell in enumerate(CELLS):
            for e, (_, j) in enumerate(EDGES):
                stride = 2 if cell == "reduce" and j < 2 else 1
                for o, name in enumerate(PRIMITIVES):
                    if name == "none":
                        continue
                    for r, ratio in enumerate(self.ratios):
                        self.tables[c, e, o, r] = sum(
                            self._op_params(name, w, stride, ratio) for w in widths[cell])
        # Every op sep_conv_3x3 at the smallest candidate ratio (fs.ratio need not be one).
        ref_fs = None if fs is None else dataclasses.replace(
            fs, normal_ratios=(self.ratios[0],) * 2 * NUM_NODES,
            reduce_ratios=(self.ratios[0],) * 2 * NUM_NODES)
        self.reference = ref = Genotype(
            normal=[("sep_conv_3x3", j) for j in (0, 1) * NUM_NODES],
            normal_concat=range(2, 2 + NUM_NODES),
            reduce=[("sep_conv_3x3", j) for j in (0, 1) * NUM_NODES],
            reduce_concat=range(2, 2 + NUM_NODES), fs=ref_fs)
        self.fixed = self.exact(ref) - self.ops_params(ref)

    def _op_params(self, name: str, C: int, stride: int, ratio: float) -> int:
        key = (name, C, stride, ratio)
        if key not in self._cache:
            fs = None if self.fs is None else dataclasses.replace(
                _hard(self.fs), ratio=ratio, normal_ratios=None, reduce_ratios=None)
            self._cache[key] = _params(make_op(name, C, stride, True, fs))
        return self._cache[key]

    def describe(self) -> str:
        """Which network the budget counts, in words."""
        stem = "ImageNet stems" if self.imagenet else "CIFAR stem"
        return (f"the retrain network at C={self.C} with {self.layers} cells ({stem}), "
                f"{self.num_classes} classes, no auxiliary head, FS hardened")

    # -- exact ------------------------------------------------------------------------------

    def exact(self, g: Genotype) -> int:
        """Parameters of the network built from `g` (its own FS settings, per-op ratios
        included; the model's `fs` when g has none)."""
        fs = g.fs if g.fs is not None else self.fs
        net_cls = NetworkImageNet if self.imagenet else NetworkCIFAR
        net = net_cls(self.C, self.num_classes, self.layers, False, g, _hard(fs), self.in_channels)
        return _params(net)

    def op_ratio(self, g: Genotype, cell: str, k: int) -> float:
        """genotypes.op_ratio of the genotype's FS settings (the model's when it has none)."""
        return op_ratio(g.fs if g.fs is not None else self.fs, cell, k)

    def has_fs(self, g: Genotype, cell: str, k: int) -> bool:
        """Whether the k-th kept op of `cell` has FS layers: its size depends on the ratio."""
        op, j = getattr(g, cell)[k]
        row = self.tables[CELLS.index(cell), EDGES.index((k // 2, j)), PRIMITIVES.index(op)]
        return bool((row != row[0]).any())

    def _column(self, g: Genotype, cell: str, k: int) -> tuple[int, int, int, int]:
        """(cell index, edge row, op column, ratio column) of the k-th kept edge of `cell`.
        An op whose size does not depend on the ratio (no FS layer) reads column 0, so its
        recorded ratio (None, or fs.ratio) need not be a candidate."""
        c = CELLS.index(cell)
        op, j = getattr(g, cell)[k]
        e, o = EDGES.index((k // 2, j)), PRIMITIVES.index(op)
        if not self.has_fs(g, cell, k):
            return c, e, o, 0
        ratio = self.op_ratio(g, cell, k)
        if ratio not in self.ratios:
            raise ValueError(f"{cell} edge {k} ({op}) has ratio {ratio:g}, not one of this "
                             f"budget's ratios {list(self.ratios)}")
        return c, e, o, self.ratios.index(ratio)

    def edge_params(self, g: Genotype, cell: str, k: int) -> int:
        """T of the k-th kept edge of `cell` at its ratio."""
        return int(self.tables[self._column(g, cell, k)])

    def ops_params(self, g: Genotype) -> int:
        """The kept ops' parameters: sum of T over the genotype's edges."""
        return sum(self.edge_params(g, cell, k) for cell in CELLS
                   for k in range(len(getattr(g, cell))))

    def count(self, g: Genotype) -> int:
        """P0 + the kept ops: equal to `exact(g)` (tested), without building the network."""
        return self.fixed + self.ops_params(g)

    # -- expected ---------------------------------------------------------------------------

    def expected(self, op_w: Tensor, keep: Tensor, ratio_w: Tensor) -> Tensor:
        """E[P] for op weights (2, 14, ops), keep weights (2, 14) and ratio weights
        (2, 14, ops, R) (any dtype; the sum is taken in the tables' float64)."""
        t = self._tables_on.get(op_w.device)
        if t is None:
            t = self._tables_on[op_w.device] = self.tables.to(op_w.device)
        per_op = (ratio_w.to(t.dtype) * t).sum(-1)  # (2, 14, ops)
        return self.fixed + (keep.to(t.dtype) * (op_w.to(t.dtype) * per_op).sum(-1)).sum()

    def relaxed(self, alphas: Sequence[Tensor], ratio_logits: Sequence[Tensor] | None,
                edge_scale: Sequence[Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(op weights, keep weights, ratio weights) from the search's parameters (module
        docstring); `ratio_logits` None: every op at the model's single ratio. `edge_scale`
        (normal, reduce) edge weights (PC-DARTS) scale the edge strengths s_e, as the
        derivation scales them, so kappa follows the edges the derivation keeps."""
        none = PRIMITIVES.index("none")
        # float64: the op weights of an edge that `none` dominates stay resolvable.
        p = torch.stack([F.softmax(a.double(), dim=-1) for a in alphas])  # (2, 14, ops)
        mask = torch.ones(len(PRIMITIVES), dtype=p.dtype, device=p.device)
        mask[none] = 0.0
        # 1 - p_none as the sum of the other ops' weights: no cancellation when none dominates.
        op_w = p * mask / (p * mask).sum(-1, keepdim=True)
        strength = (p * mask).amax(-1)  # (2, 14)
        if edge_scale is not None:
            strength = strength * torch.stack([e.double() for e in edge_scale])
        keep = torch.cat([_top2_inclusion(strength[:, rows]) for rows in _node_rows()], dim=1)
        if ratio_logits is None:
            ratio_w = p.new_ones(*p.shape, 1)
        else:
            ratio_w = torch.stack([F.softmax(b.double(), dim=-1) for b in ratio_logits])
        return op_w, keep, ratio_w

    def one_hot(self, g: Genotype) -> tuple[Tensor, Tensor, Tensor]:
        """The weights of a genotype: the kept ops, their edges and their ratios as 0/1."""
        R = len(self.ratios)
        op_w = torch.zeros(2, NUM_EDGES, len(PRIMITIVES), dtype=torch.float64)
        keep = torch.zeros(2, NUM_EDGES, dtype=torch.float64)
        ratio_w = torch.zeros(2, NUM_EDGES, len(PRIMITIVES), R, dtype=torch.float64)
        for cell in CELLS:
            for k in range(len(getattr(g, cell))):
                c, e, o, r = self._column(g, cell, k)
                keep[c, e], op_w[c, e, o], ratio_w[c, e, o, r] = 1.0, 1.0, 1.0
        return op_w, keep, ratio_w


def _node_rows() -> list[list[int]]:
    """Supernet edge rows of each node's incoming edges."""
    return [[e for e, (node, _) in enumerate(EDGES) if node == n] for n in range(NUM_NODES)]


def _top2_inclusion(s: Tensor) -> Tensor:
    """kappa of the module docstring for strengths s (..., n): the probability that each
    edge is among two drawn without replacement, with probabilities s / sum(s)."""
    n = s.shape[-1]
    q = s / s.sum(-1, keepdim=True)
    # q_f / (1 - q_f) = s_f / sum_{g != f} s_g, with the sum of the others taken directly (no
    # 1 - q_f cancellation, which turns a dominant edge into inf - inf), floored at the
    # smallest normal number so that an edge with all others at 0 gives 0 * large, not NaN.
    others = s @ (1.0 - torch.eye(n, dtype=s.dtype, device=s.device))
    odds = s / others.clamp_min(torch.finfo(s.dtype).tiny)
    second = odds @ (1.0 - torch.eye(n, dtype=s.dtype, device=s.device))  # sum_{f != e} odds_f
    return q + q * second


def _with_ratios(g: Genotype, normal: Sequence[float | None], reduce: Sequence[float | None]
                 ) -> Genotype:
    fs = dataclasses.replace(g.fs, normal_ratios=tuple(normal), reduce_ratios=tuple(reduce))
    return dataclasses.replace(g, fs=fs)


def fit_to_budget(model: BudgetModel, g: Genotype, budget: int,
                  preference: dict[str, Sequence[Sequence[float]]] | None = None
                  ) -> tuple[Genotype, list[str]]:
    """The exact fit of a derived genotype's ratios to `budget`, one op at a time:

    * over the budget: raise the ratio of the op with the most parameters to its next
      candidate (each step the largest saving at hand), until it fits;
    * then, under it: lower the ratio of one op to its next smaller candidate, the op whose
      smaller ratio the search rated highest (`preference[cell][k]`: that op's ratio logits,
      in candidate order; without them the largest op), as long as the network stays within
      the budget. This uses the budget the caps and the argmax left unused.

    Returns the genotype and one line per change (a higher FS ratio compresses more: fewer
    parameters; a lower one, more). When every op is at its largest ratio and
    the network is still over budget, it is returned as it is (the caller says so)."""
    if g.fs is None or model.fs is None or len(model.ratios) < 2:
        return g, []
    R = model.ratios
    per = {cell: [model.op_ratio(g, cell, k) if model.has_fs(g, cell, k) else None
                  for k in range(len(getattr(g, cell)))] for cell in CELLS}
    g = _with_ratios(g, per["normal"], per["reduce"])
    notes: list[str] = []
    count = model.count(g)

    def change(cell: str, k: int, new: float, why: str) -> None:
        nonlocal g, count
        old = per[cell][k]
        per[cell][k] = new
        g = _with_ratios(g, per["normal"], per["reduce"])
        new_count = model.count(g)
        op, j = getattr(g, cell)[k]
        notes.append(f"{why}: {cell} edge {k} ({op} from input {j}) FS ratio {old:g} -> "
                     f"{new:g}, parameters {count:,} -> {new_count:,}")
        count = new_count

    while count > budget:
        options = [(model.edge_params(g, cell, k), cell, k) for cell in CELLS
                   for k, r in enumerate(per[cell]) if r is not None and r != R[-1]]
        if not options:
            return g, notes
        _, cell, k = max(options)
        change(cell, k, R[R.index(per[cell][k]) + 1], "over budget, more compression")
    while True:
        options = []
        for cell in CELLS:
            for k, r in enumerate(per[cell]):
                if r is None or r == R[0]:
                    continue
                lower = R[R.index(r) - 1]
                trial = list(per[cell])
                trial[k] = lower
                other = per["reduce" if cell == "normal" else "normal"]
                pair = (trial, other) if cell == "normal" else (other, trial)
                if model.count(_with_ratios(g, *pair)) > budget:
                    continue
                score = (float(preference[cell][k][R.index(lower)]) if preference is not None
                         else float(model.edge_params(g, cell, k)))
                options.append((score, cell, k, lower))
        if not options:
            return g, notes
        _, cell, k, lower = max(options)
        change(cell, k, lower, "under budget, less compression")

