"""Search algorithms over the DARTS space, selected by `search.algorithm` (`--algo`).

An algorithm is one module here that subclasses `base.Algorithm` and registers itself with
`@register("name", config=Keys)` when imported (`Keys`: a dataclass of its own config keys,
joined to the `search` section by search.settings); the import below (a line static tools
read) is what registers it. It says
how the supernet is built (partial channels, edge normalisation), how each forward's edge
weights come from the architecture parameters (`SearchNetwork.weighting`), what changes per
epoch (a temperature), and which architecture-step orders it supports. The supernet derives
the genotype from the same weights (space/darts/supernet.py) and the budget's E[P] uses them too.
"""

from __future__ import annotations

from search.algorithms.base import ALGORITHMS, Algorithm, make_algorithm, register

# Importing a module registers its algorithm, in this order (--algo's choices; darts first,
# the default).
# isort: off
from search.algorithms import darts  # noqa: F401,E402
from search.algorithms import pc_darts  # noqa: F401,E402
from search.algorithms import gdas  # noqa: F401,E402
# isort: on

__all__ = ["ALGORITHMS", "Algorithm", "make_algorithm", "register"]
