"""The Genotype type: the contract between search and retrain, its validation and dict form."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from genotypes.primitives import NUM_INPUTS, NUM_NODES, PRIMITIVES


class GenotypeError(ValueError):
    """A genotype (or the text it was read from) is invalid. The message is one line that says
    what is wrong and what to do about it."""


@dataclass(frozen=True)
class FSSpec:
    """How the 1x1 convolutions of a network are Filter-Summary layers.

    ratio: compression of each FS layer (K*n / L); 1.0 shares nothing. With per-op ratios it
        is the ratio of the cell preprocessing 1x1 convs and of every op whose entry is None.
    dfs: whether the sharing offsets are differentiable (DFS) while training.
    num_offsets: candidate offsets per filter (M) of a DFS layer.
    width: the fraction of the retrain's width (`init_channels`) the network is trained at;
        below 1.0 when a budget fit narrowed it (space.darts.width_fit), else 1.0.
    normal_ratios, reduce_ratios: None, or one entry per genotype edge of that cell (in the
        order of `Genotype.normal` / `.reduce`): the ratio of that edge's op, chosen by a
        search, or None for an op without FS layers (identity skip, pools). Both set or both
        None; read them through `op_ratio`, never directly.

    Construction only normalises lists to tuples of floats (so the spec stays hashable); it
    does not validate (`validate` checks a spec against its genotype's edges).
    """

    ratio: float = 2.0
    dfs: bool = True
    num_offsets: int = 4
    normal_ratios: tuple[float | None, ...] | None = None
    reduce_ratios: tuple[float | None, ...] | None = None
    width: float = 1.0

    def __post_init__(self) -> None:
        for name in OP_RATIO_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(_as_float(r) for r in value))

    @property
    def per_op(self) -> bool:
        """Whether the spec holds per-op ratios."""
        return self.normal_ratios is not None or self.reduce_ratios is not None


@dataclass(frozen=True)
class Genotype:
    """A DARTS cell pair. Edges are (op name, input index) pairs, two per intermediate node,
    in node order; input 0 is c_{k-2}, 1 is c_{k-1}, 2.. are earlier intermediate nodes.
    `fs` records the FS settings of the search (None: plain DARTS). `source` records where
    the genotype came from (e.g. {"algorithm": "pc-darts"} or {"random": 3}); it is written
    to genotype files but is not part of the architecture, so equality ignores it.

    Construction only normalises lists to tuples; it does not validate (use `validate`, which
    every loader calls)."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]
    fs: FSSpec | None = field(default=None)
    source: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Normalise list inputs (from JSON/YAML/repr) to hashable tuples.
        for name in ("normal", "reduce"):
            object.__setattr__(self, name, tuple((str(op), int(i)) for op, i in getattr(self, name)))
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON/YAML structure (lists, plain Python types)."""
        return to_dict(self)


FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat", "fs", "source")
#: The per-op ratio fields of FSSpec, in the order of its cells.
OP_RATIO_FIELDS = ("normal_ratios", "reduce_ratios")
FS_FIELDS = ("ratio", "dfs", "num_offsets", *OP_RATIO_FIELDS, "width")
CELLS = ("normal", "reduce")
_NUM_EDGES_KEPT = 2 * NUM_NODES


def _known_ops(primitives: Sequence[str]) -> list[str]:
    return [p for p in primitives if p != "none"]


def validate(g: Genotype, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Check `g` against the DARTS cell space; return it unchanged or raise GenotypeError."""
    known = _known_ops(primitives)
    if not known:  # else every op would be "unknown" with an empty list of the known ones
        raise ValueError("validate() needs the space's op names (primitives); it was given none")
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
    if g.fs is not None:
        _validate_fs(g.fs, {cell: len(getattr(g, cell)) for cell in CELLS})
    return g


def _validate_fs(fs: Any, edges: Mapping[str, int]) -> None:
    """Check an FS spec; `edges` is the edge count of each cell its per-op ratios cover."""
    if not isinstance(fs, FSSpec):
        raise GenotypeError(f"fs must be an FSSpec or None, got {type(fs).__name__}")
    if not _is_ratio(fs.ratio):
        raise GenotypeError(f"fs ratio {fs.ratio!r} is bad: it must be a number >= 1.0")
    if not isinstance(fs.dfs, bool):
        raise GenotypeError(f"fs dfs {fs.dfs!r} is bad: it must be true or false")
    if isinstance(fs.num_offsets, bool) or not isinstance(fs.num_offsets, int) or (
        fs.num_offsets < 1
    ):
        raise GenotypeError(
            f"fs num_offsets {fs.num_offsets!r} is bad: it must be an integer >= 1"
        )
    if isinstance(fs.width, bool) or not isinstance(fs.width, int | float) or not (
            0.0 < fs.width <= 1.0):
        raise GenotypeError(f"fs width {fs.width!r} is bad: it must be a fraction in (0, 1] of "
                            "the retrain's width")
    given = [name for name in OP_RATIO_FIELDS if getattr(fs, name) is not None]
    if len(given) == 1:
        other = next(n for n in OP_RATIO_FIELDS if n not in given)
        raise GenotypeError(f"fs has {given[0]} but no {other}; give both per-op ratio lists "
                            "or neither")
    for cell, name in zip(CELLS, OP_RATIO_FIELDS, strict=True):
        ratios = getattr(fs, name)
        if ratios is None:
            continue
        if not isinstance(ratios, tuple):
            raise GenotypeError(f"fs {name} must be a list of ratios (numbers >= 1, or null "
                                f"for ops without FS layers), got {type(ratios).__name__}")
        if len(ratios) != edges[cell]:
            raise GenotypeError(f"fs {name} has {len(ratios)} entries but the {cell} cell has "
                                f"{edges[cell]} edges; give one ratio (or null) per edge, in "
                                "edge order")
        for k, r in enumerate(ratios):
            if r is not None and not _is_ratio(r):
                raise GenotypeError(f"fs {name} entry {k} ({cell} edge {k}) is {r!r}: it must "
                                    "be a number >= 1.0, or null for an op without FS layers")


def _is_ratio(r: Any) -> bool:
    """A finite number >= 1 (not a bool)."""
    return not isinstance(r, bool) and isinstance(r, (int, float)) and 1.0 <= r < math.inf


def _as_float(r: Any) -> Any:
    """A real number (numpy scalars included: a search may hand those) as float; bool and
    anything else left as it is, for `validate` to name."""
    return float(r) if isinstance(r, numbers.Real) and not isinstance(r, bool) else r


def op_ratio(fs: FSSpec | None, cell: str, k: int) -> float:
    """The FS ratio of edge `k` of `cell` ("normal" or "reduce"): its per-op ratio when `fs`
    has per-op ratios and that entry is set, else the global `fs.ratio`. 1.0 (no
    compression) when fs is None: plain convolutions store every weight. Every consumer
    (networks, accounting, drawings) asks this one function."""
    if cell not in CELLS:
        raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")
    if fs is None:
        return 1.0
    ratios = getattr(fs, f"{cell}_ratios")
    if ratios is not None and ratios[k] is not None:
        return float(ratios[k])
    return float(fs.ratio)


def edge_fs(fs: FSSpec | None, cell: str, k: int) -> FSSpec | None:
    """The single-ratio FSSpec that edge `k` of `cell` is built with: `fs` with the edge's
    `op_ratio` as its ratio and no per-op lists (None stays None: FS off)."""
    if fs is None:
        return None
    return replace(fs, ratio=op_ratio(fs, cell, k), normal_ratios=None, reduce_ratios=None)


def fs_to_dict(fs: FSSpec | None) -> dict[str, Any] | None:
    """The canonical dict of an FS spec: ratio (float), dfs, num_offsets, and the per-op
    ratio lists and the width only when set, so a spec without them writes exactly what it
    always did."""
    if fs is None:
        return None
    d: dict[str, Any] = {"ratio": _as_float(fs.ratio), "dfs": fs.dfs, "num_offsets": fs.num_offsets}
    for name in OP_RATIO_FIELDS:
        ratios = getattr(fs, name)
        if ratios is not None:
            d[name] = list(ratios) if isinstance(ratios, tuple) else ratios
    if fs.width != 1.0:  # only a narrowed network writes it: older files read unchanged
        d["width"] = float(fs.width)
    return d


def to_dict(g: Genotype) -> dict[str, Any]:
    """The canonical structure: {"normal": [[op, i], ...], "normal_concat": [...], ..., "fs"}."""
    return {
        "normal": [[op, i] for op, i in g.normal],
        "normal_concat": list(g.normal_concat),
        "reduce": [[op, i] for op, i in g.reduce],
        "reduce_concat": list(g.reduce_concat),
        "fs": fs_to_dict(g.fs),
        **({} if g.source is None else {"source": dict(g.source)}),
    }


def _source(value: Any) -> dict[str, Any] | None:
    """A genotype's `source`: null or a mapping of names to plain values."""
    if value is None:
        return None
    plain = (str, int, float, bool, type(None))
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, plain) for k, v in value.items()):
        raise GenotypeError("source must be a mapping of names to plain values, e.g. "
                            '{"algorithm": "darts"}')
    return dict(value)


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


def fs_from_dict(value: Any) -> FSSpec | None:
    """An FSSpec from its dict form (fs_to_dict; the older three-key form too), or None.
    Only the keys are checked here; `validate` checks the values against a genotype."""
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
                            f"{', '.join(FIELDS[:4])} (fs, source optional)")
    extra = sorted(str(k) for k in set(d) - set(FIELDS))
    if extra:
        raise GenotypeError(f"genotype has unknown key(s) {extra}; allowed: {', '.join(FIELDS)}")
    g = Genotype(
        normal=tuple(_edges("normal", d["normal"])),
        normal_concat=tuple(_concat("normal_concat", d["normal_concat"])),
        reduce=tuple(_edges("reduce", d["reduce"])),
        reduce_concat=tuple(_concat("reduce_concat", d["reduce_concat"])),
        fs=fs_from_dict(d.get("fs")),
        source=_source(d.get("source")),
    )
    return validate(g, primitives)


def cells(g: Genotype) -> Iterable[tuple[str, tuple[tuple[str, int], ...], tuple[int, ...]]]:
    """Yield (name, edges, concat) for the normal and the reduce cell."""
    yield "normal", g.normal, g.normal_concat
    yield "reduce", g.reduce, g.reduce_concat
