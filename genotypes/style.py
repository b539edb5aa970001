"""Colours shared by the cell drawings and the run plots: one hue per op family, read from
the ops' declarations (genotypes.primitives)."""

from __future__ import annotations

from genotypes.primitives import OP_DECLS, holds, op_decl

#: Family of each op name (None for an unknown op).
FAMILIES = {d.name: d.family for d in OP_DECLS}
#: Family colour (drawings, legends) and a darker/lighter shade per op (plots).
FAMILY_COLORS: dict[str, str] = {}
for _d in OP_DECLS:  # in declaration order, each family's first op's hue
    FAMILY_COLORS.setdefault(_d.family, _d.family_color)
OP_COLORS = {d.name: d.color for d in OP_DECLS}
UNKNOWN_COLOR = "#9c36b5"


def op_family(op: str) -> str | None:
    """The op's declared family ('pool', 'skip', 'sep conv', ...), or None for an unknown op."""
    return FAMILIES.get(op)


def op_color(op: str) -> str:
    """The plot colour of an op (its family hue, a shade per kernel size)."""
    return OP_COLORS.get(op, UNKNOWN_COLOR)


def family_color(op: str) -> str:
    """The drawing colour of an op: the hue of its family."""
    fam = op_family(op)
    return FAMILY_COLORS[fam] if fam else UNKNOWN_COLOR


def uses_fs(op: str, input_index: int, reduction: bool) -> bool:
    """Whether the op holds 1x1 convs (FS layers) on that edge, as its declaration says
    (e.g. separable and dilated convs always, skip_connect only as a reduce cell's
    factorized reduce)."""
    d = op_decl(op)
    return d is not None and holds(d.fs, input_index, reduction)
