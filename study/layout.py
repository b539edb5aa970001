"""Where a study's runs live, what state each is in, and the figures of a finished run.

    OUT/study.yaml                     the study file and the resolved arms (commands)
    OUT/runs/<arm>/seed-<s>/           an ordinary retrain run directory (+ stdout.log)
    OUT/runs/<arm>/seed-<s>-search/    an ordinary search run directory (arms with a search)
    OUT/runs/<arm>/seed-<s>-genotype.json   a random or fitted arm's genotype (study.sources)
    OUT/failed/<arm>-seed-<s>.log      output of a run that failed before making its folder
    OUT/study.json, study.md, accuracy_vs_params.png   the report

Reading needs no torch: states come from file names, config.yaml and log.jsonl.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from common.errors import UserError
from common.runlog import JsonlLog, is_run_dir

RUNS = "runs"
STDOUT = "stdout.log"
RECORD = "study.yaml"

#: States of a run directory.
FINISHED, RESUME, RESTART, NEW = "finished", "resume", "restart", "new"


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / RUNS / arm / f"seed-{seed}"


def search_dir(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / RUNS / arm / f"seed-{seed}-search"


def failed_log(out: Path, arm: str, seed: int, search: bool) -> Path:
    return Path(out) / "failed" / f"{arm}-seed-{seed}{'-search' if search else ''}.log"


def _exists(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def retrain_state(path: Path) -> str:
    """finished (metrics.json), resume (latest.pt), restart (a run dir without a checkpoint:
    it stopped in its first epoch) or new (no folder, or an empty one)."""
    if (path / "metrics.json").is_file():
        return FINISHED
    if (path / "latest.pt").is_file():
        return RESUME
    return RESTART if _exists(path) else NEW


def read_log(path: Path) -> list[dict[str, Any]]:
    # A last line cut short by a kill or a full disk is skipped, as the run's resume does.
    try:
        return JsonlLog(path / "log.jsonl").read(quiet=True)
    except (OSError, ValueError, UserError):
        return []


def _epochs(path: Path, section: str) -> int | None:
    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text())
        return int(cfg[section]["epochs"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def search_state(path: Path) -> str:
    """finished when log.jsonl holds the last epoch (genotype.json is written with it),
    resume with a checkpoint.pt, else restart or new."""
    epochs = _epochs(path, "search")
    log = read_log(path)
    if epochs and log and log[-1].get("epoch") == epochs - 1 and (path / "genotype.json").is_file():
        return FINISHED
    if (path / "checkpoint.pt").is_file():
        return RESUME
    return RESTART if _exists(path) else NEW


def progress(path: Path, section: str) -> str:
    """'3/20 epochs' (logged so far) for an unfinished run, for reports."""
    if not _exists(path):
        return "not started"
    epochs = _epochs(path, section)
    done = len(read_log(path))
    if not is_run_dir(path):
        return "not a run directory"
    return f"unfinished ({done}/{epochs if epochs else '?'} epochs logged)"


def figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures a report uses, from one run's metrics.json."""
    counts = metrics.get("counts") or {}
    files = metrics.get("file_bytes") or {}
    net = metrics.get("network") or {}
    fs = net.get("fs") or net.get("conversion")  # a DARTS network's FS spec, or a --model's
    return {
        "top1": metrics["test_acc"], "top1_wq": metrics.get("test_acc_wq"),
        "fs": fs, "params": counts.get("params"), "effective": counts.get("effective"),
        "effective_wq": counts.get("effective_wq"), "uncompressed": counts.get("uncompressed"),
        "model_bytes": files.get("model.pt"), "model_wq_bytes": files.get("model-wq.pt"),
        "epochs": metrics.get("epochs"), "train_minutes": metrics.get("train_minutes"),
        "test_images": metrics.get("test_images"), "macs": counts.get("macs"),
    }


def read_figures(path: Path) -> dict[str, Any] | None:
    """figures() of a finished run, or None (no or unreadable metrics.json); with the DFS
    offset entropy at hardening when its log has it."""
    try:
        fig = figures(json.loads((path / "metrics.json").read_text()))
    except (OSError, ValueError, KeyError):
        return None
    fig["offset_entropy_at_hardening"] = entropy_at_hardening(path)
    fig["final_gain"] = final_gain(path)
    return fig


#: A study's compare item "wq:ARM" names the 8-bit WQ copy of ARM's runs (study.report).
WQ_PREFIX = "wq:"

#: Epochs over which `final_gain` fits its slope.
FINAL_EPOCHS = 5


def final_gain(path: Path) -> float | None:
    """Test top-1 gained per epoch over the run's last FINAL_EPOCHS epochs (least-squares
    slope, points per epoch): whether the schedule let accuracy stop rising; None without a
    long enough log."""
    accs = []
    try:
        for line in (path / "log.jsonl").read_text().splitlines():
            accs.append(float(json.loads(line)["test_acc"]))
    except (OSError, ValueError, KeyError):
        return None
    if len(accs) < FINAL_EPOCHS:
        return None
    import numpy as np

    return float(np.polyfit(np.arange(FINAL_EPOCHS), accs[-FINAL_EPOCHS:], 1)[0])


def entropy_at_hardening(path: Path) -> float | None:
    """The offset entropy of the last epoch before a DFS run hardened (retrain's log.jsonl
    `offset_entropy`), or None (no DFS layers, or a log from before it was recorded)."""
    last = None
    try:
        for line in (path / "log.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("hardened"):
                break
            if isinstance(rec.get("offset_entropy"), (int, float)):
                last = float(rec["offset_entropy"])
    except (OSError, ValueError):
        return None
    return last


def seeds_on_disk(out: Path, arm: str) -> list[int]:
    """Seeds that have a retrain folder for `arm` (finished or not)."""
    base = Path(out) / RUNS / arm
    seeds = []
    for p in base.glob("seed-*") if base.is_dir() else []:
        tail = p.name[len("seed-"):]
        if tail.isdigit():
            seeds.append(int(tail))
    return sorted(seeds)


def short(fig: dict[str, Any]) -> str:
    """'top-1 61.23% (WQ 61.10%), 139,226 effective params' for console lines."""
    text = f"top-1 {fig['top1']:.2f}%"
    if fig.get("fs") and fig.get("top1_wq") is not None:
        text += f" (WQ {fig['top1_wq']:.2f}%)"
    if fig.get("effective") is not None:
        text += f", {fig['effective']:,} effective params"
    return text


def alpha_entropy(rows: list[list[float]]) -> float:
    """Mean over edges of the entropy (nats) of each edge's softmaxed alpha row (ln 8 = 2.079
    for 8 ops: the search has not decided; 0: one op per edge)."""
    total = 0.0
    for row in rows:
        total -= sum(p * math.log(p) for p in row if p > 0)
    return total / len(rows)


def search_figures(path: Path) -> dict[str, Any]:
    """Of a finished search (its last log.jsonl record): the final alpha entropy over both
    cells' edges, and E[P] (`expected_params`, logged with a budget or searched ratios)."""
    log = read_log(path)
    last = log[-1] if log else {}
    rows = (last.get("alphas_normal") or []) + (last.get("alphas_reduce") or [])
    ep = last.get("expected_params")
    return {"search_alpha_entropy": alpha_entropy(rows) if rows else None,
            "search_expected_params": float(ep) if isinstance(ep, int | float) else None}


def fitted_params(path: Path) -> dict[str, int | None]:
    """Of a drawn or fitted genotype file (its `source`): the exact count of the budget's
    network and the budget (None: no such file, or not fitted)."""
    try:
        source = json.loads(path.read_text()).get("source") or {}
    except (OSError, ValueError, AttributeError):
        source = {}
    return {key: int(source[name]) if isinstance(source.get(name), int) else None
            for key, name in (("fitted_params", "fitted_params"), ("budget", "budget"))}
