"""Colours shared by the cell drawings and the run plots: one hue per op family."""

from __future__ import annotations

#: Family of each op name (None for an unknown op).
FAMILIES = {
    "none": "none",
    "max_pool_3x3": "pool",
    "avg_pool_3x3": "pool",
    "skip_connect": "skip",
    "sep_conv_3x3": "sep conv",
    "sep_conv_5x5": "sep conv",
    "dil_conv_3x3": "dil conv",
    "dil_conv_5x5": "dil conv",
}

#: Family colour (drawings, legends) and a darker/lighter shade per op (plots).
FAMILY_COLORS = {
    "pool": "#2b6cb0",
    "skip": "#6b6b6b",
    "sep conv": "#d9480f",
    "dil conv": "#2f9e44",
    "none": "#000000",
}
OP_COLORS = {
    "none": "#000000",
    "max_pool_3x3": "#1c4f8a",
    "avg_pool_3x3": "#5b9bd5",
    "skip_connect": "#6b6b6b",
    "sep_conv_3x3": "#c2410c",
    "sep_conv_5x5": "#f59f00",
    "dil_conv_3x3": "#2b8a3e",
    "dil_conv_5x5": "#8ce99a",
}
UNKNOWN_COLOR = "#9c36b5"


def op_family(op: str) -> str | None:
    """'pool', 'skip', 'sep conv', 'dil conv', 'none', or None for an unknown op."""
    return FAMILIES.get(op)


def op_color(op: str) -> str:
    """The plot colour of an op (its family hue, a shade per kernel size)."""
    return OP_COLORS.get(op, UNKNOWN_COLOR)


def family_color(op: str) -> str:
    """The drawing colour of an op: the hue of its family."""
    fam = op_family(op)
    return FAMILY_COLORS[fam] if fam else UNKNOWN_COLOR


def uses_fs(op: str, input_index: int, reduction: bool) -> bool:
    """Whether the op holds 1x1 convs (FS layers): separable and dilated convs, and the
    factorized-reduce skip of a reduction cell (stride 2 from the cell inputs)."""
    fam = op_family(op)
    return fam in ("sep conv", "dil conv") or (fam == "skip" and reduction and input_index < 2)
