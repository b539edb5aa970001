"""The DARTS operations, each declared once here: its name, its builder (a builder kind of
space.darts.ops and its kernel size), which of its forms hold FS layers and which have
parameters, and how it is drawn (family, family hue, plot shade). Everything else reads these
declarations: the search space (space.darts.ops, mixed, budget), the genotype checks, random
draws, the derivation caps, the drawings and plots (genotypes.style). Adding an op is one
line in OP_DECLS (tests/test_ops_declared.py adds one)."""

from __future__ import annotations

from dataclasses import dataclass

#: Which forms of an op a property holds for: none, all, or only the stride-2 form (a reduce
#: cell's edge from a cell input, e.g. skip_connect's FactorizedReduce).
WHEN = ("never", "always", "strided")


@dataclass(frozen=True)
class OpDecl:
    """One op of the search space (module docstring). `builder` names a builder kind of
    space.darts.ops.BUILDERS (zero, max_pool, avg_pool, skip, sep_conv, dil_conv), built with
    `kernel`; `fs` and `params` are WHEN values; `family` groups ops under one hue
    (`family_color`) in drawings, `color` is the op's own shade in plots."""

    name: str
    builder: str
    kernel: int
    fs: str
    params: str
    family: str
    family_color: str
    color: str

    def __post_init__(self) -> None:
        for key in ("fs", "params"):
            if getattr(self, key) not in WHEN:
                raise ValueError(f"op {self.name}: {key}={getattr(self, key)!r}, not one of {WHEN}")


_POOL, _SKIP, _SEP, _DIL = "#2b6cb0", "#6b6b6b", "#d9480f", "#2f9e44"
OP_DECLS: tuple[OpDecl, ...] = (
    OpDecl("none", "zero", 0, "never", "never", "none", "#000000", "#000000"),
    OpDecl("max_pool_3x3", "max_pool", 3, "never", "never", "pool", _POOL, "#1c4f8a"),
    OpDecl("avg_pool_3x3", "avg_pool", 3, "never", "never", "pool", _POOL, "#5b9bd5"),
    OpDecl("skip_connect", "skip", 0, "strided", "strided", "skip", _SKIP, "#6b6b6b"),
    OpDecl("sep_conv_3x3", "sep_conv", 3, "always", "always", "sep conv", _SEP, "#c2410c"),
    OpDecl("sep_conv_5x5", "sep_conv", 5, "always", "always", "sep conv", _SEP, "#f59f00"),
    OpDecl("dil_conv_3x3", "dil_conv", 3, "always", "always", "dil conv", _DIL, "#2b8a3e"),
    OpDecl("dil_conv_5x5", "dil_conv", 5, "always", "always", "dil conv", _DIL, "#8ce99a"),
)

#: The op names in declaration order: the alphas' columns and MixedOp's `_ops` order.
PRIMITIVES: tuple[str, ...] = tuple(d.name for d in OP_DECLS)
DECLS: dict[str, OpDecl] = {d.name: d for d in OP_DECLS}

#: Number of intermediate nodes per cell and of input nodes (c_{k-2}, c_{k-1}).
NUM_NODES = 4
NUM_INPUTS = 2
#: Edges in a DARTS cell: node i (0-based) has NUM_INPUTS + i candidate inputs.
NUM_EDGES = sum(NUM_INPUTS + i for i in range(NUM_NODES))


def holds(when: str, input_index: int, reduction: bool) -> bool:
    """Whether a WHEN value holds for the op on an edge from node `input_index` of a cell
    (stride 2 on a reduce cell's edges from the two cell inputs)."""
    return when == "always" or (when == "strided" and reduction and input_index < NUM_INPUTS)


def op_decl(name: str) -> OpDecl | None:
    """The declaration of op `name`, or None for an unknown op."""
    return DECLS.get(name)
