"""Budget-aware search: the derivation caps, the penalty terms, the architect's regulariser,
a budget search on tiny synthetic data, and the plain search left exactly as it was."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from image_folders import make_image_folder

from common.config import resolve_config
from genotypes import PRIMITIVES, from_dict
from genotypes.derive import derive, free_op_count, skip_count
from search.architect import Architect
from search.cli import main
from search.penalty import ArchPenalty, derive_caps
from space.darts.network import NetworkCIFAR
from space.darts.supernet import SearchNetwork
from space.layers.report import param_report

TINY = ["--preset", "smoke", "--set", "init_channels=4", "--set", "layers=5", "--batch-size", "8",
        "--threads", "1", "--set", "runtime.draw_every=0", "--set", "runtime.plot=false"]
SKIP, MAX_POOL = PRIMITIVES.index("skip_connect"), PRIMITIVES.index("max_pool_3x3")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "imgs")


# -- derivation caps -------------------------------------------------------------------------


def _leaning(col: int, noise_seed: int = 0) -> np.ndarray:
    """Alphas where every edge prefers op `col`, with small noise to break ties."""
    a = np.random.default_rng(noise_seed).normal(0, 0.01, (14, 8))
    a[:, col] += 1.0
    return a


def test_skip_cap_keeps_at_most_that_many_skips() -> None:
    a = _leaning(SKIP)
    assert skip_count(derive(a, a))["normal"] == 8
    g = derive(a, a, max_skip=2)
    assert skip_count(g) == {"normal": 2, "reduce": 2}
    # The two kept skips are the strongest skip edges of the cell.
    w = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    kept = sorted((row for row in range(14)), key=lambda r: -w[r, SKIP])
    rows = {0: 0, 1: 2, 2: 5, 3: 9}
    skip_rows = [rows[k // 2] + j for k, (op, j) in enumerate(g.normal) if op == "skip_connect"]
    assert kept[0] in skip_rows


def test_free_op_cap_counts_pools_and_identity_skips() -> None:
    a = _leaning(MAX_POOL)
    g = derive(a, a, max_free=2)
    assert free_op_count(g) == {"normal": 2, "reduce": 2}
    assert derive(a, a, max_free=None) == derive(a, a)


# -- penalty and architect -------------------------------------------------------------------


def _cfg(**budget) -> dict:
    cfg = resolve_config("search", "smoke", ["init_channels=4", "layers=5"])
    for k, v in budget.items():
        setattr(cfg.budget, k, v)
    return cfg


def test_hinge_is_zero_within_the_budget_and_target_is_two_sided() -> None:
    net = SearchNetwork(C=4, layers=5)
    for mode, e, want in (("hinge", 900.0, 0.0), ("hinge", 1500.0, 0.5),
                          ("target", 900.0, 0.1), ("target", 1500.0, 0.5)):
        cfg = _cfg(params=1000, mode=mode, weight=1.0)
        cfg.arch.beta_decay = 0.0
        pen = ArchPenalty(net, cfg, model=None)
        pen.expected_params = lambda e=e: torch.tensor(e, dtype=torch.float64)
        assert float(pen()) == pytest.approx(want)


def test_budget_weight_warms_up_from_zero() -> None:
    net = SearchNetwork(C=4, layers=5)
    pen = ArchPenalty(net, _cfg(params=1000, weight=2.0, warmup_epochs=2), None)
    weights = []
    for epoch in range(4):
        pen.epoch = epoch
        weights.append(pen.budget_weight())
    assert weights == [0.0, 1.0, 2.0, 2.0]
    assert ArchPenalty(net, _cfg(params=1000, weight=2.0), None).budget_weight() == 2.0


def test_caps_and_beta_decay_default_on_only_with_a_budget() -> None:
    assert derive_caps(_cfg()) == {"max_skip": None, "max_free": None}
    assert derive_caps(_cfg(params=10**6)) == {"max_skip": 2, "max_free": 2}
    net = SearchNetwork(C=4, layers=5)
    assert not ArchPenalty(net, _cfg(), None).active
    cfg = _cfg()
    cfg.arch.beta_decay = 2.0
    pen = ArchPenalty(net, cfg, None)
    pen.epoch = cfg.epochs - 1  # full weight at the last epoch
    alphas = torch.cat([net.alphas_normal, net.alphas_reduce])
    with torch.no_grad():
        assert float(pen()) == pytest.approx(2.0 * float(torch.logsumexp(alphas, -1).mean()))


@pytest.mark.parametrize("acts_on", ["all", "ratios"])
def test_budget_acts_on_ratios_leaves_the_op_weights_to_the_loss(acts_on) -> None:
    """budget.acts_on ratios: the budget term's gradient reaches the ratio logits only; all
    (the default): the op weights too. E[P] itself is the same either way."""
    from types import SimpleNamespace

    from common.fs_settings import fs_spec
    from search.penalty import budget_model
    from search.resolve import resolve_search
    from search.settings import check_config

    cfg = _cfg(params=20_000, weight=1.0, init_channels=8, layers=5, acts_on=acts_on)
    cfg.fs.ratios = [1.0, 2.0, 4.0, 8.0]
    cfg.arch.beta_decay = 0.0
    check_config(cfg)
    torch.manual_seed(0)
    net = SearchNetwork(C=8, layers=5, fs=fs_spec(cfg.fs), ratios=cfg.fs.ratios)
    with torch.no_grad():  # off uniform, so that no gradient vanishes by symmetry
        for a in net.arch_parameters():
            a.normal_(0.0, 0.5)
    info = SimpleNamespace(num_classes=10, in_channels=3, input_size=(32, 32))
    pen = ArchPenalty(net, cfg, budget_model(resolve_search(cfg, info)))
    term = pen()
    assert float(term.detach()) > 0  # over the budget: the hinge is active
    grads = torch.autograd.grad(term, [net.alphas_normal, net.alphas_reduce, net.ratios_normal,
                                       net.ratios_reduce], allow_unused=True, materialize_grads=True)
    op_norm = float(torch.cat([g.flatten() for g in grads[:2]]).norm())
    ratio_norm = float(torch.cat([g.flatten() for g in grads[2:]]).norm())
    assert ratio_norm > 0
    assert (op_norm == 0) == (acts_on == "ratios")
    other = "all" if acts_on == "ratios" else "ratios"
    cfg.budget.acts_on = other
    same = ArchPenalty(net, cfg, budget_model(resolve_search(cfg, info))).expected_params()
    torch.testing.assert_close(same, pen.expected_params())


def test_budget_on_ratios_needs_searched_ratios() -> None:
    from common.errors import UserError
    from search.settings import check_config

    cfg = _cfg(params=20_000, acts_on="ratios")
    with pytest.raises(UserError, match="needs searched ratios.*--ratios"):
        check_config(cfg)


def test_architect_adds_the_regularizer_gradient() -> None:
    torch.manual_seed(0)
    net = SearchNetwork(C=4, layers=5)
    upper, lower = net.arch_parameters(), net.weight_parameters()
    opt = torch.optim.SGD(lower, lr=0.1)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    plain = Architect(net, upper, lower, opt)
    reg = Architect(net, upper, lower, opt, regularizer=lambda: 3.0 * net.alphas_normal.sum())
    g0, _ = plain.gradient(x, y, x, y, 0.1)
    captured = {}

    def capture(*_a, **_k):
        captured["g"] = [p.grad.clone() for p in upper]

    reg.optimizer.step = capture
    reg.step(x, y, x, y, 0.1)
    torch.testing.assert_close(captured["g"][0], g0[0] + 3.0)
    torch.testing.assert_close(captured["g"][1], g0[1])


# -- end to end ------------------------------------------------------------------------------

# The plain tiny search (same TINY arguments, 2 epochs) as a search without the budget
# machinery computes it: without --budget and fs.ratios, nothing of it may take part. The
# losses are compared at rtol 1e-4: float32 sums in another CPU vector width move them by
# about 1e-5, any change of the algorithm by far more.
BEFORE_GENOTYPE = {
    "normal": [["sep_conv_3x3", 1], ["dil_conv_3x3", 0], ["sep_conv_3x3", 2], ["skip_connect", 0],
               ["avg_pool_3x3", 2], ["max_pool_3x3", 3], ["max_pool_3x3", 3], ["skip_connect", 1]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["dil_conv_5x5", 1], ["dil_conv_3x3", 0], ["dil_conv_5x5", 2], ["sep_conv_3x3", 0],
               ["avg_pool_3x3", 0], ["skip_connect", 3], ["sep_conv_5x5", 2], ["avg_pool_3x3", 0]],
    "reduce_concat": [2, 3, 4, 5], "fs": {"ratio": 2.0, "dfs": True, "num_offsets": 4}}
BEFORE_TRAIN_LOSS = [1.095167617003123, 0.2718347708384196]
BEFORE_VALID_LOSS = [1.4006115595499675, 1.4264575242996216]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_plain_search_is_unchanged(folder, tmp_path) -> None:
    run = tmp_path / "run"
    main([str(folder), *TINY, "--epochs", "2", "--out", str(run)])
    recs = _records(run)
    g = dict(recs[-1]["genotype"])
    assert g.pop("source") == {"algorithm": "darts"}  # provenance, not architecture
    assert g == BEFORE_GENOTYPE
    np.testing.assert_allclose([r["train_loss"] for r in recs], BEFORE_TRAIN_LOSS, rtol=1e-4)
    np.testing.assert_allclose([r["valid_loss"] for r in recs], BEFORE_VALID_LOSS, rtol=1e-4)
    assert "expected_params" not in recs[-1]


@pytest.mark.slow
def test_budget_search_ends_under_budget(folder, tmp_path, capsys) -> None:
    """A budget search on tiny data: E[P] logged each epoch, the final genotype's network
    (counted independently, as retrain builds it) within the budget."""
    run = tmp_path / "run"
    budget = 40_000
    main([str(folder), *TINY, "--epochs", "2", "--out", str(run), "--ratios", "1,2,4",
          "--budget", "40k", "--set", "budget.init_channels=8", "--set", "budget.layers=5"])
    out = capsys.readouterr().out
    recs = _records(run)
    for r in recs:
        assert r["budget"] == budget and r["expected_params"] > 0 and r["params"] > 0
        assert set(r["free_ops"]) == {"normal", "reduce"}
    g = from_dict(json.loads((run / "genotype.json").read_text()))
    assert g.fs.normal_ratios is not None and g.fs.reduce_ratios is not None
    assert free_op_count(g)["normal"] <= 2 and skip_count(g)["normal"] <= 2
    hard = dataclasses.replace(g.fs, dfs=False)
    count = int(param_report(NetworkCIFAR(8, 4, 5, False, g, hard))["total"])
    assert count <= budget
    assert f"final genotype: {count:,} parameters" in out and "(within it)" in out
    # `genotypes plot` draws E[P] against the budget for such a run.
    from genotypes.plot import plot_run

    assert (run / "plots" / "size.png") in plot_run(run)


@pytest.mark.slow
def test_budget_search_resumes_to_the_uninterrupted_result(folder, tmp_path, monkeypatch, capsys):
    """Stopped after its first epoch and resumed, a budget search with searched ratios ends
    with the uninterrupted run's log figures, ratio logits and fitted genotype."""
    from search.trainer import SearchTrainer

    args = [str(folder), *TINY, "--epochs", "2", "--ratios", "1,2,4", "--budget", "40k",
            "--set", "budget.init_channels=8", "--set", "budget.layers=5"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    main([*args, "--out", str(full)])
    real = SearchTrainer.train_epoch

    def stop_at_second(self, epoch, show=True):
        if epoch >= 1:
            raise KeyboardInterrupt
        return real(self, epoch, show)

    monkeypatch.setattr(SearchTrainer, "train_epoch", stop_at_second)
    with pytest.raises(SystemExit):
        main([*args, "--out", str(cut)])
    monkeypatch.setattr(SearchTrainer, "train_epoch", real)
    main(["--resume", str(cut)])
    capsys.readouterr()

    def figures(run: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
                for r in _records(run)]

    assert figures(cut) == figures(full)
    assert (cut / "genotype.json").read_text() == (full / "genotype.json").read_text()
    a, b = (torch.load(r / "checkpoint.pt", weights_only=False)["model"] for r in (full, cut))
    assert torch.equal(a["ratios_normal"], b["ratios_normal"])


@pytest.mark.slow
def test_a_budget_alone_searches_the_ratios(folder, tmp_path, capsys) -> None:
    """--budget without --ratios searches each op's ratio among 1, 2 (the width rule) and
    narrows the network where they cannot reach it; --ratio R fixes the ratio, which the rule
    keeps (only the width moves); with budget.rule ratios an unreachable budget gets the
    clear message."""
    small = ["--set", "budget.init_channels=8", "--set", "budget.layers=5", "--set", "init_channels=8"]
    run = tmp_path / "run"
    main([str(folder), *TINY, "--epochs", "1", "--out", str(run), "--budget", "40k", *small])
    out = capsys.readouterr().out
    # The width rule (the default): ratios up to budget.max_ratio 2, then a narrower network.
    assert "each op's FS ratio is searched among 1, 2 " in out
    assert yaml.safe_load((run / "config.yaml").read_text())["search"]["fs"]["ratios"] == [1, 2]
    assert "(within it)" in out
    genotype = json.loads((run / "genotype.json").read_text())
    assert "width rule: ops' ratios among 1, 2, network at init_channels" in out
    assert max(r for r in genotype["fs"]["normal_ratios"] if r is not None) <= 2
    kept = tmp_path / "kept"
    main([str(folder), *TINY, "--epochs", "1", "--out", str(kept), "--budget", "20k",
          "--ratio", "2", *small])
    out = capsys.readouterr().out
    genotype = json.loads((kept / "genotype.json").read_text())
    assert "searched among" not in out and "(within it)" in out
    assert genotype["fs"]["ratio"] == 2.0 and genotype["fs"]["width"] < 1.0
    fixed = tmp_path / "fixed"
    main([str(folder), *TINY, "--epochs", "1", "--out", str(fixed), "--budget", "20k",
          "--ratio", "2", "--set", "budget.rule=ratios", *small])
    out = capsys.readouterr().out
    assert "searched among" not in out and "its ratios are fixed" in out
