"""Parameter budgets: the exact count, E[P] (space/darts/budget.py), the greedy fit, the penalty."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from common.checks import parse_count
from genotypes import PRIMITIVES, FSSpec, Genotype, validate
from genotypes.primitives import NUM_INPUTS, NUM_NODES
from space.darts.budget import EDGES, BudgetModel, fit_to_budget
from space.darts.network import NetworkCIFAR
from space.layers.report import param_report

RATIOS = (1.0, 2.0, 4.0, 8.0)
OPS = [p for p in PRIMITIVES if p != "none"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _random_genotype(rng: random.Random, fs: FSSpec | None, ratios=RATIOS) -> Genotype:
    cells = {}
    for cell in ("normal", "reduce"):
        edges = []
        for node in range(NUM_NODES):
            for j in rng.sample(range(NUM_INPUTS + node), 2):
                edges.append((rng.choice(OPS), j))
        cells[cell] = edges
    g = Genotype(cells["normal"], range(2, 6), cells["reduce"], range(2, 6), fs=fs)
    if fs is None:
        return validate(g)
    per = {}
    for cell in ("normal", "reduce"):
        per[cell] = tuple(
            None if op in ("max_pool_3x3", "avg_pool_3x3") or (
                op == "skip_connect" and not (cell == "reduce" and j < 2))
            else rng.choice(ratios)
            for op, j in cells[cell])
    fs = dataclasses.replace(fs, normal_ratios=per["normal"], reduce_ratios=per["reduce"])
    return validate(dataclasses.replace(g, fs=fs))


def _hardened_count(g: Genotype, C: int, layers: int) -> int:
    """The independent count: the network as retrain builds it, FS hardened (DFS off),
    counted by space.layers.report (what `--summary` reports), auxiliary head left out."""
    fs = None if g.fs is None else dataclasses.replace(g.fs, dfs=False)
    return int(param_report(NetworkCIFAR(C, 10, layers, False, g, fs))["total"])


@pytest.fixture(scope="module")
def model() -> BudgetModel:
    return BudgetModel(FSSpec(2.0, True, 4), RATIOS, C=16, layers=8)


def test_expected_params_equal_the_exact_count_at_one_hot_weights(model) -> None:
    rng = random.Random(0)
    for _ in range(6):
        g = _random_genotype(rng, FSSpec(2.0, True, 4))
        exact = _hardened_count(g, 16, 8)
        assert model.exact(g) == exact
        assert model.count(g) == exact
        assert float(model.expected(*model.one_hot(g))) == exact


def test_plain_darts_budget_counts_the_darts_network() -> None:
    """FS off: E[P] at one-hot equals the plain DARTS network's count (DARTS_V2 at C=36 with
    20 cells: 3,349,342 parameters, 3.3M as the DARTS paper reports)."""
    from genotypes import ZOO

    plain = BudgetModel(None, (1.0,), C=36, layers=20)
    g = ZOO["DARTS_V2"]
    assert plain.exact(g) == plain.count(g) == float(plain.expected(*plain.one_hot(g)))
    assert abs(plain.exact(g) - 3.3e6) < 0.1e6


def test_relaxed_weights_keep_two_edges_per_node(model) -> None:
    torch.manual_seed(0)
    alphas = [torch.randn(14, 8), torch.randn(14, 8)]
    op_w, keep, ratio_w = model.relaxed(alphas, [torch.randn(14, 8, 4), torch.randn(14, 8, 4)])
    for node in range(NUM_NODES):
        rows = [e for e, (n, _) in enumerate(EDGES) if n == node]
        torch.testing.assert_close(keep[:, rows].sum(-1), torch.full((2,), 2.0).double())
    torch.testing.assert_close(keep[:, :2], torch.ones(2, 2).double())  # node 0 keeps both
    assert (op_w[..., PRIMITIVES.index("none")] == 0).all()
    torch.testing.assert_close(op_w.sum(-1), torch.ones(2, 14).double())
    torch.testing.assert_close(ratio_w.sum(-1), torch.ones(2, 14, 8).double())


def test_expected_params_move_with_the_ratio_logits(model) -> None:
    """The gradient of E[P] lowers small ratios' logits: raising them would add parameters."""
    beta = [torch.zeros(14, 8, 4, requires_grad=True), torch.zeros(14, 8, 4, requires_grad=True)]
    alphas = [torch.zeros(14, 8), torch.zeros(14, 8)]
    model.expected(*model.relaxed(alphas, beta)).backward()
    sep = PRIMITIVES.index("sep_conv_3x3")
    g = beta[0].grad[0, sep]
    assert g[0] > 0 > g[-1]


def test_fit_raises_the_largest_ops_until_the_budget_holds(model) -> None:
    g = _random_genotype(random.Random(3), FSSpec(2.0, True, 4), ratios=(1.0,))
    start = model.count(g)
    budget = int(start * 0.8)
    fitted, notes = fit_to_budget(model, g, budget)
    assert notes and model.exact(fitted) == model.count(fitted) <= budget
    # Greedy: the first change is on the op with the most parameters.
    sizes = {(c, k): model.edge_params(g, c, k) for c in ("normal", "reduce")
             for k in range(8) if getattr(g.fs, f"{c}_ratios")[k] is not None}
    first = notes[0].split(": ", 1)[1].split(" (")[0]  # "normal edge 6"
    cell, _, k = first.split()
    assert notes[0].startswith("over budget, more compression: ")
    assert sizes[(cell, int(k))] == max(sizes.values())
    # Then the unused budget is given back while it fits: no single op can go one ratio
    # lower without passing the budget, and fitting again changes nothing.
    for cell in ("normal", "reduce"):
        for k, r in enumerate(getattr(fitted.fs, f"{cell}_ratios")):
            if r is not None and r != model.ratios[0]:
                per = {c: list(getattr(fitted.fs, f"{c}_ratios")) for c in ("normal", "reduce")}
                per[cell][k] = model.ratios[model.ratios.index(r) - 1]
                trial = dataclasses.replace(fitted, fs=dataclasses.replace(
                    fitted.fs, normal_ratios=tuple(per["normal"]), reduce_ratios=tuple(per["reduce"])))
                assert model.count(trial) > budget
    same, none = fit_to_budget(model, fitted, budget)
    assert same == fitted and none == []


@pytest.mark.parametrize(("text", "count"), [
    ("1.5M", 1_500_000), ("800k", 800_000), ("1200000", 1_200_000), (1200000, 1_200_000),
    ("2.5e5", 250_000), ("1_000_000", 1_000_000), (None, None)])
def test_parse_count(text, count) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize("bad", ["abc", "-1M", "0", True, [1], "inf"])
def test_parse_count_refuses(bad) -> None:
    with pytest.raises(ValueError):
        parse_count(bad)


def test_preprocessing_ratio_need_not_be_a_candidate() -> None:
    """fs.ratio (the cell preprocessing's) outside the searched ratios, and ops without FS
    layers recorded with it, are counted all the same."""
    model = BudgetModel(FSSpec(2.0, True, 4), (1.0, 4.0, 8.0), C=16, layers=8)
    g = _random_genotype(random.Random(5), FSSpec(2.0, True, 4), ratios=(1.0, 4.0, 8.0))
    assert model.count(g) == model.exact(g) == _hardened_count(g, 16, 8)
    assert float(model.expected(*model.one_hot(g))) == model.exact(g)


def test_imagenet_budget_counts_the_imagenet_network() -> None:
    from space.darts.network import NetworkImageNet

    model = BudgetModel(FSSpec(2.0, True, 4), RATIOS, C=16, layers=8, imagenet=True)
    g = _random_genotype(random.Random(6), FSSpec(2.0, True, 4))
    hard = dataclasses.replace(g.fs, dfs=False)
    want = int(param_report(NetworkImageNet(16, 10, 8, False, g, hard))["total"])
    assert model.count(g) == model.exact(g) == want and "ImageNet" in model.describe()
