"""The FS settings of a config's `fs` section and the DFS temperature schedule: one reading
for search and retrain.

Search's `fs.mode` is off, fs or dfs with a ratio and an offset count always set; retrain adds
`genotype` (the genotype's own settings) and lets the ratio and offset count be null (the
genotype's, else DEFAULT_RATIO / DEFAULT_OFFSETS). A null ratio also keeps the genotype's
per-op ratios (those a search chose for each op); a ratio that is set is the one ratio of
every FS layer.
"""

from __future__ import annotations

import math
from typing import Any

from genotypes import FSSpec

#: FS ratio when neither the config nor the genotype names one (zoo genotypes).
DEFAULT_RATIO = 2.0
DEFAULT_OFFSETS = 4


def fs_spec(fs_cfg: Any, fallback: FSSpec | None = None) -> FSSpec | None:
    """The FSSpec of a config's `fs` section: None (plain 1x1 convolutions) for `off`, and
    for `genotype` when `fallback` (the genotype's settings) is None; fixed (`fs`) or
    learned (`dfs`) offsets otherwise. A null ratio or offset count takes `fallback`'s,
    else the defaults; a null ratio keeps `fallback`'s per-op ratios too, a set one drops
    them (one ratio everywhere)."""
    mode = str(fs_cfg.mode)
    if mode == "off":
        return None
    if mode == "genotype":
        if fallback is None:
            return None
        dfs = fallback.dfs
    else:
        dfs = mode == "dfs"
    g = fallback
    offsets = fs_cfg.num_offsets or (g.num_offsets if g else DEFAULT_OFFSETS)
    if fs_cfg.ratio is not None:
        return FSSpec(ratio=float(fs_cfg.ratio), dfs=bool(dfs), num_offsets=int(offsets))
    if g is None:
        return FSSpec(ratio=DEFAULT_RATIO, dfs=bool(dfs), num_offsets=int(offsets))
    return FSSpec(ratio=float(g.ratio), dfs=bool(dfs), num_offsets=int(offsets),
                  normal_ratios=g.normal_ratios, reduce_ratios=g.reduce_ratios)


def temperature_at(start: float, end: float, schedule: str, step: int, steps: int) -> float:
    """The DFS softmax temperature at `step` of `steps` (0-based): `start` at the first step,
    `end` at the last, by `schedule`: constant, linear, cosine (search's choices) or geometric
    (retrain's: an end below the start sharpens the candidate mix towards its argmax, so that
    hardening changes the filters less)."""
    start, end = float(start), float(end)
    if schedule == "constant" or steps <= 1 or start == end:
        return start
    f = step / (steps - 1)
    if schedule == "linear":
        return start + (end - start) * f
    if schedule == "geometric":
        return start * (end / start) ** f
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * f))
