"""The budget met through width as well as ratios (space.darts.width_fit): ratios stay at or
below the rule's cap, the width is the widest that fits, a ratio fixed by hand is kept, and
a retrain that takes the genotype's ratios takes its width."""

from __future__ import annotations

import dataclasses

import pytest

from genotypes import FSSpec, from_dict, to_dict
from genotypes.zoo import lookup
from space.darts.budget_fit import CountedNet, budget_fit
from space.darts.width_fit import MAX_RATIO, fit_with_width, rule_ratios, scaled_width

NET = CountedNet(init_channels=16, layers=8)  # the smoke retrain network: quick to count
G = lookup("DARTS_V2")
DFS = FSSpec(ratio=2.0, dfs=True)


def _ratios(g) -> list[float]:
    return [r for r in (*g.fs.normal_ratios, *g.fs.reduce_ratios) if r is not None]


def test_a_budget_the_capped_ratios_cannot_reach_is_met_through_width():
    budget = 70_000
    ratios_only = budget_fit(G, budget, [1, 2, 4, 8], DFS, NET)
    assert ratios_only.within and max(_ratios(ratios_only.genotype)) > MAX_RATIO  # the old way
    assert rule_ratios() == [1.0, 2.0] and rule_ratios(4) == [1.0, 2.0, 4.0]
    fit = fit_with_width(G, budget, rule_ratios(), DFS, NET)
    assert fit.within and max(_ratios(fit.genotype)) <= MAX_RATIO
    width = fit.genotype.source["width"]
    assert width < NET.init_channels and width % 2 == 0
    assert fit.genotype.fs.width == pytest.approx(width / NET.init_channels)
    wider = budget_fit(G, budget, [1, 2], DFS, dataclasses.replace(NET, init_channels=width + 2))
    assert not wider.within  # the widest width that fits


def test_ratios_given_by_hand_are_kept_and_the_width_moves_only_if_they_cannot_reach():
    given = fit_with_width(G, 70_000, [1, 2, 4, 8], DFS, NET)
    assert given.genotype.fs.width == 1.0  # ratios up to 8 reach it: nothing narrowed
    assert max(_ratios(given.genotype)) > MAX_RATIO
    tight = fit_with_width(G, 50_000, [1, 2, 4, 8], DFS, NET)  # 59,066 at ratio 8 everywhere
    assert tight.within and tight.genotype.fs.width < 1.0


def test_an_explicit_ratio_is_kept_and_only_the_width_moves():
    fs = FSSpec(ratio=4.0, dfs=False)
    fit = fit_with_width(G, 70_000, None, fs, NET)
    assert fit.within and fit.genotype.fs.ratio == 4.0 and not fit.genotype.fs.per_op
    assert fit.genotype.fs.width < 1.0


def test_a_budget_met_at_full_width_keeps_it():
    fit = fit_with_width(G, 10_000_000, rule_ratios(), DFS, NET)
    assert fit.within and fit.genotype.fs.width == 1.0 and "width" not in fit.genotype.source


def test_the_width_travels_in_the_genotype_file_and_scales_the_retrain():
    from common.config import build_section
    from retrain.netspec import make_spec

    g = dataclasses.replace(G, fs=FSSpec(ratio=2.0, dfs=True, width=0.5))
    assert to_dict(g)["fs"]["width"] == 0.5 and from_dict(to_dict(g)) == g
    assert "width" not in to_dict(dataclasses.replace(G, fs=DFS))["fs"]  # older files unchanged
    cfg = build_section("retrain", {"init_channels": 16})
    assert make_spec(cfg, g, 10, (32, 32)).init_channels == 8
    cfg = build_section("retrain", {"init_channels": 16, "fs": {"ratio": 2.0}})
    assert make_spec(cfg, g, 10, (32, 32)).init_channels == 16  # --ratio: compression by hand
    cfg = build_section("retrain", {"init_channels": 16, "fs": {"mode": "off"}})
    assert make_spec(cfg, g, 10, (32, 32)).init_channels == 16  # the plain network
    assert scaled_width(36, 20 / 36) == 20 and scaled_width(16, 0.05) == 2
    with pytest.raises(ValueError, match="fs width 1.5 is bad"):
        from_dict({**to_dict(G), "fs": {"ratio": 2.0, "dfs": True, "num_offsets": 4,
                                         "width": 1.5}})
