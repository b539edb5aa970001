"""Derive a discrete Genotype from the architecture weights (alphas) of a DARTS search."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from genotypes.genotype import FSSpec, Genotype, GenotypeError
from genotypes.primitives import NUM_EDGES, NUM_INPUTS, NUM_NODES, PRIMITIVES, holds, op_decl

#: Rows that are non-negative and sum to 1 within this tolerance are taken as already softmaxed.
PROB_TOL = 1e-4


def _as_array(alphas: Any, name: str, num_ops: int) -> np.ndarray:
    """A float64 (NUM_EDGES, num_ops) array from a torch tensor, numpy array or nested lists."""
    if hasattr(alphas, "detach"):  # torch.Tensor, without importing torch
        alphas = alphas.detach().to("cpu").double().numpy()
    try:
        a = np.asarray(alphas, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise GenotypeError(f"{name} is not a numeric matrix ({e}); pass a ({NUM_EDGES}, "
                            f"{num_ops}) tensor, array or nested list") from None
    if a.shape != (NUM_EDGES, num_ops):
        raise GenotypeError(f"{name} has shape {a.shape}, expected ({NUM_EDGES}, {num_ops}): "
                            f"one row per edge, one column per op of {list(PRIMITIVES)}")
    if not np.isfinite(a).all():
        raise GenotypeError(f"{name} contains NaN or inf; the search diverged, so lower the "
                            "arch learning rate or restart from a checkpoint")
    return a


def edge_weights(alphas: Any, num_ops: int = len(PRIMITIVES), name: str = "alphas") -> np.ndarray:
    """Per-edge op weights: `alphas` as is when every row is already a probability distribution
    (non-negative, summing to 1 within PROB_TOL), else the row-wise softmax of the logits."""
    a = _as_array(alphas, name, num_ops)
    if (a >= 0).all() and np.allclose(a.sum(axis=1), 1.0, atol=PROB_TOL, rtol=0):
        return a
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _edge_column(scale: Any, name: str) -> np.ndarray:
    """A (NUM_EDGES, 1) float64 column of per-edge weights."""
    if hasattr(scale, "detach"):
        scale = scale.detach().to("cpu").double().numpy()
    s = np.asarray(scale, dtype=np.float64)
    if s.shape != (NUM_EDGES,) or not np.isfinite(s).all() or (s < 0).any():
        raise GenotypeError(f"{name} must be {NUM_EDGES} finite non-negative edge weights; "
                            f"got shape {s.shape}")
    return s[:, None]


def _parse_cell(w: np.ndarray, primitives: Sequence[str]) -> list[tuple[str, int, int]]:
    """(op, input, supernet edge row) of the two kept edges of each node."""
    allowed = [k for k, p in enumerate(primitives) if p != "none"]
    if not allowed:
        raise GenotypeError("primitives hold only 'none'; add real ops to derive a genotype")
    picked: list[tuple[str, int, int]] = []
    start = 0
    for node in range(NUM_NODES):
        n_in = NUM_INPUTS + node
        rows = w[start:start + n_in][:, allowed]
        strength = rows.max(axis=1)
        # Strongest first; a stable sort keeps the lower input index first on ties.
        order = sorted(range(n_in), key=lambda j: -strength[j])[:2]
        for j in order:
            best = allowed[int(np.argmax(rows[j]))]  # argmax: lowest index on ties
            picked.append((primitives[best], j, start + j))
        start += n_in
    return picked


def _is_free(op: str, j: int, reduction: bool) -> bool:
    """A parameter-free op on that edge, as its declaration says: a pool, or skip_connect as
    identity (in a reduce cell a skip on a cell input is a FactorizedReduce, which has
    parameters)."""
    d = op_decl(op)  # "none" is no kept op: never counted
    return d is not None and op != "none" and not holds(d.params, j, reduction)


def _capped_cell(w: np.ndarray, primitives: Sequence[str], max_skip: int | None,
                 max_free: int | None = None, reduction: bool = False
                 ) -> list[tuple[str, int, int]]:
    """`_parse_cell`, then while more than `max_skip` kept edges are skip_connect (or more
    than `max_free` are parameter-free), the weakest such kept op (by its weight) loses
    that op (its weight set to 0) and the cell is derived again (P-DARTS's rule for skips;
    each round removes one op from one edge, so it ends)."""
    w = w.copy()
    picked = _parse_cell(w, primitives)
    names = list(primitives)
    while True:
        over: list[tuple[int, int]] = []  # (row, op column) of the capped kind, if over
        skips = [(row, names.index(op)) for op, _, row in picked if op == "skip_connect"]
        free = [(row, names.index(op)) for op, j, row in picked if _is_free(op, j, reduction)]
        if max_skip is not None and len(skips) > max_skip:
            over = skips
        elif max_free is not None and len(free) > max_free:
            over = free
        if not over:
            return picked
        # The weakest first; on equal weights the earlier edge (list order).
        row, col = min(over, key=lambda rc: w[rc])
        if w[row, col] <= 0.0:  # every alternative is at 0 too: nothing left to remove
            return picked
        w[row, col] = 0.0
        picked = _parse_cell(w, primitives)


def edge_entropy(weights: Any) -> np.ndarray:
    """Entropy (nats) of each edge's op weights: rows already softmaxed (or logits, which are
    softmaxed first). Uniform over 8 ops gives ln 8 = 2.079; a settled edge tends to 0."""
    w = edge_weights(weights, np.asarray(weights).shape[-1])
    return -(w * np.log(np.clip(w, 1e-300, None))).sum(axis=1)


def changed_edges(a: Genotype, b: Genotype) -> int:
    """How many of the 16 kept (op, input) pairs of both cells differ between two genotypes."""
    return sum(x != y for cell in ("normal", "reduce")
               for x, y in zip(getattr(a, cell), getattr(b, cell), strict=True))


def skip_count(g: Genotype) -> dict[str, int]:
    """skip_connect edges of each cell."""
    return {cell: sum(op == "skip_connect" for op, _ in getattr(g, cell))
            for cell in ("normal", "reduce")}


def free_op_count(g: Genotype) -> dict[str, int]:
    """Parameter-free ops (skip_connect as identity, pools) of each cell: what a size
    penalty pushes towards. A reduce cell's skip on a cell input is a FactorizedReduce,
    which has parameters, so it does not count."""
    return {cell: sum(_is_free(op, j, cell == "reduce") for op, j in getattr(g, cell))
            for cell in ("normal", "reduce")}


def derive(
    alphas_normal: Any,
    alphas_reduce: Any,
    fs: FSSpec | None = None,
    primitives: Sequence[str] = PRIMITIVES,
    concat: Iterable[int] = range(2, 6),
    *,
    max_skip: int | None = None,
    max_free: int | None = None,
    ratios: Sequence[float] | None = None,
    ratio_logits: tuple[Any, Any] | None = None,
    has_fs: tuple[Any, Any] | None = None,
    edge_scale: tuple[Any, Any] | None = None,
) -> Genotype:
    """The DARTS discretisation of a searched cell pair.

    alphas_*: (NUM_EDGES=14, len(primitives)=8) weights as torch tensors, numpy arrays or nested
    lists; rows are edges in DARTS order (node 0: edges 0-1 from inputs 0,1; node 1: edges 2-4;
    node 2: 5-8; node 3: 9-13). They may be raw logits (softmax is applied row-wise, as DARTS
    does) or already softmaxed (rows non-negative summing to 1: used as is, since softmaxing
    twice can reorder edges across rows).

    For each node, every incoming edge is scored by its strongest op other than 'none'; the two
    highest-scoring edges are kept, strongest first, each with that best op. Ties go to the
    lower input index / lower op index. `max_skip` / `max_free`: at most that many
    skip_connect / parameter-free ops per cell (`_capped_cell`). `fs` is recorded in the genotype.

    Searched ratios: `ratio_logits` (normal, reduce), each (14, len(primitives), len(ratios)),
    and `has_fs` (normal, reduce) booleans (14, len(primitives)): each kept op gets the ratio
    of its largest logit (the smaller ratio on ties), recorded in fs.normal_ratios /
    fs.reduce_ratios; an op without FS layers there gets None.
    """
    primitives = tuple(primitives)
    wn = edge_weights(alphas_normal, len(primitives), "alphas_normal")
    wr = edge_weights(alphas_reduce, len(primitives), "alphas_reduce")
    if edge_scale is not None:
        wn, wr = (w * _edge_column(e, name) for w, e, name in
                  zip((wn, wr), edge_scale, ("edge_scale normal", "edge_scale reduce"), strict=True))
    cat = tuple(int(c) for c in concat)
    normal = _capped_cell(wn, primitives, max_skip, max_free, reduction=False)
    reduce = _capped_cell(wr, primitives, max_skip, max_free, reduction=True)
    if ratio_logits is not None:
        if fs is None or ratios is None or has_fs is None:
            raise GenotypeError("searched ratios need fs, ratios and has_fs as well")
        per_cell = []
        for picked, logits, mask in zip((normal, reduce), ratio_logits, has_fs, strict=True):
            lg = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits,
                            dtype=np.float64)
            mk = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask, dtype=bool)
            per_cell.append(tuple(
                float(ratios[int(np.argmax(lg[row, primitives.index(op)]))])
                if mk[row, primitives.index(op)] else None
                for op, _, row in picked))
        fs = dataclasses.replace(fs, normal_ratios=per_cell[0], reduce_ratios=per_cell[1])
    return Genotype(
        normal=tuple((op, j) for op, j, _ in normal),
        normal_concat=cat,
        reduce=tuple((op, j) for op, j, _ in reduce),
        reduce_concat=cat,
        fs=fs,
    )
