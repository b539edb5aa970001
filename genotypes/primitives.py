"""The DARTS operation names: the vocabulary shared by genotypes, the search space and retrain."""

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

#: Number of intermediate nodes per cell and of input nodes (c_{k-2}, c_{k-1}).
NUM_NODES = 4
NUM_INPUTS = 2
#: Edges in a DARTS cell: node i (0-based) has NUM_INPUTS + i candidate inputs.
NUM_EDGES = sum(NUM_INPUTS + i for i in range(NUM_NODES))
