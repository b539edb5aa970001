"""The study's report: study.json (every figure), study.md (tables a paper could take) and
accuracy_vs_params.png, from the runs' metrics.json files (or again from a study.json alone,
so that a committed study.json redraws its tables and plot without the runs).

Per arm: n finished seeds, the per-seed figures, mean / std (ddof 1) / 95% Student-t interval
of top-1 (float and, for FS arms, the 8-bit WQ copy and WQ minus float, paired by seed),
parameters (total, effective, effective with WQ) and the exported file sizes. Per compared
pair: the difference of mean top-1, its 95% interval and the p-value of Welch's t-test.
Runs that are expected (the study's seeds, and any seed folder on disk) but not finished are
listed under `missing` with their state, never silently dropped.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from common.errors import UserError
from common.files import atomic_write_text
from study import layout
from study.layout import WQ_PREFIX
from study.reuse import recorded_runs
from study.stats import describe, welch

JSON, MD, PNG = "study.json", "study.md", "accuracy_vs_params.png"


def read_record(out: Path) -> dict[str, Any]:
    """OUT/study.yaml as `study run` wrote it."""
    path = Path(out) / layout.RECORD
    if not path.is_file():
        raise UserError(f"{out} has no {layout.RECORD}; give the output folder of a "
                        "`python -m study run` (or a folder holding a study.json)")
    return yaml.safe_load(path.read_text())


def collect(out: Path, record: dict[str, Any]) -> tuple[dict[str, list[dict]], list[dict]]:
    """Per arm, the figures of its finished runs (by seed); and the missing runs."""
    out = Path(out)
    runs: dict[str, list[dict]] = {}
    missing: list[dict] = []
    for arm in record["arms"]:
        name = arm["name"]
        runs[name] = []
        reused = recorded_runs(arm)
        if reused is not None:  # figures copied from a committed study when the run started
            runs[name] = reused
            continue
        expected = arm.get("seeds") or record["seeds"]  # the arm's own seeds, else the study's
        for seed in sorted(set(expected) | set(layout.seeds_on_disk(out, name))):
            rdir = layout.run_dir(out, name, seed)
            fig = layout.read_figures(rdir)
            if fig is not None:
                if arm.get("search"):
                    fig.update(layout.search_figures(layout.search_dir(out, name, seed)))
                fig.update(layout.fitted_params(
                    layout.run_dir(out, name, seed).with_name(f"seed-{seed}-genotype.json")))
                runs[name].append({"seed": seed, "run_dir": str(rdir.relative_to(out)), **fig})
                continue
            sdir = layout.search_dir(out, name, seed)
            if arm.get("search") and layout.search_state(sdir) != layout.FINISHED:
                state = "search " + layout.progress(sdir, "search")
            else:
                state = layout.progress(rdir, "retrain")
            missing.append({"arm": name, "seed": seed, "state": state})
    return runs, missing


def _spread(values: list[Any]) -> dict[str, Any] | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"mean": sum(v) / len(v), "min": min(v), "max": max(v)}


def build(meta: dict[str, Any], runs: dict[str, list[dict]], missing: list[dict]) -> dict[str, Any]:
    """The content of study.json."""
    groups = meta.get("groups") or {}
    arms = {}
    for name, rs in runs.items():
        fs_arm = any(r.get("fs") for r in rs)
        top1 = [r["top1"] for r in rs]
        wq = [r["top1_wq"] for r in rs if r.get("top1_wq") is not None] if fs_arm else []
        arms[name] = {
            "n": len(rs), "seeds": [r["seed"] for r in rs], "fs": rs[0].get("fs") if rs else None,
            "top1": describe(top1),
            "top1_wq": describe(wq) if fs_arm else None,
            "wq_minus_float": describe([r["top1_wq"] - r["top1"] for r in rs
                                        if r.get("top1_wq") is not None]) if fs_arm else None,
            "params": _spread([r.get("params") for r in rs]),
            "effective_params": _spread([r.get("effective") for r in rs]),
            "effective_params_wq": _spread([r.get("effective_wq") for r in rs]) if fs_arm else None,
            "model_bytes": _spread([r.get("model_bytes") for r in rs]),
            "model_wq_bytes": _spread([r.get("model_wq_bytes") for r in rs]) if fs_arm else None,
            "train_minutes": _spread([r.get("train_minutes") for r in rs]),
            "macs": _spread([r.get("macs") for r in rs]),
            "final_gain": _spread([r.get("final_gain") for r in rs]),
            "group": groups.get(name),
            "reused": (meta.get("reused") or {}).get(name),
            "offset_entropy_at_hardening": _spread(
                [r.get("offset_entropy_at_hardening") for r in rs]),
            "search_alpha_entropy": _spread([r.get("search_alpha_entropy") for r in rs]),
            "search_expected_params": _spread([r.get("search_expected_params") for r in rs]),
            "fitted_params": _spread([r.get("fitted_params") for r in rs]),
            "budget": _spread([r.get("budget") for r in rs]),
            "over_budget": sum(r.get("fitted_params") is not None and r.get("budget") is not None
                               and r["fitted_params"] > r["budget"] for r in rs),
            "runs": rs,
        }
    compare = []
    for a, b in meta.get("compare", []):
        compare.append({"a": a, "b": b, "figure": "top1", **welch(_top1(runs, a), _top1(runs, b))})
    return {"name": meta["name"], "dataset": meta.get("dataset"), "seeds": meta.get("seeds"),
            "generated": datetime.now().isoformat(timespec="seconds"),
            "confidence": 0.95, "arms": arms, "compare": compare, "missing": missing}


def _top1(runs: dict[str, list[dict]], name: str) -> list[float]:
    """Per-seed top-1 of an arm, or of its 8-bit WQ copy for "wq:ARM"."""
    arm = name.removeprefix(WQ_PREFIX)
    key = "top1_wq" if arm != name else "top1"
    return [r[key] for r in runs.get(arm, []) if r.get(key) is not None]


def _num(x: float | None, digits: int = 2, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _ci(ci: list[float] | None, signed: bool = False) -> str:
    return "[n/a]" if ci is None else f"[{_num(ci[0], signed=signed)}, {_num(ci[1], signed=signed)}]"


def _stat(d: dict[str, Any] | None, signed: bool = False) -> str:
    if d is None or d["mean"] is None:
        return "–"
    return f"{_num(d['mean'], signed=signed)} ± {_num(d['std'])} {_ci(d['ci95'], signed)}"


def _count(s: dict[str, Any] | None) -> str:
    if s is None:
        return "–"
    if s["min"] == s["max"]:
        return f"{int(s['min']):,}"
    return f"{s['mean']:,.0f} ({int(s['min']):,}–{int(s['max']):,})"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def markdown(rep: dict[str, Any]) -> str:
    """study.md: the arm table, the comparison table and the missing runs."""
    lines = [f"# Study `{rep['name']}`", "",
             f"Dataset `{rep['dataset']}`; seeds {', '.join(map(str, rep['seeds'] or []))}. "
             "Top-1 test accuracy in %, mean ± standard deviation over seeds (ddof 1) "
             "[95% confidence interval of the mean, Student t]; WQ is the 8-bit FS copy "
             "(model-wq.pt), WQ − float its paired difference in points. Sizes are the "
             "exported files in bytes; effective parameters count an 8-bit FS element as 1/4 "
             "in the WQ column.", "",
             "MACs are one image's multiply-accumulates; the last column is the test top-1 gained "
             f"per epoch over each run's last {layout.FINAL_EPOCHS} epochs (least-squares slope, "
             "mean over seeds): near 0, the schedule let accuracy stop rising."]
    groups: dict[Any, list[str]] = {}
    for name, a in rep["arms"].items():
        groups.setdefault(a.get("group"), []).append(name)
    for group, names in groups.items():
        if len(groups) > 1 or group is not None:
            lines += ["", f"### {'Point ' + str(group) if group is not None else 'Other arms'}"]
        lines += ["", _ARM_HEAD, "|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [_arm_row(name, rep["arms"][name]) for name in names]
    entropy = {n: a.get("offset_entropy_at_hardening") for n, a in rep["arms"].items()}
    entropy = {n: e for n, e in entropy.items() if e is not None}
    if entropy:
        lines += ["", "DFS offset entropy at hardening, nats, mean (min–max) over seeds (ln M, "
                  "1.386 for M = 4, means the candidate mix is still uniform: offsets not "
                  "learned): " + "; ".join(
                      f"{n} {e['mean']:.4f} ({e['min']:.4f}–{e['max']:.4f})"
                      for n, e in entropy.items()) + "."]
    reused = {n: a["reused"] for n, a in rep["arms"].items() if a.get("reused")}
    if reused:
        lines += ["", "Reused, not run in this study (their per-seed figures copied from a "
                  "committed report; a column it did not record is –): " + "; ".join(
                      f"{n} is arm {r['arm']} of `{r['study']}`" for n, r in reused.items()) + "."]
    lines += _genotype_lines(rep)
    if rep["compare"]:
        lines += ["", "Differences of mean top-1 (points), with the 95% confidence interval and "
                  "p-value of Welch's t-test (unequal variances):", "",
                  "| comparison | n | difference [95% CI] | Welch p |", "|---|---|---|---:|"]
        for c in rep["compare"]:
            lines.append(f"| {c['a']} − {c['b']} | {c['n_a']} / {c['n_b']} | "
                         f"{_num(c['difference'], signed=True)} {_ci(c['ci95'], signed=True)} | "
                         f"{_p(c['p'])} |")
    if rep["missing"]:
        lines += ["", "Missing or unfinished runs (not in the figures above):", ""]
        lines += [f"- {m['arm']} seed {m['seed']}: {m['state']}" for m in rep["missing"]]
    lines += ["", f"![accuracy against effective parameters]({PNG})", ""]
    return "\n".join(lines)


_ARM_HEAD = ("| arm | n | top-1 % | WQ top-1 % | WQ − float | effective params | effective "
             "params (WQ) | MACs | model.pt bytes | model-wq.pt bytes | final gain/epoch |")


def _arm_row(name: str, a: dict[str, Any]) -> str:
    gain = a.get("final_gain")
    name += " (reused)" if a.get("reused") else ""
    return (f"| {name} | {a['n']} | {_stat(a['top1'])} | {_stat(a['top1_wq'])} | "
            f"{_stat(a['wq_minus_float'], signed=True)} | {_count(a['effective_params'])} | "
            f"{_count(a['effective_params_wq'])} | {_count(a.get('macs'))} | "
            f"{_count(a['model_bytes'])} | {_count(a['model_wq_bytes'])} | "
            f"{'–' if gain is None else _num(gain['mean'], signed=True)} |")


def _genotype_lines(rep: dict[str, Any]) -> list[str]:
    """The searched arms' final alpha entropy and E[P], the fitted genotypes' exact counts."""
    rows = []
    for name, a in rep["arms"].items():
        ent, ep, fit = (a.get(k) for k in ("search_alpha_entropy", "search_expected_params",
                                           "fitted_params"))
        if ent is None and ep is None and fit is None:
            continue
        e = "–" if ent is None else f"{ent['mean']:.3f} ({ent['min']:.3f}–{ent['max']:.3f})"
        over = a.get("over_budget") or 0
        budget = "–" if a.get("budget") is None else _count(a["budget"])
        budget += f" ({over} of {a['n']} seeds OVER it)" if over else ""
        rows.append(f"| {name} | {e} | {_count(ep)} | {_count(fit)} | {budget} |")
    if not rows:
        return []
    return ["", "Genotypes: a search's final alpha entropy (nats, mean over edges of the entropy "
            "of softmax(alpha); ln 8 = 2.079 is undecided) and E[P] (expected effective "
            "parameters of the budget's network), and a drawn or fitted genotype's exact count "
            "at the budget's network against its budget (a genotype over it even with every op "
            "at the largest ratio is trained as it is); mean (min–max) over seeds:", "",
            "| arm | alpha entropy | E[P] | fitted params | budget |", "|---|---|---:|---:|---:|",
            *rows]


def write(out: Path, rep: dict[str, Any]) -> list[Path]:
    """Write study.json, study.md and the plot into `out`; returns their paths."""
    from study.plot import plot_study

    out = Path(out)
    atomic_write_text(out / JSON, json.dumps(rep, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / MD, markdown(rep))
    plot_study(rep, out / PNG)
    return [out / JSON, out / MD, out / PNG]


def report_folder(out: Path) -> tuple[dict[str, Any], list[Path]]:
    """Rebuild the report of a study folder: from its runs when it has them, else from the
    per-run figures of its study.json."""
    out = Path(out)
    if (out / layout.RECORD).is_file():
        record = read_record(out)
        runs, missing = collect(out, record)
        meta = {k: record.get(k) for k in ("name", "dataset", "seeds", "compare")}
        meta["groups"] = {a["name"]: a.get("group") for a in record["arms"]}
        meta["reused"] = {a["name"]: {k: a["reuse"][k] for k in ("study", "arm")}
                          for a in record["arms"] if a.get("reuse")}
        meta["dataset"] = (record.get("study") or {}).get("dataset", meta["dataset"])  # as written
    elif (out / JSON).is_file():
        old = json.loads((out / JSON).read_text())
        runs = {name: a["runs"] for name, a in old["arms"].items()}
        missing = old.get("missing", [])
        meta = {"name": old["name"], "dataset": old.get("dataset"), "seeds": old.get("seeds"),
                "groups": {n: a.get("group") for n, a in old["arms"].items()},
                "reused": {n: a["reused"] for n, a in old["arms"].items() if a.get("reused")},
                "compare": [(c["a"], c["b"]) for c in old.get("compare", [])]}
    else:
        raise UserError(f"{out} holds neither {layout.RECORD} (a study's output folder) nor "
                        f"{JSON}; give the --out folder of `python -m study run`")
    rep = build(meta, runs, missing)
    return rep, write(out, rep)
