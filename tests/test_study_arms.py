"""Study arms whose genotype is drawn (random), fitted to a budget, or sized (plain-narrow),
and the report's search figures, with stand-in runs where training is not the point."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from cli_exits import one_line_exit
from scipy.stats import entropy
from test_retrain_cli import make_folder
from test_study import FAKE

from genotypes import ZOO, FSSpec, load_genotype, save_genotype
from genotypes.random import random_genotype
from study import cli, runner
from study.cli import main
from study.fit import budget_fit, narrow_width, plain_count
from study.layout import search_figures
from study.spec import load_study

FAKE_SEARCH = '''
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
seed = int(args[args.index("--seed") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / ".dfs-run").write_text("search\\n")
(out / "config.yaml").write_text("search: {epochs: 2}\\n")
row = [0.5, 0.5] + [0.0] * 6 if seed == 0 else [1.0 / 8] * 8
rec = {"alphas_normal": [row] * 14, "alphas_reduce": [[1.0] + [0.0] * 7] * 14,
       "expected_params": 400000.0 + seed}
(out / "log.jsonl").write_text(json.dumps({"epoch": 0}) + "\\n" + json.dumps({"epoch": 1, **rec}) + "\\n")
(out / "genotype.json").write_text(json.dumps({
    "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4, "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]] * 4, "reduce_concat": [2, 3, 4, 5],
    "fs": None}))
'''


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """Stand-in search and retrain modules (no training), run by the study's own runner."""
    (tmp_path / "fake_retrain.py").write_text(FAKE)
    (tmp_path / "fake_search.py").write_text(FAKE_SEARCH)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log.jsonl"))
    monkeypatch.setitem(runner.MODULES, "retrain", "fake_retrain")
    monkeypatch.setitem(runner.MODULES, "search", "fake_search")
    monkeypatch.setattr(cli, "available_cores", lambda: 1)
    return tmp_path


def _write(path: Path, study: dict) -> Path:
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _study(data: Path, out: Path, arms: list[dict], **extra) -> dict:
    return {"name": "arms", "dataset": str(data), "out": str(out), "seeds": [0, 1], "threads": 1,
            "defaults": {"genotype": "DARTS_V2", "preset": "smoke"}, "arms": arms, **extra}


def _trained(log: Path) -> dict[tuple[str, int], str]:
    """(arm, seed) -> the --genotype each stand-in retrain was given."""
    runs = [json.loads(x) for x in log.read_text().splitlines()]
    return {(r["arm"], r["seed"]): r["args"][r["args"].index("--genotype") + 1] for r in runs}


def test_random_arm_draws_per_seed_and_never_redraws(fakes, capsys):
    data = make_folder(fakes / "data", per_class=2, test_per_class=1)
    out = fakes / "out"
    f = _write(fakes / "s.yaml", _study(data, out, [{"name": "rnd", "random": True}]))
    assert main(["run", str(f)]) == 0
    trained = _trained(fakes / "log.jsonl")
    for seed in (0, 1):
        path = out / "runs" / "rnd" / f"seed-{seed}-genotype.json"
        assert trained[("rnd", seed)] == str(path.resolve())
        g = load_genotype(str(path))
        # The preset's dfs retrain: the draw records learned-offset FS layers.
        assert g == random_genotype(seed, FSSpec(ratio=2.0, dfs=True))
        assert g.source == {"random": seed}
    assert "rnd seed 0: drew" in capsys.readouterr().out
    # A run that did not finish is trained again on the genotype it drew, never a new draw;
    # a new seed draws its own.
    (out / "runs" / "rnd" / "seed-0" / "metrics.json").unlink()
    kept = random_genotype(99)
    save_genotype(kept, out / "runs" / "rnd" / "seed-0-genotype.json")
    (fakes / "log.jsonl").unlink()
    assert main(["run", str(f), "--seeds", "0,1,2"]) == 0
    assert load_genotype(str(out / "runs" / "rnd" / "seed-0-genotype.json")) == kept
    assert sorted(_trained(fakes / "log.jsonl")) == [("rnd", 0), ("rnd", 2)]
    assert load_genotype(str(out / "runs" / "rnd" / "seed-2-genotype.json")).normal == \
        random_genotype(2).normal


def test_fit_arm_lands_within_the_budget_and_is_reported(fakes):
    from space.darts.budget import BudgetModel

    data = make_folder(fakes / "data", per_class=2, test_per_class=1)
    out = fakes / "out"
    ratios_only = {"ratios": [1, 2, 4, 8], "budget_rule": "ratios"}
    arms = [{"name": "fit", "budget": "0.7M", **ratios_only},
            {"name": "rnd", "random": True, "budget": "0.7M", **ratios_only},
            {"name": "tight", "budget": "0.3M", **ratios_only},
            {"name": "narrowed", "budget": "0.3M"}]  # the width rule, its own ratios 1, 2
    f = _write(fakes / "s.yaml", _study(data, out, arms, seeds=[1], compare=[["fit", "rnd"]]))
    assert main(["run", str(f)]) == 0
    rep = json.loads((out / "study.json").read_text())
    classes = len([p for p in (data / "train").iterdir() if p.is_dir()])
    for name, base in (("fit", ZOO["DARTS_V2"]), ("rnd", random_genotype(1))):
        g = load_genotype(str(out / "runs" / name / "seed-1-genotype.json"))
        assert g.normal == base.normal and g.fs.normal_ratios is not None
        exact = BudgetModel(g.fs, [1, 2, 4, 8], 36, 20, classes).exact(g)
        assert exact <= 700_000 and g.source["fitted_params"] == exact
        assert rep["arms"][name]["fitted_params"]["mean"] == exact
    assert rep["compare"][0]["a"] == "fit" and rep["compare"][0]["n_a"] == 1
    assert "| fit | – | – |" in (out / "study.md").read_text()
    assert "| 700,000 |" in (out / "study.md").read_text()
    assert rep["arms"]["fit"]["over_budget"] == 0
    # DARTS_V2 cannot reach 0.3M with every op at ratio 8: trained, and reported as over.
    tight = load_genotype(str(out / "runs" / "tight" / "seed-1-genotype.json"))
    assert tight.source["fitted_params"] > 300_000 and rep["arms"]["tight"]["over_budget"] == 1
    assert "| 300,000 (1 of 1 seeds OVER it) |" in (out / "study.md").read_text()
    # The default rule without ratios meets 0.3M as the search would: ratios 1 and 2, the
    # network narrowed (fs.width).
    narrowed = load_genotype(str(out / "runs" / "narrowed" / "seed-1-genotype.json"))
    width = narrowed.source["width"]
    assert narrowed.source["fitted_params"] <= 300_000 and width < 36
    assert narrowed.fs.width == pytest.approx(width / 36)
    assert max(r for r in narrowed.fs.normal_ratios if r is not None) <= 2
    assert BudgetModel(narrowed.fs, [1, 2], width, 20, classes).exact(narrowed) == \
        narrowed.source["fitted_params"]


def test_search_arm_reports_alpha_entropy_and_expected_params(fakes):
    data = make_folder(fakes / "data", per_class=2, test_per_class=1)
    out = fakes / "out"
    f = _write(fakes / "s.yaml", _study(data, out, [{"name": "s", "search": {"preset": "smoke"}},
                                                    {"name": "rnd", "random": True}],
                                        compare=[["s", "rnd"]]))
    assert main(["run", str(f)]) == 0
    rep = json.loads((out / "study.json").read_text())
    runs = {r["seed"]: r for r in rep["arms"]["s"]["runs"]}
    # Seed 0: normal edges split between two ops (ln 2), reduce edges decided (0).
    assert runs[0]["search_alpha_entropy"] == pytest.approx(math.log(2) / 2, rel=1e-12)
    assert runs[1]["search_alpha_entropy"] == pytest.approx(entropy([1 / 8] * 8) / 2, rel=1e-12)
    assert runs[1]["search_expected_params"] == 400001.0
    assert rep["arms"]["s"]["search_expected_params"]["mean"] == 400000.5
    assert rep["arms"]["rnd"]["search_alpha_entropy"] is None
    assert rep["compare"][0]["n_a"] == 2 and rep["compare"][0]["n_b"] == 2
    md = (out / "study.md").read_text()
    assert "| s | 0.693 (0.347–1.040) | 400,000 (400,000–400,001) | – | – |" in md


def test_search_figures_without_a_budget(tmp_path):
    rows = [[0.7, 0.1, 0.1, 0.1, 0, 0, 0, 0]] * 14
    (tmp_path / "log.jsonl").write_text(json.dumps({"epoch": 0, "alphas_normal": rows,
                                                    "alphas_reduce": rows}) + "\n")
    fig = search_figures(tmp_path)
    assert fig["search_alpha_entropy"] == pytest.approx(entropy([0.7, 0.1, 0.1, 0.1]))
    assert fig["search_expected_params"] is None
    assert search_figures(tmp_path / "none") == {"search_alpha_entropy": None,
                                                 "search_expected_params": None}


def test_plain_narrow_picks_the_closest_width():
    g = ZOO["DARTS_V2"]
    counts = {c: plain_count(g, c, 5, 10) for c in range(2, 34, 2)}
    for target in (30_000, 61_000, counts[12], (counts[20] + counts[22]) // 2 + 1, 1):
        width, count = narrow_width(g, target, 5, 10)
        best = min(counts, key=lambda c: (abs(counts[c] - target), c))
        assert (width, count) == (best, counts[best]), target


def test_plain_narrow_arm_sets_the_width(fakes, capsys):
    data = make_folder(fakes / "data", per_class=2, test_per_class=1)
    arms = [{"name": "fit", "budget": "0.7M", "ratios": [1, 2, 4, 8], "set": {"layers": 5}},
            {"name": "narrow", "fs": "off", "match_arm": "fit", "set": {"layers": 5}},
            {"name": "narrow-p", "fs": "off", "match_params": 30_000, "set": {"layers": 5}}]
    f = _write(fakes / "s.yaml", _study(data, fakes / "out", arms, seeds=[0]))
    assert main(["run", str(f), "--dry-run"]) == 0
    text = capsys.readouterr().out
    w = narrow_width(ZOO["DARTS_V2"], 30_000, 5, 2)[0]
    assert "narrow-p seed 0 retrain: new: python -m retrain --genotype DARTS_V2" in text
    assert f"--fs off --set layers=5 --set init_channels={w} --seed 0" in text
    assert "arm narrow: plain width init_channels=" in text and "arm fit's" in text


@pytest.mark.parametrize("arm,message", [
    ({"random": True, "genotype": "DARTS_V2"}, "give exactly one of `genotype`, `search` or `random: true`"),
    ({"random": True, "search": {}}, "give exactly one of"),
    ({"random": "yes"}, "random must be true or false"),
    ({"budget": "1.0Q"}, "budget '1.0Q' is not a parameter count"),
    ({"ratios": [1, 2]}, "ratios are the candidates of a budget fit; add `budget`"),
    ({"budget": "1M", "ratios": [1, 2], "fs": "off"}, "ratios need FS layers, but fs is off"),
    ({"budget": "1M", "ratios": [1]}, "give two or more distinct ratios"),
    ({"budget": "1M", "ratios": [1, 2], "fs": "dfs", "ratio": 2}, "ratio would overrule"),
    ({"search": {}, "budget": "1M"}, "a search arm's budget is the search's own"),
    ({"match_params": "1M"}, "add fs: off"),
    ({"match_params": "1M", "match_arm": "x", "fs": "off"}, "match_params or match_arm, not both"),
    ({"match_arm": "other", "fs": "off"}, "match_arm 'other' must name an arm with a named genotype "
                                          "fitted to a budget"),
])
def test_arm_errors_are_one_line(arm, message, capsys, tmp_path):
    data = make_folder(tmp_path / "data", per_class=2, test_per_class=1)
    study = _study(data, tmp_path / "out", [{"name": "x", **arm}, {"name": "other"}])
    assert message in one_line_exit(main, ["run", str(_write(tmp_path / "s.yaml", study))], capsys)
    assert not (tmp_path / "out").exists()


def test_the_search_vs_random_study_file(tmp_path, capsys):
    """The study file resolves; its search preset (proxy) swapped for smoke where the proxy
    preset is not there, the dry run names every command and the chosen plain width."""
    root = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "studies" / "search-vs-random.yaml").read_text())
    s = load_study(root / "studies" / "search-vs-random.yaml")
    kinds = {a.name: (a.search is not None, a.source and a.source.kind) for a in s.arms}
    assert kinds == {"searched": (True, None), "searched-plain-val": (True, None),
                     "searched-budget-on-ratios": (True, None),
                     "random": (False, "random"), "darts-v2-fit": (False, "fit"),
                     "plain-narrow": (False, "narrow")}
    assert s.arm("random").source.budget == s.arm("darts-v2-fit").source.budget == 700_000
    assert s.arm("searched").search.sets == ("budget.params=0.7M", "fs.ratios=[1, 2, 4, 8]",
                                             "budget.rule=ratios")
    assert s.arm("random").source.rule == s.arm("darts-v2-fit").source.rule == "ratios"
    # the remedy arm differs from `searched` in the architecture batches' augmentation only
    assert s.arm("searched-plain-val").search.sets == s.arm("searched").search.sets + (
        "arch.augment=false",)
    # the second remedy adds only the budget acting on the ratios
    assert s.arm("searched-budget-on-ratios").search.sets == s.arm(
        "searched-plain-val").search.sets + ("budget.acts_on=ratios",)
    assert ("searched-budget-on-ratios", "searched-plain-val") in s.compare
    assert ("searched", "random") in s.compare and ("searched", "darts-v2-fit") in s.compare
    assert ("searched-plain-val", "random") in s.compare
    assert ("darts-v2-fit", "plain-narrow") in s.compare
    if not (root / "configs" / "proxy.yaml").is_file():
        for arm in raw["arms"]:
            if "search" in arm:
                arm["search"]["preset"] = "smoke"
    raw["dataset"] = str(make_folder(tmp_path / "data", per_class=2, test_per_class=1))
    raw["out"] = str(tmp_path / "out")
    assert main(["run", str(_write(tmp_path / "s.yaml", raw)), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "arm plain-narrow: plain width init_channels=" in text
    assert text.count("seed 2 retrain: new:") == 6 and text.count(" search: new:") == 9
    assert not (tmp_path / "out").exists()


def test_random_arm_at_a_budget_redraws_until_one_fits(fakes):
    """Seed 8's first draw stays over 0.7M even with every op at ratio 8 (711,129 with 3
    classes, as counted on 2026-12-04): the arm takes the seed's next draws until the fit
    lands within the budget, and records which draw it took."""
    from space.darts.budget import BudgetModel

    data = make_folder(fakes / "data", per_class=2, test_per_class=1)
    out = fakes / "out"
    arms = [{"name": "rnd", "random": True, "budget": "0.7M", "ratios": [1, 2, 4, 8],
             "budget_rule": "ratios"}]
    f = _write(fakes / "s.yaml", _study(data, out, arms, seeds=[8]))
    assert main(["run", str(f)]) == 0
    g = load_genotype(str(out / "runs" / "rnd" / "seed-8-genotype.json"))
    classes = len([p for p in (data / "train").iterdir() if p.is_dir()])
    assert g.source["random"] == 8 and g.source["draw"] >= 1
    assert g.normal == random_genotype(8, draw=g.source["draw"]).normal != random_genotype(8).normal
    assert BudgetModel(g.fs, [1, 2, 4, 8], 36, 20, classes).exact(g) <= 700_000
    first = budget_fit(random_genotype(8), 700_000, [1, 2, 4, 8], FSSpec(2.0, True, 4),
                       num_classes=classes, rule="ratios")
    assert not first.within


def test_a_reused_arm_is_reported_from_its_committed_study_and_never_run(fakes, capsys):
    data = make_folder(fakes / "data", per_class=2, test_per_class=1)
    out = fakes / "out"
    committed = fakes / "committed.json"
    figures = [{"seed": s, "run_dir": f"runs/dfs/seed-{s}", "top1": 70.0 + s, "top1_wq": 69.5 + s,
                "fs": {"ratio": 2.0}, "params": 1000, "effective": 1000} for s in (0, 1, 2)]
    committed.write_text(json.dumps({"name": "old", "arms": {"dfs": {"runs": figures}}}))
    arms = [{"name": "plain", "fs": "off"},
            {"name": "old-dfs", "group": "C", "reuse": {"study": str(committed), "arm": "dfs"}}]
    f = _write(fakes / "s.yaml", _study(data, out, arms, compare=[["old-dfs", "plain"]]))
    assert main(["run", str(f), "--seeds", "0"]) == 0
    assert "arm old-dfs: reused from" in capsys.readouterr().out
    assert sorted(_trained(fakes / "log.jsonl")) == [("plain", 0)]  # the reused arm is not run
    assert not (out / "runs" / "old-dfs").exists()
    committed.unlink()  # the record keeps the figures: the report needs the file no more
    assert main(["report", str(out)]) == 0
    rep = json.loads((out / "study.json").read_text())
    arm = rep["arms"]["old-dfs"]
    assert arm["seeds"] == [0, 1, 2] and arm["top1"]["mean"] == pytest.approx(71.0)
    assert arm["reused"] == {"study": str(committed), "arm": "dfs"} and arm["group"] == "C"
    assert rep["compare"][0]["n_a"] == 3 and not any(m["arm"] == "old-dfs" for m in rep["missing"])
    md = (out / "study.md").read_text()
    assert f"old-dfs is arm dfs of `{committed}`" in md and "| old-dfs (reused) | 3 |" in md
    # Again from the study.json alone (a committed report), comparing the WQ copy too.
    rebuilt = fakes / "rebuilt"
    rebuilt.mkdir()
    rep["compare"].append({"a": "wq:old-dfs", "b": "plain"})
    (rebuilt / "study.json").write_text(json.dumps(rep))
    assert main(["report", str(rebuilt)]) == 0
    again = json.loads((rebuilt / "study.json").read_text())
    assert again["arms"]["old-dfs"]["reused"] == arm["reused"]
    assert again["compare"][1]["a"] == "wq:old-dfs" and again["compare"][1]["n_a"] == 3


@pytest.mark.parametrize("reuse, extra, message", [
    ({"study": "nowhere.json", "arm": "a"}, {}, "reuse study nowhere.json does not exist"),
    ({"study": "{committed}", "arm": "b"}, {}, "has no arm 'b'; its arms: a"),
    ({"study": "{committed}"}, {}, "reuse needs `study` (a committed study.json) and `arm`"),
    ({"study": "{committed}", "arms": "a"}, {}, "unknown key 'arms' in reuse; did you mean 'arm'?"),
    ({"study": "{broken}", "arm": "a"}, {}, "has runs without seed, run_dir, top1"),
    ({"study": "{other_data}", "arm": "a"}, {}, "trained on cifar100, this study on"),
    ({"study": "{committed}", "arm": "a"}, {"fs": "dfs"}, "a reused arm is not run, so fs has"),
])
def test_reused_arm_errors_are_one_line(reuse, extra, message, capsys, tmp_path):
    committed = tmp_path / "committed.json"
    committed.write_text(json.dumps({"arms": {"a": {"runs": [{"seed": 0, "run_dir": "r",
                                                              "top1": 1.0}]}}}))
    (tmp_path / "broken.json").write_text(json.dumps({"arms": {"a": {"runs": [{"top1": 1.0}]}}}))
    (tmp_path / "other.json").write_text(json.dumps({"dataset": "cifar100", "arms": {
        "a": {"runs": [{"seed": 0, "run_dir": "r", "top1": 1.0}]}}}))
    paths = {"committed": committed, "broken": tmp_path / "broken.json",
             "other_data": tmp_path / "other.json"}
    reuse = {k: v.format(**paths) for k, v in reuse.items()}
    data = make_folder(tmp_path / "data", per_class=2, test_per_class=1)
    study = _study(data, tmp_path / "out", [{"name": "x", "reuse": reuse, **extra}])
    assert message in one_line_exit(main, ["run", str(_write(tmp_path / "s.yaml", study))], capsys)
    assert not (tmp_path / "out").exists()
