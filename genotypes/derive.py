"""Derive a discrete Genotype from the architecture weights (alphas) of a DARTS search."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from genotypes.genotype import FSSpec, Genotype, GenotypeError
from genotypes.primitives import NUM_EDGES, NUM_INPUTS, NUM_NODES, PRIMITIVES

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


def _parse_cell(w: np.ndarray, primitives: Sequence[str]) -> list[tuple[str, int]]:
    allowed = [k for k, p in enumerate(primitives) if p != "none"]
    if not allowed:
        raise GenotypeError("primitives hold only 'none'; add real ops to derive a genotype")
    picked: list[tuple[str, int]] = []
    start = 0
    for node in range(NUM_NODES):
        n_in = NUM_INPUTS + node
        rows = w[start:start + n_in][:, allowed]
        strength = rows.max(axis=1)
        # Strongest first; a stable sort keeps the lower input index first on ties.
        order = sorted(range(n_in), key=lambda j: -strength[j])[:2]
        for j in order:
            best = allowed[int(np.argmax(rows[j]))]  # argmax: lowest index on ties
            picked.append((primitives[best], j))
        start += n_in
    return picked


def derive(
    alphas_normal: Any,
    alphas_reduce: Any,
    fs: FSSpec | None = None,
    primitives: Sequence[str] = PRIMITIVES,
    concat: Iterable[int] = range(2, 6),
) -> Genotype:
    """The DARTS discretisation of a searched cell pair.

    alphas_*: (NUM_EDGES=14, len(primitives)=8) weights as torch tensors, numpy arrays or nested
    lists; rows are edges in DARTS order (node 0: edges 0-1 from inputs 0,1; node 1: edges 2-4;
    node 2: 5-8; node 3: 9-13). They may be raw logits (softmax is applied row-wise, as DARTS
    does) or already softmaxed (rows non-negative summing to 1: used as is, since softmaxing
    twice can reorder edges across rows).

    For each node, every incoming edge is scored by its strongest op other than 'none'; the two
    highest-scoring edges are kept, strongest first, each with that best op. Ties go to the
    lower input index / lower op index. `fs` is recorded in the genotype unchanged.
    """
    primitives = tuple(primitives)
    wn = edge_weights(alphas_normal, len(primitives), "alphas_normal")
    wr = edge_weights(alphas_reduce, len(primitives), "alphas_reduce")
    cat = tuple(int(c) for c in concat)
    return Genotype(
        normal=tuple(_parse_cell(wn, primitives)),
        normal_concat=cat,
        reduce=tuple(_parse_cell(wr, primitives)),
        reduce_concat=cat,
        fs=fs,
    )
