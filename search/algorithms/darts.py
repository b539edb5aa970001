"""DARTS (Liu et al., ICLR 2019): every edge the softmax(alpha)-weighted sum of all its ops,
first- or second-order architecture steps (search/architect.py). The supernet's default."""

from __future__ import annotations

from search.algorithms.base import Algorithm, register


@register("darts")
class Darts(Algorithm):
    """The supernet as built, with its default softmax weighting."""
