"""Genotypes: op names, the Genotype type, derivation, file formats, the zoo and drawings.

The base package of the project: it imports neither torch (derivation accepts tensors by duck
typing) nor any other project package. Drawing (`genotypes.draw`) and run plots
(`genotypes.plot`) are imported on use, so importing `genotypes` stays light.
"""

from genotypes.derive import derive
from genotypes.formats import (
    describe_fs,
    describe_op_ratios,
    from_json,
    from_repr,
    from_yaml,
    genotype_lines,
    load_genotype,
    save_genotype,
    to_darts_repr,
    to_json,
    to_repr,
    to_yaml,
)
from genotypes.genotype import (
    FSSpec,
    Genotype,
    GenotypeError,
    edge_fs,
    from_dict,
    fs_from_dict,
    fs_to_dict,
    op_ratio,
    to_dict,
    validate,
)
from genotypes.primitives import NUM_EDGES, NUM_INPUTS, NUM_NODES, PRIMITIVES
from genotypes.zoo import ZOO

__all__ = [
    "FSSpec",
    "Genotype",
    "GenotypeError",
    "NUM_EDGES",
    "NUM_INPUTS",
    "NUM_NODES",
    "PRIMITIVES",
    "ZOO",
    "derive",
    "describe_fs",
    "describe_op_ratios",
    "edge_fs",
    "from_dict",
    "from_json",
    "from_repr",
    "from_yaml",
    "fs_from_dict",
    "fs_to_dict",
    "genotype_lines",
    "load_genotype",
    "op_ratio",
    "save_genotype",
    "to_darts_repr",
    "to_dict",
    "to_json",
    "to_repr",
    "to_yaml",
    "validate",
]
