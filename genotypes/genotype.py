"""The Genotype type: the contract between search and retrain."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FSSpec:
    """How the 1x1 convolutions of a network are Filter-Summary layers.

    ratio: compression of each FS layer (K*n / L); 1.0 shares nothing.
    dfs: whether the sharing offsets are differentiable (DFS) while training.
    num_offsets: candidate offsets per filter (M) of a DFS layer.
    """

    ratio: float = 2.0
    dfs: bool = True
    num_offsets: int = 4


@dataclass(frozen=True)
class Genotype:
    """A DARTS cell pair. Edges are (op name, input index) pairs, two per intermediate node,
    in node order; input 0 is c_{k-2}, 1 is c_{k-1}, 2.. are earlier intermediate nodes.
    `fs` records the FS settings of the search (None: plain DARTS)."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]
    fs: FSSpec | None = field(default=None)

    def __post_init__(self) -> None:
        # Normalise list inputs (from JSON/YAML/repr) to hashable tuples.
        for name in ("normal", "reduce"):
            object.__setattr__(self, name, tuple((str(op), int(i)) for op, i in getattr(self, name)))
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))
