"""An arm whose runs were made by another, committed study: its per-seed figures are read from
that study's study.json instead of being run again.

    - name: c-dfs-r2
      group: C
      reuse: {study: studies/fs-fidelity/study.json, arm: dfs-r2-lr100-anneal}

The study that reuses an arm must train on the same schedule and data as the one that made
it (the study file should say so: the tool cannot check options it was not given). The
figures are copied into OUT/study.yaml when `study run` starts, so the report of OUT needs
neither the other file nor its runs; a reused arm has the seeds it was run with, is never
run, and its rows in study.md name where they come from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserError

#: The keys of a `reuse:` block.
KEYS = ("study", "arm")


@dataclass(frozen=True)
class Reused:
    """A committed study's arm: its file, its name there, and its per-seed figures."""

    study: str
    arm: str
    runs: tuple[dict[str, Any], ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r["seed"] for r in self.runs)

    def record(self) -> dict[str, Any]:
        """What OUT/study.yaml keeps of it (the figures included)."""
        return {"study": self.study, "arm": self.arm, "runs": [dict(r) for r in self.runs]}


def parse(value: Any, at: str) -> Reused:
    """A `reuse:` block -> the arm's figures, read from the committed study.json now."""
    if not isinstance(value, dict) or set(value) != set(KEYS):
        raise UserError(f"{at}: reuse must be a mapping with `study` (a committed study.json) "
                        "and `arm` (one of its arms), e.g. {study: studies/x/study.json, arm: a}")
    path, name = Path(str(value["study"])), str(value["arm"])
    if not path.is_file():
        raise UserError(f"{at}: reuse study {path} does not exist; give the study.json of a "
                        "committed study report (relative to the working directory)")
    try:
        rep = json.loads(path.read_text())
        arms = rep["arms"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{at}: {path} is not a study report (study.json written by "
                        "`python -m study report`)") from None
    if name not in arms:
        raise UserError(f"{at}: {path} has no arm {name!r}; its arms: {', '.join(arms)}")
    runs = arms[name].get("runs") or []
    if not runs:
        raise UserError(f"{at}: arm {name!r} of {path} has no finished runs to reuse")
    where = path.as_posix()
    return Reused(where, name, tuple({**r, "run_dir": f"{where}: {r['run_dir']}"} for r in runs))


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
