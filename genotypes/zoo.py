"""Published CIFAR-10 cells of DARTS-family searches (plain DARTS ops, so fs=None).

Sources (op lists and input indices exactly as published):
  DARTS_V1, DARTS_V2: quark0/darts, cnn/genotypes.py (first- and second-order DARTS)
  PC_DARTS: yuhuixu1993/PC-DARTS, genotypes.py (PC_DARTS_cifar)
  PDARTS: chenxin061/pdarts, genotypes.py
"""

from __future__ import annotations

from genotypes.genotype import Genotype

_CAT = (2, 3, 4, 5)


def _cell(spec: str) -> tuple[tuple[str, int], ...]:
    """'op:i op:i ...' -> ((op, i), ...): a compact, diff-friendly way to write a cell."""
    return tuple((op, int(i)) for op, i in (tok.split(":") for tok in spec.split()))


def _g(normal: str, reduce: str) -> Genotype:
    return Genotype(_cell(normal), _CAT, _cell(reduce), _CAT, fs=None)


DARTS_V1 = _g(
    "sep_conv_3x3:1 sep_conv_3x3:0  skip_connect:0 sep_conv_3x3:1 "
    "skip_connect:0 sep_conv_3x3:1  sep_conv_3x3:0 skip_connect:2",
    "max_pool_3x3:0 max_pool_3x3:1  skip_connect:2 max_pool_3x3:0 "
    "max_pool_3x3:0 skip_connect:2  skip_connect:2 avg_pool_3x3:0",
)

DARTS_V2 = _g(
    "sep_conv_3x3:0 sep_conv_3x3:1  sep_conv_3x3:0 sep_conv_3x3:1 "
    "sep_conv_3x3:1 skip_connect:0  skip_connect:0 dil_conv_3x3:2",
    "max_pool_3x3:0 max_pool_3x3:1  skip_connect:2 max_pool_3x3:1 "
    "max_pool_3x3:0 skip_connect:2  skip_connect:2 max_pool_3x3:1",
)

PC_DARTS = _g(
    "sep_conv_3x3:1 skip_connect:0  sep_conv_3x3:0 dil_conv_3x3:1 "
    "sep_conv_5x5:0 sep_conv_3x3:1  avg_pool_3x3:0 dil_conv_3x3:1",
    "sep_conv_5x5:1 max_pool_3x3:0  sep_conv_5x5:1 sep_conv_5x5:2 "
    "sep_conv_3x3:0 sep_conv_3x3:3  sep_conv_3x3:1 sep_conv_3x3:2",
)

PDARTS = _g(
    "skip_connect:0 dil_conv_3x3:1  skip_connect:0 sep_conv_3x3:1 "
    "sep_conv_3x3:1 sep_conv_3x3:3  sep_conv_3x3:0 dil_conv_5x5:4",
    "avg_pool_3x3:0 sep_conv_5x5:1  sep_conv_3x3:0 dil_conv_5x5:2 "
    "max_pool_3x3:0 dil_conv_3x3:1  dil_conv_3x3:1 dil_conv_5x5:3",
)

ZOO: dict[str, Genotype] = {
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "PC_DARTS": PC_DARTS,
    "PDARTS": PDARTS,
}

#: Other spellings accepted by `lookup` (DARTS's own repo aliases DARTS to DARTS_V2).
ALIASES = {"DARTS": "DARTS_V2", "PCDARTS": "PC_DARTS", "P_DARTS": "PDARTS"}


def lookup(name: str) -> Genotype | None:
    """The zoo genotype called `name` (case-insensitive, '-' same as '_'), or None."""
    key = name.strip().upper().replace("-", "_")
    return ZOO.get(ALIASES.get(key, key))
