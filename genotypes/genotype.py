"""The Genotype type: the contract between search and retrain, its validation and dict form."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genotypes.primitives import NUM_INPUTS, NUM_NODES, PRIMITIVES


class GenotypeError(ValueError):
    """A genotype (or the text it was read from) is invalid. The message is one line that says
    what is wrong and what to do about it."""


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
    `fs` records the FS settings of the search (None: plain DARTS).

    Construction only normalises lists to tuples; it does not validate (use `validate`, which
    every loader calls)."""

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

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON/YAML structure (lists, plain Python types)."""
        return to_dict(self)


FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat", "fs")
FS_FIELDS = ("ratio", "dfs", "num_offsets")
_NUM_EDGES_KEPT = 2 * NUM_NODES


def _known_ops(primitives: Sequence[str]) -> list[str]:
    return [p for p in primitives if p != "none"]


def validate(g: Genotype, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Check `g` against the DARTS cell space; return it unchanged or raise GenotypeError."""
    known = _known_ops(primitives)
    for cell in ("normal", "reduce"):
        edges = getattr(g, cell)
        if len(edges) != _NUM_EDGES_KEPT:
            raise GenotypeError(
                f"{cell} has {len(edges)} edges but a cell needs {_NUM_EDGES_KEPT} "
                f"(2 per node x {NUM_NODES} nodes); list exactly {_NUM_EDGES_KEPT} (op, input) pairs"
            )
        for k, (op, inp) in enumerate(edges):
            node = k // 2
            if op == "none":
                raise GenotypeError(
                    f"{cell} edge {k} (node {node}) uses 'none', which is never part of a "
                    f"genotype; pick one of: {', '.join(known)}"
                )
            if op not in known:
                raise GenotypeError(
                    f"{cell} edge {k} (node {node}) has unknown op {op!r}; "
                    f"known ops: {', '.join(known)}"
                )
            last = NUM_INPUTS + node - 1
            if not 0 <= inp <= last:
                raise GenotypeError(
                    f"{cell} edge {k} (node {node}) takes input {inp}, out of range for node "
                    f"{node}: use 0..{last} (0=c_{{k-2}}, 1=c_{{k-1}}, 2+=earlier nodes)"
                )
        concat = getattr(g, f"{cell}_concat")
        lo, hi = NUM_INPUTS, NUM_INPUTS + NUM_NODES - 1
        if not concat or len(set(concat)) != len(concat) or not all(lo <= c <= hi for c in concat):
            raise GenotypeError(
                f"{cell}_concat {list(concat)} is bad: give distinct node ids in {lo}..{hi} "
                f"(usually [{', '.join(str(i) for i in range(lo, hi + 1))}])"
            )
    fs = g.fs
    if fs is not None:
        if not isinstance(fs, FSSpec):
            raise GenotypeError(f"fs must be an FSSpec or None, got {type(fs).__name__}")
        r = fs.ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 1.0 <= r < math.inf:
            raise GenotypeError(f"fs ratio {fs.ratio!r} is bad: it must be a number >= 1.0")
        if not isinstance(fs.dfs, bool):
            raise GenotypeError(f"fs dfs {fs.dfs!r} is bad: it must be true or false")
        if isinstance(fs.num_offsets, bool) or not isinstance(fs.num_offsets, int) or (
            fs.num_offsets < 1
        ):
            raise GenotypeError(
                f"fs num_offsets {fs.num_offsets!r} is bad: it must be an integer >= 1"
            )
    return g


def to_dict(g: Genotype) -> dict[str, Any]:
    """The canonical structure: {"normal": [[op, i], ...], "normal_concat": [...], ..., "fs"}."""
    fs = None
    if g.fs is not None:
        r = g.fs.ratio
        r = float(r) if isinstance(r, (int, float)) and not isinstance(r, bool) else r
        fs = {"ratio": r, "dfs": g.fs.dfs, "num_offsets": g.fs.num_offsets}
    return {
        "normal": [[op, i] for op, i in g.normal],
        "normal_concat": list(g.normal_concat),
        "reduce": [[op, i] for op, i in g.reduce],
        "reduce_concat": list(g.reduce_concat),
        "fs": fs,
    }


def _edges(name: str, value: Any) -> list[tuple[str, int]]:
    if not isinstance(value, (list, tuple)):
        raise GenotypeError(f"{name} must be a list of [op, input] pairs, got {type(value).__name__}")
    out = []
    for k, pair in enumerate(value):
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2
        if not ok or not isinstance(pair[0], str) or type(pair[1]) is not int:
            raise GenotypeError(
                f"{name} entry {k} is {pair!r}; each entry must be an [op name, input index] pair"
            )
        out.append((pair[0], pair[1]))
    return out


def _concat(name: str, value: Any) -> list[int]:
    if isinstance(value, range):
        value = list(value)
    if not isinstance(value, (list, tuple)) or not all(type(c) is int for c in value):
        raise GenotypeError(f"{name} must be a list of node ids like [2, 3, 4, 5], got {value!r}")
    return list(value)


def _fs(value: Any) -> FSSpec | None:
    if value is None or isinstance(value, FSSpec):
        return value
    if not isinstance(value, Mapping):
        raise GenotypeError(
            f"fs must be null or a mapping with {', '.join(FS_FIELDS)}, got {type(value).__name__}"
        )
    extra = sorted(set(value) - set(FS_FIELDS))
    if extra:
        raise GenotypeError(f"fs has unknown key(s) {extra}; allowed: {', '.join(FS_FIELDS)}")
    return FSSpec(**value)


def from_dict(d: Any, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Build and validate a Genotype from the canonical structure (e.g. parsed JSON/YAML)."""
    if not isinstance(d, Mapping):
        raise GenotypeError(
            f"a genotype must be a mapping with keys {', '.join(FIELDS)}, got {type(d).__name__}"
        )
    missing = [k for k in FIELDS[:4] if k not in d]
    if missing:
        raise GenotypeError(f"genotype is missing key(s) {', '.join(missing)}; required: "
                            f"{', '.join(FIELDS[:4])} (fs optional)")
    extra = sorted(str(k) for k in set(d) - set(FIELDS))
    if extra:
        raise GenotypeError(f"genotype has unknown key(s) {extra}; allowed: {', '.join(FIELDS)}")
    g = Genotype(
        normal=tuple(_edges("normal", d["normal"])),
        normal_concat=tuple(_concat("normal_concat", d["normal_concat"])),
        reduce=tuple(_edges("reduce", d["reduce"])),
        reduce_concat=tuple(_concat("reduce_concat", d["reduce_concat"])),
        fs=_fs(d.get("fs")),
    )
    return validate(g, primitives)


def cells(g: Genotype) -> Iterable[tuple[str, tuple[tuple[str, int], ...], tuple[int, ...]]]:
    """Yield (name, edges, concat) for the normal and the reduce cell."""
    yield "normal", g.normal, g.normal_concat
    yield "reduce", g.reduce, g.reduce_concat
