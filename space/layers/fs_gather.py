"""The maths of FS and DFS filters, on packed inputs.

"Packed" means one FS vector, one index and (DFS) one block of offset logits, holding either
one layer's data (`FSConv2d`/`DFSConv2d` in space/layers/fs.py) or many layers' concatenated
(`FilterBank` in space/layers/fs_bank.py). Both call these same functions, so filters computed in a
batch are the filters each layer computes alone, and the formulation lives in one place.

Layouts (all flat, row-major):

* FS: the filters are ``fs[index]``, index laid out (filter, element).
* DFS: index is laid out (filter, element j, candidate m) and ``rows`` maps each
  (filter, element) pair to its filter's row of the logits. Filter element (r, j) is
  ``sum_m p[r, m] * fs[index[r, j, m]]`` with p = softmax over m of the logits / temperature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)


def mean_grad(fs: Tensor, inv_count: Tensor) -> Tensor:
    """Straight-through scaling: the value is fs (exactly; the added term is +0) while the
    gradient reaching fs is multiplied by inv_count, turning the gather's sum into a mean.
    Built from ordinary ops, so double backward works."""
    d = fs.detach()
    return torch.addcmul(d, fs - d, inv_count)


def _wants_grad(t: Tensor) -> bool:
    return torch.is_grad_enabled() and t.requires_grad


def fs_filters(fs: Tensor, index: Tensor | None, inv_count: Tensor | None) -> Tensor:
    """The flat filters ``fs[index]`` (index None: fs itself, the identity gather).

    inv_count: 1/(number of reads) per FS element for the paper's mean-gradient rule, or None
    for the plain autograd sum."""
    if inv_count is not None and _wants_grad(fs):
        fs = mean_grad(fs, inv_count)
    return fs if index is None else fs.index_select(0, index)


def shifted_logits(logits: Tensor, scale: float | Tensor) -> Tensor:
    """(logits * scale - row max), scale = log2(e)/temperature (a float, or one per row).

    Softmax is spelled out with exp2: on CPU, torch.exp/softmax split even a (K, 4) tensor
    across threads, and waking them costs more than the whole gather. Subtracting the detached
    row max is exact for value and gradient since softmax is shift invariant."""
    z = logits * scale
    return z - z.detach().amax(dim=1, keepdim=True)


def mixing_weights(logits: Tensor, scale: float | Tensor) -> Tensor:
    """softmax(logits / temperature) per row, scale = log2(e)/temperature."""
    e = shifted_logits(logits, scale).exp2()
    return e / e.sum(dim=1, keepdim=True)


def entropy(logits: Tensor, scale: float | Tensor) -> Tensor:
    """Entropy (nats) of each row's mixing weights; finite even where a weight underflows."""
    z = shifted_logits(logits, scale)
    e = z.exp2()
    total = e.sum(dim=1, keepdim=True)
    logp = (z - total.log2()) * LN2
    return -((e / total) * logp).sum(dim=1)


def dfs_filters(fs: Tensor, p: Tensor, index: Tensor, rows: Tensor, mean: bool) -> Tensor:
    """The flat DFS filters: element (r, j) = sum_m p[r, m] * fs[index[r, j, m]].

    mean=True applies the mean-gradient rule with soft read counts: an FS element's gradient
    is divided by sum of p[r, m] over its reads (r, j, m), so at one-hot p it is exactly
    FSConv2d's rule for the hardened offsets."""
    pr = p.index_select(0, rows)  # (filter elements, M): each element's filter's weights
    if mean and _wants_grad(fs):
        with torch.no_grad():  # soft read counts, a constant for autograd
            count = torch.zeros_like(fs).index_add_(0, index, pr.detach().reshape(-1))
            inv = torch.where(count > 0, 1.0 / count, torch.zeros_like(count))
        fs = mean_grad(fs, inv)
    cand = fs.index_select(0, index).view(pr.shape)
    return (cand * pr).sum(dim=1)
