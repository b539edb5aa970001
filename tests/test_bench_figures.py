"""The figures of bench/arch_snr.py and bench/op_weights.py against independent computations."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from genotypes import PRIMITIVES

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str = "arch_snr"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
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


def test_op_weights_average_each_op_over_the_edges():
    rng = np.random.default_rng(1)
    w, r = rng.dirichlet(np.ones(8), size=14), rng.dirichlet(np.ones(8), size=14)
    rec = {"alphas_normal": w.tolist(), "alphas_reduce": r.tolist()}
    mod = _load("op_weights")
    np.testing.assert_allclose(mod.mean_op_weights(rec, "normal"), w.mean(0), rtol=1e-12)
    np.testing.assert_allclose(mod.mean_op_weights(rec, "reduce"), r.mean(0), rtol=1e-12)
