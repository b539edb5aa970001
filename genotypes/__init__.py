"""Genotypes: op names, the Genotype type, derivation, file formats, the zoo and drawings."""

from genotypes.genotype import FSSpec, Genotype
from genotypes.primitives import NUM_EDGES, NUM_INPUTS, NUM_NODES, PRIMITIVES

__all__ = ["FSSpec", "Genotype", "NUM_EDGES", "NUM_INPUTS", "NUM_NODES", "PRIMITIVES"]
