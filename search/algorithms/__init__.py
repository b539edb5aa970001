"""Search algorithms over the DARTS space, selected by `search.algorithm` (`--algo`).

An algorithm is one module here that subclasses `base.Algorithm` and registers itself with
`@register("name")`, plus its module name in `MODULES` below (the registry line). It says
how the supernet is built (partial channels, edge normalisation), how each forward's edge
weights come from the architecture parameters (`SearchNetwork.weighting`), what changes per
epoch (a temperature), and which architecture-step orders it supports. The supernet derives
the genotype from the same weights (space/darts/supernet.py) and the budget's E[P] uses them too.
"""

from __future__ import annotations

import importlib

from search.algorithms.base import ALGORITHMS, Algorithm, make_algorithm, register

#: The algorithm modules, imported once so that each registers itself.
MODULES = ("darts", "pc_darts", "gdas")

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["ALGORITHMS", "Algorithm", "make_algorithm", "register"]
