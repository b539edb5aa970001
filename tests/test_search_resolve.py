"""A search's settings are resolved once (search/resolve.py): the input config is never
changed, the resolved one records every choice, the FS spec is read from it once, the
budget's choices are the fit's own (space.darts.budget_fit, which the study and `genotypes
random` call), and a whole search makes its algorithm once and leaves its config alone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from image_folders import make_image_folder

from common.config import resolve_config
from common.fs_settings import fs_spec
from common.schema import as_dict
from genotypes.random import random_genotype
from search.resolve import BUDGET_RATIOS, resolve_search, settle
from space.darts.budget_fit import CountedNet, budget_fit

INFO = SimpleNamespace(num_classes=10, in_channels=3, input_size=(32, 32))
BUDGET = ["budget.params=40000", "budget.init_channels=8", "budget.layers=5", "budget.rule=ratios"]


def _cfg(items: list[str]):
    return resolve_config("search", "smoke", ["init_channels=4", "layers=5", *items])


def test_resolution_leaves_its_input_alone_and_records_each_choice():
    cfg = _cfg(BUDGET)
    before = as_dict(cfg)
    s = resolve_search(cfg, INFO, "cpu", given={"budget.params"})
    assert as_dict(cfg) == before  # the input config is never changed
    assert s.chose_ratios and s.ratios == list(BUDGET_RATIOS) and cfg.fs.ratios is None
    # The resolved config records the choices (config.yaml), and the FS spec is its reading.
    assert s.cfg.runtime.threads == s.cpu.threads and s.cfg.data.workers == s.cpu.workers
    assert s.fs == fs_spec(s.cfg.fs)
    assert s.preprocess_ratio == s.cfg.fs.ratio != cfg.fs.ratio
    # The budget network the search counts, and the preprocessing ratio the fit picks for it.
    net = CountedNet(8, 5, 10, 3, False)
    assert s.counted == net
    fit = budget_fit(random_genotype(3), 40_000, s.ratios, fs_spec(cfg.fs), net)
    assert fit.genotype.fs.ratio == s.fs.ratio
    # A resumed run's config (given None) is taken as recorded: nothing is chosen again.
    again = resolve_search(s.cfg, INFO, "cpu")
    assert as_dict(again.cfg) == as_dict(s.cfg) and not again.chose_ratios
    assert again.preprocess_ratio is None and again.fs == s.fs


def test_fixed_ratio_and_no_budget_choose_nothing():
    for items, given in ((BUDGET + ["fs.ratio=4"], {"budget.params", "fs.ratio"}), ([], set())):
        cfg = _cfg(items)
        assert settle(cfg, given) is cfg
        s = resolve_search(cfg, INFO, "cpu", given=given)
        assert not s.chose_ratios and s.ratios is None and s.preprocess_ratio is None
    assert resolve_search(_cfg([]), INFO).counted is None  # no budget: nothing counted


def test_the_width_rule_narrows_the_counted_network_and_caps_the_searched_ratios():
    from space.darts.width_fit import reference_width

    items = [b for b in BUDGET if b != "budget.rule=ratios"]  # the default rule: width
    s = resolve_search(_cfg(items), INFO, "cpu", given={"budget.params"})
    assert s.ratios == [1.0, 2.0]  # up to budget.max_ratio
    full = CountedNet(8, 5, 10, 3, False)
    width = reference_width(s.fs, 2.0, 40_000, full)
    assert s.counted.init_channels == width and s.width == width / 8
    assert s.width < 1.0  # ratio 2 cannot reach 40k at width 8
    fixed = resolve_search(_cfg([*items, "fs.ratio=4"]), INFO, "cpu", given={"budget.params", "fs.ratio"})
    assert fixed.ratios is None and fixed.fs.ratio == 4.0  # a ratio given by hand stays
    assert fixed.counted.init_channels == reference_width(fixed.fs, 4.0, 40_000, full)


def test_retrain_threads_are_the_given_ones():
    assert resolve_search(_cfg(["runtime.threads=3"]), INFO).retrain_threads == 3
    assert resolve_search(_cfg(["runtime.threads=null"]), INFO).retrain_threads is None


@pytest.mark.slow
def test_a_search_makes_its_algorithm_once_and_keeps_its_config(tmp_path: Path, monkeypatch):
    import search.cli
    import search.settings
    from search.cli import main

    made, seen = [], []
    real_make, real_run = search.settings.make_algorithm, search.cli.run_search

    def make(cfg):
        made.append(cfg.algorithm)
        return real_make(cfg)

    def run(settings, *a, **k):
        before = as_dict(settings.cfg)
        out = real_run(settings, *a, **k)
        seen.append(as_dict(settings.cfg) == before)
        return out

    monkeypatch.setattr(search.settings, "make_algorithm", make)
    monkeypatch.setattr(search.cli, "run_search", run)
    folder = make_image_folder(tmp_path / "imgs")
    main([str(folder), "--preset", "smoke", "--set", "init_channels=4", "--set", "layers=5",
          "--batch-size", "8", "--threads", "1", "--epochs", "1", "--ratios", "1,2,4",
          "--budget", "40k", "--set", "budget.init_channels=8", "--set", "budget.layers=5",
          "--set", "runtime.draw_every=0", "--set", "runtime.plot=false",
          "--out", str(tmp_path / "run")])
    assert made == ["darts"] and seen == [True]
