"""Random genotypes: uniform over ops and input pairs (chi-square over many draws, with a
biased sampler that the same test rejects), reproducible by seed, valid, and fitted within
a budget by the search's exact fit; the command line and its one-line errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from genotypes import FSSpec, load_genotype, validate
from genotypes.__main__ import main
from genotypes.primitives import NUM_INPUTS, NUM_NODES, PRIMITIVES
from genotypes.random import OPS, random_genotype

ROOT = Path(__file__).resolve().parents[1]
DRAWS = 2000


def _uniformity_p(genotypes) -> tuple[float, list[float]]:
    """(p of the op counts over the 7 ops, p of each node's input-pair counts over its pairs,
    for the nodes with more than one pair: node 0 always takes inputs 0 and 1)."""
    ops = [op for g in genotypes for cell in (g.normal, g.reduce) for op, _ in cell]
    op_p = chisquare([ops.count(o) for o in OPS]).pvalue
    pair_ps = []
    for node in range(1, NUM_NODES):
        pairs = list(combinations(range(NUM_INPUTS + node), 2))
        seen = [tuple(sorted(j for _, j in cell[2 * node:2 * node + 2]))
                for g in genotypes for cell in (g.normal, g.reduce)]
        pair_ps.append(chisquare([seen.count(p) for p in pairs]).pvalue)
    return op_p, pair_ps


def test_draws_are_uniform_over_ops_and_input_pairs():
    assert set(OPS) == set(PRIMITIVES) - {"none"} and len(OPS) == 7
    op_p, pair_ps = _uniformity_p([random_genotype(s) for s in range(DRAWS)])
    assert op_p > 0.001 and min(pair_ps) > 0.001, (op_p, pair_ps)


def test_a_biased_sampler_fails_the_same_test():
    """The test can fail: draws that favour the first op and the (0, 1) input pair."""
    rng = np.random.default_rng(0)
    biased = []
    for s in range(DRAWS):
        g = random_genotype(s)
        cells = []
        for cell in (g.normal, g.reduce):
            edges = list(cell)
            if rng.random() < 0.1:  # 10% of cells: every node takes inputs 0, 1 and op 0
                edges = [(OPS[0], j) for _ in range(NUM_NODES) for j in (0, 1)]
            cells.append(tuple(edges))
        biased.append(g.__class__(cells[0], g.normal_concat, cells[1], g.reduce_concat))
    op_p, pair_ps = _uniformity_p(biased)
    assert op_p < 0.001 and all(p < 0.001 for p in pair_ps)


def test_same_seed_same_genotype_and_every_draw_is_valid():
    a, b = random_genotype(7), random_genotype(7)
    assert a == b and a.source == {"random": 7}
    assert len({random_genotype(s) for s in range(50)}) == 50
    for s in range(200):
        g = random_genotype(s)
        validate(g)
        for cell in (g.normal, g.reduce):
            for node in range(NUM_NODES):
                (_, i), (_, j) = cell[2 * node:2 * node + 2]
                assert i < j < NUM_INPUTS + node  # distinct, in range, listed in order
    np.random.seed(1)
    state = np.random.get_state()[1].copy()
    random_genotype(3)
    assert (np.random.get_state()[1] == state).all()  # the global RNG is left alone
    fs = FSSpec(ratio=4.0, dfs=False)
    assert random_genotype(3, fs).fs == fs and random_genotype(3, fs) != random_genotype(3)


@pytest.mark.parametrize("seed,budget", [(0, 300_000), (1, 300_000), (2, 250_000), (5, 400_000)])
def test_budget_fit_of_a_random_genotype_lands_within_the_budget(seed, budget):
    from space.darts.budget import BudgetModel
    from study.fit import budget_fit

    fs = FSSpec(ratio=2.0, dfs=True)
    fit = budget_fit(random_genotype(seed), budget, [1, 2, 4, 8], fs, init_channels=16, layers=8)
    g = fit.genotype
    model = BudgetModel(g.fs, [1, 2, 4, 8], 16, 8)
    exact = model.exact(g)  # the network built and counted
    assert exact == fit.exact <= budget and fit.within
    assert g.source == {"random": seed, "budget": budget, "fitted_params": exact}
    assert g.normal == random_genotype(seed).normal  # only the ratios change
    # The fit uses the budget: no op's ratio can be lowered a step without going over it.
    for cell in ("normal", "reduce"):
        ratios = list(getattr(g.fs, f"{cell}_ratios"))
        for k, r in enumerate(ratios):
            if r is None or r == 1.0:
                continue
            lower = list(ratios)
            lower[k] = {2.0: 1.0, 4.0: 2.0, 8.0: 4.0}[r]
            trial = dataclasses.replace(g, fs=dataclasses.replace(g.fs, **{f"{cell}_ratios": lower}))
            assert model.exact(trial) > budget


def test_importing_genotypes_loads_nothing_else_of_the_project():
    code = ("import sys, genotypes, genotypes.random; "
            "print(sorted(m for m in ('space', 'search', 'study', 'retrain', 'common', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_cli_draws_fits_and_writes(tmp_path, capsys):
    f = tmp_path / "g.json"
    assert main(["random", "--seed", "4", "--out", str(f)]) == 0
    # The search's FS default (dfs, ratio 2, 4 offsets); --fs off for plain convolutions.
    assert load_genotype(str(f)) == random_genotype(4, FSSpec(ratio=2.0, dfs=True, num_offsets=4))
    assert main(["random", "--seed", "4", "--fs", "off", "--out", str(f)]) == 0
    assert load_genotype(str(f)) == random_genotype(4)
    assert "Genotype(normal=" in capsys.readouterr().out
    f2 = tmp_path / "fit.json"
    assert main(["random", "--seed", "4", "--fs", "dfs", "--budget", "300k", "--ratios", "1,2,4,8",
                 "--init-channels", "16", "--layers", "8", "--out", str(f2)]) == 0
    cap = capsys.readouterr()
    assert "budget: 300,000 effective parameters" in cap.err and "(within it)" in cap.err
    g = load_genotype(str(f2))
    assert g.source["random"] == 4 and g.source["budget"] == 300000 and g.fs.normal_ratios is not None


def test_cli_fits_ratios_with_the_search_fs_default(capsys):
    """--budget with --ratios and no --fs fits, as a search with the same flags would (the
    default is the search's dfs, not plain convolutions)."""
    assert main(["random", "--seed", "3", "--budget", "300k", "--ratios", "1,2,4,8",
                 "--init-channels", "16", "--layers", "8"]) == 0
    cap = capsys.readouterr()
    assert "(within it)" in cap.err and "fs: ratio" in cap.out and "DFS" in cap.out


@pytest.mark.parametrize("argv,message", [
    (["--budget", "1.0Q"], "--budget '1.0Q' is not a parameter count"),
    (["--budget", "1M", "--ratios", "1,2", "--fs", "off"], "--ratios need FS layers, but --fs is off"),
    (["--ratios", "1,2", "--fs", "dfs"], "add --budget"),
    (["--fs", "off", "--ratio", "2"], "--ratio has no effect with --fs off"),
    (["--seed", "-1"], "seed must be an integer >= 0"),
    (["--fs", "dfs", "--budget", "1M", "--init-channels", "15"], "--init-channels 15 is invalid"),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    args = ["random", *(argv if "--seed" in argv else ["--seed", "1", *argv])]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_a_draw_that_cannot_fit_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    f = tmp_path / "g.json"
    argv = ["random", "--seed", "4", "--fs", "dfs", "--budget", "10k", "--ratios", "1,2",
            "--budget-rule", "ratios", "--init-channels", "16", "--layers", "8", "--out", str(f)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "(OVER it)" in err[-2]
    assert err[-1].startswith("error: random draw 4 cannot fit 10,000 parameters")
    assert not f.exists()
