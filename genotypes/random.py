"""Random genotypes: the DARTS space's uniform baseline (Li & Talwalkar 2019; DARTS's own
random search draws cells the same way).

Each of the 4 intermediate nodes of each cell (normal and reduce) takes 2 distinct inputs
drawn uniformly among its 2 + i predecessors (c_{k-2}, c_{k-1} and the earlier nodes), so
every one of the C(2 + i, 2) input pairs has the same probability, and each kept edge an op
drawn uniformly over the 7 ops other than `none`. A draw depends only on its seed: it uses
its own numpy Generator, never the global RNG, so drawing does not disturb (and is not
disturbed by) anything else seeded in the process.
"""

from __future__ import annotations

import numpy as np

from genotypes.genotype import FSSpec, Genotype, validate
from genotypes.primitives import NUM_INPUTS, NUM_NODES, PRIMITIVES

#: The ops a genotype may hold: every primitive but `none`.
OPS: tuple[str, ...] = tuple(p for p in PRIMITIVES if p != "none")


def _cell(rng: np.random.Generator) -> list[tuple[str, int]]:
    edges = []
    for node in range(NUM_NODES):
        # Two distinct predecessors, uniform over the node's pairs; listed in input order.
        inputs = sorted(int(j) for j in rng.choice(NUM_INPUTS + node, size=2, replace=False))
        edges += [(OPS[int(rng.integers(len(OPS)))], j) for j in inputs]
    return edges


def random_genotype(seed: int, fs: FSSpec | None = None, draw: int = 0) -> Genotype:
    """The genotype drawn with `seed` (module docstring), with FS settings `fs` (None: plain
    convolutions); its `source` records {"random": seed}. `draw` k > 0: the (k+1)-th genotype
    of the seed's stream (for rejection sampling, e.g. until one fits a budget), recorded as
    {"random": seed, "draw": k}."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"a random genotype's seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    for _ in range(int(draw) * 2):  # the earlier draws' cells
        _cell(rng)
    normal, reduce = _cell(rng), _cell(rng)
    concat = tuple(range(NUM_INPUTS, NUM_INPUTS + NUM_NODES))
    source = {"random": int(seed), **({"draw": int(draw)} if draw else {})}
    return validate(Genotype(normal=tuple(normal), normal_concat=concat, reduce=tuple(reduce),
                             reduce_concat=concat, fs=fs, source=source))
