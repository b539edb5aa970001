"""`python -m study`: statistics against scipy and hand-checked values, one-line errors for
bad study files, jobs x threads, and real tiny studies (two arms, two seeds) that are killed,
resumed and extended without running a finished run again."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_exits import one_line_exit
from scipy import stats as sst
from test_retrain_cli import make_folder

from common.errors import UserError
from common.schema import as_dict
from retrain import setup as rsetup
from study import cli, layout, record, reuse, runner
from study.cli import main, split_threads
from study.commands import retrain_argv
from study.spec import from_dict, load_study
from study.stats import describe, pareto_front, welch

ROOT = Path(__file__).resolve().parents[1]
TINY = {"init_channels": 4, "layers": 3, "batch_size": 8, "epochs": 1, "data": {"workers": 0}}


def _study(data: Path, out: Path, **extra) -> dict:
    return {"name": "tiny", "dataset": str(data), "out": str(out), "seeds": [0, 1], "threads": 1,
            "defaults": {"genotype": "DARTS_V2", "preset": "smoke", "set": TINY},
            "arms": [{"name": "fs-off", "fs": False}, {"name": "fs-r2", "fs": "fs", "ratio": 2}],
            "compare": [["fs-r2", "fs-off"]], **extra}


def _write(path: Path, study: dict) -> Path:
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _fail(capsys, argv) -> str:
    return one_line_exit(main, argv, capsys)


def _study_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "study", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


# --- statistics ----------------------------------------------------------------------------
def test_statistics_equal_scipy_and_hand_values():
    d = describe([1, 2, 3, 4])
    assert d["n"] == 4 and d["mean"] == 2.5
    assert d["std"] == pytest.approx(math.sqrt(5 / 3))          # ddof 1: 1.2910
    assert d["ci95"] == pytest.approx([0.445740, 4.554260], abs=1e-6)  # 2.5 -+ 3.18245 * 0.6455
    lo, hi = sst.t.interval(0.95, 3, loc=2.5, scale=sst.sem([1, 2, 3, 4]))
    assert d["ci95"] == pytest.approx([lo, hi], rel=1e-12)
    one = describe([61.5])
    assert one["mean"] == 61.5 and one["std"] is None and one["ci95"] is None
    assert describe([3, 3, 3])["ci95"] == [3.0, 3.0]   # no spread: a point, never NaN
    a, b = [61.2, 62.8, 60.9], [58.1, 59.9, 57.0, 58.8]
    w = welch(a, b)
    ref = sst.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert w["difference"] == pytest.approx(sum(a) / 3 - sum(b) / 4)
    assert w["p"] == pytest.approx(ref.pvalue, rel=1e-12) and w["df"] == pytest.approx(ref.df)
    assert w["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-12)
    assert welch([1.0], [2.0, 3.0])["p"] is None and welch([1.0], [2.0, 3.0])["ci95"] is None
    assert welch([5, 5], [5, 5])["p"] is None  # scipy: NaN; here null
    json.dumps([d, one, w, welch([5, 5], [5, 5])], allow_nan=False)
    assert pareto_front([(100, 60.0), (50, 58.0), (80, 57.0), (200, 60.0), (30, 58.0)]) == [4, 0]


def test_threads_never_oversubscribe():
    assert split_threads(1, None, 2) == (2, None)
    assert split_threads(2, None, 4) == (2, None)
    threads, note = split_threads(2, 2, 2)
    assert threads == 1 and "oversubscribe" in note
    assert split_threads(1, 1, 2) == (1, None)
    with pytest.raises(Exception, match="more than the 2 CPU"):
        split_threads(3, None, 2)


# --- the study file ------------------------------------------------------------------------
def test_study_file_errors_are_one_line(capsys, tmp_path):
    data = make_folder(tmp_path / "data", per_class=2, test_per_class=1)
    good = _study(data, tmp_path / "out")
    f = tmp_path / "s.yaml"

    def err(study: dict) -> str:
        return _fail(capsys, ["run", str(_write(f, study))])

    def arms(*items: dict) -> dict:
        return {**good, "arms": list(items), "compare": []}

    assert "unknown key 'sead' in the study file; did you mean 'seeds'?" in err(
        {**good, "sead": [0]})
    assert "did you mean 'ratio'?" in err(arms({"name": "a", "ratoi": 2}))
    assert "compare names arm 'fs-r3', which is not an arm; did you mean 'fs-r2'?" in err(
        {**good, "compare": [["fs-r3", "fs-off"]]})
    assert "arm names repeat: fs-off" in err({**good, "arms": good["arms"] + [{"name": "fs-off"}]})
    assert "`seeds` must be a non-empty list" in err({**good, "seeds": []})
    assert "quote it" in err(arms({"name": False}))           # `name: off`
    assert "ratio has no effect with fs off" in err(arms({"name": "x", "fs": "off", "ratio": 2}))
    # Config keys are checked as the commands check them, before anything runs.
    bad = arms({"name": "x", "set": {"optimizer.lrr": 0.1}})
    assert "arm 'x': unknown config key 'optimizer.lrr'; did you mean optimizer.lr" in err(bad)
    assert "arm 'x': bad genotype" in err(arms({"name": "x", "genotype": "DART_V2"}))
    assert "arm 'x': unknown config key 'arch.lrr'" in err(
        arms({"name": "x", "search": {"set": {"arch.lrr": 1}}}))
    assert "algo 'pcdarts' is unknown; use one of darts, pc-darts, gdas" in err(
        arms({"name": "x", "search": {"algo": "pcdarts"}}))
    assert "arm 'x': --algo gdas supports --order first only" in err(
        arms({"name": "x", "search": {"algo": "gdas", "order": "second"}}))
    assert not (tmp_path / "out").exists()
    assert "not a folder" in _fail(capsys, ["run", str(_write(f, {**good, "dataset": "nope"}))])
    assert "--seeds" in _fail(capsys, ["run", str(_write(f, good)), "--seeds", "0,x"])
    assert "holds neither study.yaml" in _fail(capsys, ["report", str(tmp_path)])
    assert "FS ratio inf is invalid" in err(arms({"name": "x", "fs": "fs", "ratio": float("inf")}))
    # `out` may come from the file or from --out, but from one of them.
    no_out = {k: v for k, v in good.items() if k != "out"}
    assert "names no output folder" in err(no_out)
    assert main(["run", str(_write(f, no_out)), "--out", str(tmp_path / "o2"), "--dry-run"]) == 0


def test_study_file_schema():
    s = from_dict({"name": "n", "dataset": "cifar10", "out": "o", "seeds": [0, 1],
                   "defaults": {"genotype": "DARTS_V2", "set": {"optimizer": {"lr": 0.05}}},
                   "arms": [{"name": "off", "fs": False},
                            {"name": "dfs", "fs": "dfs", "ratio": 2, "set": ["optimizer.lr=0.1"]},
                            {"name": "s", "search": {"fs": "dfs", "set": {"epochs": 2}}}]})
    off, dfs, searched = s.arms
    assert off.retrain.fs == "off" and off.retrain.sets == ("optimizer.lr=0.05",)
    assert dfs.retrain.sets == ("optimizer.lr=0.05", "optimizer.lr=0.1")  # the arm's item last
    assert searched.search.sets == ("epochs=2",) and searched.retrain.genotype is None


def test_the_fs_fidelity_study_file():
    s = load_study(ROOT / "studies" / "fs-fidelity.yaml")
    record.preflight(s)  # every arm's config keys and genotype resolve
    assert [a.name for a in s.arms] == ["fs-off", "fs-r2", "dfs-r2", "dfs-r2-lr100-anneal",
                                        "dfs-r2-lr100"] and s.seeds == [0, 1, 2]
    argv = {a.name: retrain_argv(a, "D") for a in s.arms}
    assert argv["fs-off"] == ["--genotype", "DARTS_V2", "--dataset", "D", "--preset", "smoke",
                              "--fs", "off", "--set", "epochs=20"]
    assert argv["fs-r2"][6:10] == ["--fs", "fs", "--ratio", "2"]
    assert argv["dfs-r2"][6:10] == ["--fs", "dfs", "--ratio", "2"]
    assert argv["dfs-r2-lr100-anneal"][10:] == ["--set", "epochs=20", "--set",
                                                "fs.offset_lr_scale=100", "--set",
                                                "fs.temperature.end=0.1"]
    assert s.compare[:3] == [("fs-r2", "fs-off"), ("dfs-r2", "fs-off"), ("dfs-r2", "fs-r2")]
    assert ("dfs-r2-lr100-anneal", "fs-r2") in s.compare


def test_an_arm_runs_its_own_seeds_and_seeds_on_the_command_line_run_for_every_arm():
    s = from_dict({"name": "n", "dataset": "cifar10", "out": "o", "seeds": [0, 1],
                   "defaults": {"genotype": "DARTS_V2"},
                   "arms": [{"name": "five", "fs": False, "seeds": [0, 1, 2, 3, 4], "group": "A"},
                            {"name": "shared", "fs": "fs"}]})
    assert s.arms[0].seeds == (0, 1, 2, 3, 4) and s.arms[0].group == "A"
    assert s.arms[1].seeds is None and s.arms[1].group is None
    own, seeds = cli.arm_seeds(s, None)
    assert seeds == [0, 1, 2, 3, 4]
    settings = runner.Settings(out=Path("o"), dataset="cifar10")
    tasks = [(a.name, k) for a, k in runner.Runner(own, settings, seeds).tasks()]
    assert tasks == [("five", 0), ("shared", 0), ("five", 1), ("shared", 1), ("five", 2),
                     ("five", 3), ("five", 4)]  # seed-major, each arm its own seeds
    given, seeds = cli.arm_seeds(s, [7])
    assert seeds == [7] and all(a.seeds == (7,) for a in given.arms)
    with pytest.raises(UserError, match="unknown key 'seeds' in defaults"):
        from_dict({"name": "n", "dataset": "cifar10", "seeds": [0], "defaults": {"seeds": [1]},
                   "arms": [{"name": "a", "genotype": "DARTS_V2"}]})


def test_the_compression_study_file(monkeypatch):
    s = load_study(ROOT / "studies" / "compression.yaml")
    record.preflight(s)  # every arm's config keys resolve
    groups = {a.group for a in s.arms}
    assert groups == {"A", "B", "C", "D"}
    for a in s.arms:  # 5 seeds where a run is short (point A), at least 3 elsewhere
        seeds = a.seeds or tuple(s.seeds)
        assert len(seeds) >= (5 if a.group == "A" and a.name != "a-sl3-w78" else 3), a.name
    argv = {a.name: retrain_argv(a, "D") for a in s.arms if a.reuse is None}
    assert argv["a-pruned"][-4:] == ["--set", "prune.params=70000", "--set", "optimizer.cycles=2"]
    names = {a.name for a in s.arms}
    assert all(x.removeprefix("wq:") in names and y in names for x, y in s.compare)
    assert ("wq:b-fs3d-paper", "b-resnet18-w3") in s.compare
    # Point C's DFS arm is fs-fidelity's committed arm: on the same data, its options resolve
    # to the whole retrain config of DARTS_V2 with DFS at ratio 2 and today's defaults.
    c = s.arm("c-dfs-r2").reuse
    assert (c.study, c.arm) == ("studies/fs-fidelity/study.json", "dfs-r2-lr100-anneal")
    assert c.study.startswith("studies/")  # relative to the repository root, where studies run
    monkeypatch.chdir(ROOT)
    loaded = {a.name: a for a in reuse.load_arms(s.arms, s.dataset, "compression")}
    assert all(loaded[a.name].seeds == (0, 1, 2) for a in s.arms if a.reuse)  # 3 seeds each
    assert {a.name for a in s.arms if a.reuse} == {"c-dfs-r2", "d-ratios-0.7M", "d-plain-w8"}
    fidelity = load_study(ROOT / "studies" / "fs-fidelity.yaml")
    assert fidelity.dataset == s.dataset
    then = record.preflight(fidelity)["dfs-r2-lr100-anneal"]["retrain"]
    now = as_dict(rsetup.resolve("smoke", ["epochs=20", "fs.mode=dfs", "fs.ratio=2.0"],
                                 lambda cfg: False))
    assert then == now


def test_a_report_has_a_table_per_group_and_compares_a_wq_copy(tmp_path):
    from study import report

    def run(seed, top1, wq=None, macs=100):
        return {"seed": seed, "top1": top1, "top1_wq": wq, "fs": {"ratio": 1} if wq else None,
                "effective": 1000, "effective_wq": 250 if wq else None, "macs": macs,
                "final_gain": 0.1 * seed}

    runs = {"fs": [run(0, 60.0, 59.0), run(1, 62.0, 61.5)], "narrow": [run(0, 58.0), run(1, 59.0)],
            "wide": [run(0, 70.0), run(1, 71.0)]}
    meta = {"name": "n", "dataset": "d", "seeds": [0, 1], "compare": [("wq:fs", "narrow"),
                                                                     ("fs", "narrow")],
            "groups": {"fs": "A", "narrow": "A", "wide": "B"}}
    rep = report.build(meta, runs, [])
    wq, flt = rep["compare"]
    assert wq["difference"] == pytest.approx((59.0 + 61.5) / 2 - 58.5)
    assert flt["difference"] == pytest.approx(61.0 - 58.5)
    assert rep["arms"]["fs"]["macs"]["mean"] == 100 and rep["arms"]["wide"]["group"] == "B"
    assert rep["arms"]["fs"]["final_gain"]["mean"] == pytest.approx(0.05)
    md = report.markdown(rep)
    a, b = md.index("### Point A"), md.index("### Point B")
    assert a < md.index("| fs | 2 |") < md.index("| narrow | 2 |") < b < md.index("| wide | 2 |")
    assert "| wq:fs − narrow | 2 / 2 |" in md
    report.write(tmp_path, rep)  # the plot takes the groups' arms too


def test_final_gain_is_the_least_squares_slope_of_the_last_epochs(tmp_path):
    accs = [10, 20, 30, 50, 51, 52, 53, 54]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps({"test_acc": a}) + "\n" for a in accs))
    assert layout.final_gain(tmp_path) == pytest.approx(sst.linregress(range(5), accs[-5:]).slope)
    (tmp_path / "log.jsonl").write_text(json.dumps({"test_acc": 1}) + "\n")
    assert layout.final_gain(tmp_path) is None


# --- running -------------------------------------------------------------------------------
FAKE = '''
import json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1]) if "--out" in args else Path(args[args.index("--resume") + 1])
arm, seed = out.parent.name, int(out.name.split("-")[1])
t0 = time.time()
out.mkdir(parents=True, exist_ok=True)
(out / ".dfs-run").write_text("retrain\\n")
(out / "config.yaml").write_text("retrain: {epochs: 1}\\n")
print("fake run", arm, seed, flush=True)
if arm == "bad":
    print("error: boom", flush=True)
    sys.exit(1)
if arm == "term":  # stopped from outside (a kill, a scheduler's notice)
    import signal
    os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.6)
m = {"test_acc": 50.0 + seed, "test_acc_wq": 49.0 + seed, "counts": {"effective": 100 * (1 + seed)},
     "file_bytes": {"model.pt": 10, "model-wq.pt": 5}, "network": {"fs": {"ratio": 2.0}}}
(out / "metrics.json").write_text(json.dumps(m))
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"arm": arm, "seed": seed, "t0": t0, "t1": time.time(), "args": args,
                        "omp": os.environ["OMP_NUM_THREADS"]}) + "\\n")
'''


def test_parallel_jobs_and_a_failed_run(capsys, tmp_path, monkeypatch):
    """Stand-in runs (no training): two at a time with one thread each and no loader
    workers; a failing arm is reported, the others finish, the exit status is 1."""
    (tmp_path / "fake_retrain.py").write_text(FAKE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log.jsonl"))
    monkeypatch.setitem(runner.MODULES, "retrain", "fake_retrain")
    monkeypatch.setattr(cli, "available_cores", lambda: 2)
    data = make_folder(tmp_path / "data", per_class=2, test_per_class=1)
    study = _study(data, tmp_path / "out", seeds=[0, 1, 2])
    del study["threads"]
    study["arms"].append({"name": "bad", "fs": "fs"})
    assert main(["run", str(_write(tmp_path / "s.yaml", study)), "--jobs", "2"]) == 1
    out = capsys.readouterr().out
    assert "3 arm(s) x 3 seed(s) = 9 runs" in out and "2 at a time, 1 thread(s) each" in out
    assert out.count("FAILED (exit 1)") == 3 and "error: boom" in out
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and all(r["omp"] == "1" and "data.workers=0" in r["args"] for r in log)
    spans = sorted((r["t0"], r["t1"]) for r in log)
    overlaps = [sum(s[0] < t < s[1] for s in spans) for t, _ in spans]
    assert max(overlaps) == 1  # two at a time, never three
    rep = json.loads((tmp_path / "out" / "study.json").read_text())
    assert rep["arms"]["fs-r2"]["top1"]["mean"] == 51.0 and rep["arms"]["bad"]["n"] == 0
    assert [(m["arm"], m["seed"]) for m in rep["missing"]] == [("bad", 0), ("bad", 1), ("bad", 2)]
    assert "bad seed 2: unfinished" in (tmp_path / "out" / "study.md").read_text()
    assert "error: boom" in (tmp_path / "out" / "runs" / "bad" / "seed-0" / "stdout.log").read_text()


def test_a_run_stopped_by_sigterm_stops_the_study(capsys, tmp_path, monkeypatch):
    """A run killed by SIGTERM was told to stop: it is not counted failed, nothing more
    starts, and the study exits 130 saying how to continue."""
    (tmp_path / "fake_retrain.py").write_text(FAKE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log.jsonl"))
    monkeypatch.setitem(runner.MODULES, "retrain", "fake_retrain")
    data = make_folder(tmp_path / "data", per_class=2, test_per_class=1)
    study = _study(data, tmp_path / "out", seeds=[0, 1])
    study["arms"], study["compare"] = [study["arms"][0], {"name": "term", "fs": "fs"}], []
    assert main(["run", str(_write(tmp_path / "s.yaml", study))]) == 130
    captured = capsys.readouterr()
    assert f"term seed 0: INTERRUPTED (exit -{int(signal.SIGTERM)})" in captured.out
    assert "FAILED" not in captured.out
    assert captured.err.strip().startswith("study stopped: a run was stopped by a signal")
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["arm"], r["seed"]) for r in log] == [(study["arms"][0]["name"], 0)]


def _children_of(pid: int) -> list[int]:
    """Processes started by the study `pid` (they carry its pid in their environment)."""
    mine = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                env = (p / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"DFS_STUDY_PARENT={pid}".encode() in env:
                mine.append(int(p.name))
    return mine


def _metrics(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / arm / f"seed-{seed}" / "metrics.json"


@pytest.mark.slow
def test_killed_study_resumes_and_extends_without_rerunning(capsys, tmp_path):
    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    f = _write(tmp_path / "tiny.yaml", _study(data, out))
    first, second = _metrics(out, "fs-off", 0), _metrics(out, "fs-r2", 0)
    p = subprocess.Popen(_study_cmd("run", str(f)), cwd=ROOT, env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (second.parent / "stdout.log").exists():  # the second run is training
            assert p.poll() is None and time.time() < deadline, "the study stopped or hung"
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()
    deadline = time.time() + 20
    while _children_of(p.pid):
        assert time.time() < deadline, "a run outlived its killed study"
        time.sleep(0.05)
    assert first.exists() and not second.exists()  # the run in progress died with its study
    stamp, log = first.stat().st_mtime_ns, (first.parent / "stdout.log").read_text()
    assert main(["report", str(out)]) == 0           # a partial study reports what it has
    assert "fs-r2 seed 1: not started" in (out / "study.md").read_text()
    capsys.readouterr()

    r = subprocess.run(_study_cmd("run", str(f)), cwd=ROOT, env=_env(), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fs-off seed 0: finished earlier" in r.stdout
    assert "fs-r2 seed 0: resume" in r.stdout or "fs-r2 seed 0: restart" in r.stdout
    assert first.stat().st_mtime_ns == stamp and (first.parent / "stdout.log").read_text() == log
    rep = json.loads((out / "study.json").read_text())
    for arm in ("fs-off", "fs-r2"):
        a = rep["arms"][arm]
        assert a["n"] == 2 and a["seeds"] == [0, 1]
        for run in a["runs"]:
            m = json.loads(_metrics(out, arm, run["seed"]).read_text())
            assert run["top1"] == m["test_acc"] and run["top1_wq"] == m["test_acc_wq"]
            assert run["effective"] == m["counts"]["effective"]
            assert run["model_bytes"] == m["file_bytes"]["model.pt"]
            assert run["model_wq_bytes"] == m["file_bytes"].get("model-wq.pt")  # none for fs off
        assert a["top1"]["mean"] == pytest.approx(sum(r["top1"] for r in a["runs"]) / 2)
    assert rep["arms"]["fs-off"]["top1_wq"] is None and rep["arms"]["fs-r2"]["top1_wq"]["n"] == 2
    assert rep["missing"] == []
    c = rep["compare"][0]
    ref = sst.ttest_ind([x["top1"] for x in rep["arms"]["fs-r2"]["runs"]],
                        [x["top1"] for x in rep["arms"]["fs-off"]["runs"]], equal_var=False)
    assert c["p"] is None or c["p"] == pytest.approx(ref.pvalue)
    md = (out / "study.md").read_text()
    assert "| fs-r2 | 2 |" in md and "| fs-r2 − fs-off | 2 / 2 |" in md
    assert (out / "accuracy_vs_params.png").read_bytes()[:4] == b"\x89PNG"
    assert yaml.safe_load((out / "study.yaml").read_text())["arms"][1]["name"] == "fs-r2"

    # An unfinished run continues from its checkpoint; a new seed runs alone.
    _metrics(out, "fs-r2", 1).unlink()
    stamps = {(a, s): _metrics(out, a, s).stat().st_mtime_ns for a, s in
              (("fs-off", 0), ("fs-off", 1), ("fs-r2", 0))}
    r = subprocess.run(_study_cmd("run", str(f), "--seeds", "0,1,2"), cwd=ROOT, env=_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("finished earlier:") == 3 and r.stdout.count(": start (") == 2
    assert "fs-r2 seed 1: resume from its checkpoint" in r.stdout
    assert all(_metrics(out, a, s).stat().st_mtime_ns == t for (a, s), t in stamps.items())
    rep = json.loads((out / "study.json").read_text())
    assert rep["arms"]["fs-r2"]["seeds"] == [0, 1, 2] and rep["seeds"] == [0, 1, 2]

    # --arms runs one arm's new seed; the other arm keeps its runs and stays in the report.
    assert "'fs-r3' is not an arm of tiny; did you mean 'fs-r2'?" in _fail(
        capsys, ["run", str(f), "--arms", "fs-r3"])
    r = subprocess.run(_study_cmd("run", str(f), "--seeds", "0,1,2,3", "--arms", "fs-r2"),
                       cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 arm(s) x 4 seed(s)" in r.stdout and r.stdout.count(": start (") == 1
    rep = json.loads((out / "study.json").read_text())
    assert rep["arms"]["fs-r2"]["seeds"] == [0, 1, 2, 3]
    assert rep["arms"]["fs-off"]["seeds"] == [0, 1, 2]
    assert "fs-off seed 3: not started" in (out / "study.md").read_text()

    # The committed study.json alone redraws the same tables.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "study.json").write_text((out / "study.json").read_text())
    assert main(["report", str(alone)]) == 0
    assert (alone / "study.md").read_text() == (out / "study.md").read_text()
    # An arm whose options changed would mix settings across its seeds: refused.
    changed = _study(data, out)
    changed["arms"][1]["ratio"] = 4
    assert "made with other options" in _fail(capsys, ["run", str(_write(f, changed))])


@pytest.mark.slow
def test_arm_with_a_search_retrains_its_genotype(tmp_path):
    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    search = {"preset": "smoke", "algo": "pc-darts", "fs": "dfs", "ratio": 2,
              "set": {**TINY, "init_channels": 8, "partial_channels": 2, "runtime.plot": False,
                      "runtime.draw_every": 0}}
    study = {"name": "searched", "dataset": str(data), "out": str(out), "seeds": [3], "threads": 1,
             "arms": [{"name": "s", "preset": "smoke", "set": TINY, "search": search}]}
    f = _write(tmp_path / "s.yaml", study)
    r = subprocess.run(_study_cmd("run", str(f)), cwd=ROOT, env=_env(), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    sdir, rdir = out / "runs" / "s" / "seed-3-search", out / "runs" / "s" / "seed-3"
    searched = json.loads((sdir / "genotype.json").read_text())
    trained = yaml.safe_load((rdir / "config.yaml").read_text())
    assert trained["genotype"]["normal"] == searched["normal"]
    assert searched["source"] == {"algorithm": "pc-darts"}
    assert yaml.safe_load((sdir / "config.yaml").read_text())["search"]["seed"] == 3
    assert trained["retrain"]["seed"] == 3
    rep = json.loads((out / "study.json").read_text())
    assert rep["arms"]["s"]["n"] == 1 and rep["arms"]["s"]["top1"]["ci95"] is None
    logs = (sdir / "stdout.log").read_text(), (rdir / "stdout.log").read_text()
    r = subprocess.run(_study_cmd("run", str(f)), cwd=ROOT, env=_env(), capture_output=True,
                       text=True)
    assert r.returncode == 0 and "s seed 3: finished earlier" in r.stdout and "start" not in r.stdout
    assert ((sdir / "stdout.log").read_text(), (rdir / "stdout.log").read_text()) == logs


def test_entropy_at_hardening_is_read_from_the_log(tmp_path):
    from study.layout import entropy_at_hardening

    log = [{"epoch": 0, "hardened": False, "offset_entropy": 1.38},
           {"epoch": 1, "hardened": False, "offset_entropy": 1.2},
           {"epoch": 2, "hardened": True, "offset_entropy": None}]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log))
    assert entropy_at_hardening(tmp_path) == 1.2
    (tmp_path / "log.jsonl").write_text(json.dumps({"epoch": 0, "hardened": False}))
    assert entropy_at_hardening(tmp_path) is None  # a log from before it was recorded


def test_plot_marks_an_interval_bound_beyond_the_axis():
    """A wide interval (few seeds) is not cut silently: the axis follows the data within
    0-100%, and a bound past it is marked at the edge with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from study.plot import _clip_to_percent, _short_count

    pts = [{"x": 1e5, "y": 60.0, "err": (80.0, 10.0)}, {"x": 2e5, "y": 70.0, "err": (1.0, 1.0)}]
    fig, ax = plt.subplots()
    try:
        _clip_to_percent(ax, pts)
        lo, hi = ax.get_ylim()
        assert 0.0 <= lo <= 45.0 and 71.0 < hi <= 100.0
        marks = [t.get_text() for t in ax.texts]
        assert marks == ["-20.0"]  # 60 - 80, below the axis: marked, with its value
    finally:
        plt.close(fig)
    assert [_short_count(v) for v in (60_000, 250_000, 1_200_000, 500)] == ["60k", "250k", "1.2M", "500"]


def test_an_edited_preset_is_refused_for_an_arm_with_runs(tmp_path):
    """The arm's command line names the preset, not its values: the resolved configs are
    compared too, so editing the preset between runs cannot mix two settings in one arm."""
    from common.config import save_config

    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    preset = tmp_path / "mine.yaml"
    preset.write_text("base: smoke\nretrain:\n  optimizer:\n    lr: 0.05\n")
    study = load_study(_write(tmp_path / "s.yaml", {**_study(data, out), "defaults": {
        "genotype": "DARTS_V2", "preset": str(preset), "set": TINY}}))
    made = record.make_record(study, str(data), [0], out, record.preflight(study))
    out.mkdir()
    save_config(made, out / layout.RECORD)
    (out / layout.RUNS / "fs-r2" / "seed-0").mkdir(parents=True)
    assert record.make_record(study, str(data), [0], out, record.preflight(study))  # unchanged
    preset.write_text("base: smoke\nretrain:\n  optimizer:\n    lr: 0.1\n")
    with pytest.raises(UserError, match=r"^arm 'fs-r2' has runs in .* made with other settings "
                                        r"\(retrain optimizer.lr: 0.05 -> 0.1: a preset changed\)"):
        record.make_record(study, str(data), [0], out, record.preflight(study))
    assert record.config_changes(None, {"retrain": {"a": 1}}) == []  # a record without configs
    assert record.config_changes({"retrain": {"a": 1}}, {"retrain": {"a": 1, "b": 2}}) == []
