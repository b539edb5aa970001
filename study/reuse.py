"""An arm whose runs were made by another, committed study: its per-seed figures are read from
that study's study.json instead of being run again.

    - name: c-dfs-r2
      group: C
      reuse: {study: studies/fs-fidelity/study.json, arm: dfs-r2-lr100-anneal}

The study that reuses an arm must train on the same schedule and data as the one that made
it (the study file should say so: the tool cannot check options it was not given). The
figures are read, and copied into OUT/study.yaml, when `study run` starts (a study that
trained on other data is refused), so the report of OUT needs neither the other file nor its
runs; a reused arm has the seeds it was run with, is never run, and study.md marks its row
and names where it comes from.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserError

#: The keys of a `reuse:` block.
KEYS = ("study", "arm")
#: What each reused run must hold.
RUN_KEYS = ("seed", "run_dir", "top1")


@dataclass(frozen=True)
class Reused:
    """A committed study's arm: its file, its name there, and (once `load`ed) its per-seed
    figures."""

    study: str
    arm: str
    runs: tuple[dict[str, Any], ...] = ()

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r["seed"] for r in self.runs)

    def record(self) -> dict[str, Any]:
        """What OUT/study.yaml keeps of it (the figures included)."""
        return {"study": self.study, "arm": self.arm, "runs": [dict(r) for r in self.runs]}


def _runs(rep: Any, name: str, path: Path, at: str) -> list[dict[str, Any]]:
    """The arm's runs in a parsed study.json; one line if the file is not a study report."""
    arms = rep.get("arms") if isinstance(rep, dict) else None
    if not isinstance(arms, dict) or not all(isinstance(a, dict) for a in arms.values()):
        raise UserError(f"{at}: {path} is not a study report (study.json written by "
                        "`python -m study report`)")
    if name not in arms:
        raise UserError(f"{at}: {path} has no arm {name!r}; its arms: {', '.join(arms)}")
    runs = arms[name].get("runs")
    if not runs:
        raise UserError(f"{at}: arm {name!r} of {path} has no finished runs to reuse")
    ok = isinstance(runs, list) and all(isinstance(r, dict) and all(k in r for k in RUN_KEYS)
                                        for r in runs)
    seeds = [r["seed"] for r in runs] if ok else []
    if not ok or len(set(seeds)) != len(seeds) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise UserError(f"{at}: arm {name!r} of {path} has runs without "
                        f"{', '.join(RUN_KEYS)}, or repeated or non-integer seeds; it is not a "
                        "study report's arm")
    return runs


def _same_dataset(a: str, b: str) -> bool:
    return a == b or Path(a).resolve() == Path(b).resolve()


def load(reused: Reused, dataset: str, at: str) -> Reused:
    """The arm with its figures, read from the committed study.json now; refused if that study
    trained on another dataset."""
    path = Path(reused.study)
    if not path.is_file():
        raise UserError(f"{at}: reuse study {path} does not exist; give the study.json of a "
                        "committed study report (relative to the working directory)")
    try:
        rep = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{at}: {path} is not a study report (study.json written by "
                        "`python -m study report`)") from None
    runs = _runs(rep, reused.arm, path, at)
    theirs = rep.get("dataset")
    if theirs is not None and not _same_dataset(str(theirs), dataset):
        raise UserError(f"{at}: {path} trained on {theirs}, this study on {dataset}; reuse "
                        "only runs on the same data")
    where = path.as_posix()
    return Reused(where, reused.arm, tuple({**r, "run_dir": f"{where}: {r['run_dir']}"}
                                           for r in runs))


def load_arms(arms: list[Any], dataset: str, where: str) -> list[Any]:
    """The study's arms with each reused arm's figures loaded and its seeds set to theirs."""
    out = []
    for a in arms:
        if a.reuse is not None:
            loaded = load(a.reuse, dataset, f"{where}: arm {a.name!r}")
            a = dataclasses.replace(a, reuse=loaded, seeds=loaded.seeds)
        out.append(a)
    return out


def check_keys(raw: dict[str, Any], at: str) -> None:
    """A reused arm holds nothing to run: only its name, group and `reuse` block."""
    extra = [k for k in raw if k not in ("name", "group", "reuse")]
    if extra:
        raise UserError(f"{at}: a reused arm is not run, so {', '.join(extra)} has no effect; "
                        "keep only name, group and reuse")


def recorded_runs(arm: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A recorded arm's reused figures (None for an arm this study runs)."""
    block = arm.get("reuse")
    return None if not block else list(block["runs"])
