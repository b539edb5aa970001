"""bench/arch_snr.py's per-edge statistics against an independent computation (scipy)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from genotypes import PRIMITIVES

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("arch_snr", ROOT / "bench" / "arch_snr.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_edge_margins_are_paired_t_statistics():
    rng = np.random.default_rng(0)
    B, E = 39, 14
    # a per-element drift plus batch noise; 'none' (index 0) gets the most negative drift so
    # that a derivation which forgot to exclude it would pick it
    drift = rng.normal(0, 0.02, size=(2, E, 8))
    drift[..., 0] = -1.0
    g = drift + rng.normal(0, 0.05, size=(B, 2, E, 8))
    cells = _load().edge_decisions(torch.from_numpy(g))
    for c in range(2):
        for e in range(E):
            ge = g[:, c, e, 1:]
            first, second = np.argsort(ge.mean(0))[:2]
            t = stats.ttest_1samp(ge[:, second] - ge[:, first], 0.0).statistic
            assert cells[c]["best"][e] == PRIMITIVES[1 + first]
            assert cells[c]["margin"][e] == pytest.approx(t, rel=1e-9)
            assert cells[c]["batches_for_3se"][e] == pytest.approx(B * (3.0 / t) ** 2, rel=1e-9)
