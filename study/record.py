"""What a study records of its arms: OUT/study.yaml.

`preflight` resolves every arm's configs as the commands will (so a mistake is one line
before anything runs); `make_record` writes them with each arm's commands, and refuses an
arm whose commands or resolved settings changed since its runs in OUT were made: its seeds
would mix two settings.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from common.config import resolve_config
from common.errors import UserError
from common.schema import as_dict, flatten
from study import layout
from study.commands import retrain_argv, search_argv
from study.spec import Study

SEARCH_GENOTYPE = "<search run>/genotype.json"
DRAWN_GENOTYPE = "<run>-genotype.json"


def preflight(study: Study) -> dict[str, dict[str, Any]]:
    """Resolve every arm's configs (unknown keys, bad values) and genotypes, as the commands
    will, so that a mistake is one line before anything runs; returns each arm's resolved
    configs ({"retrain": ..., "search": ... or None}, as plain dicts)."""
    from retrain import setup as rsetup
    from search.settings import check_config

    configs: dict[str, dict[str, Any]] = {}
    for arm in study.arms:
        r, s = arm.retrain, arm.search
        if arm.reuse is not None:  # not run: nothing to resolve
            continue
        try:
            items = list(r.sets) + ([f"fs.mode={r.fs}"] if r.fs else [])
            items += [f"fs.ratio={r.ratio}"] if r.ratio is not None else []
            items += [f"model.name={r.model}"] if r.model else []
            resolved = {"retrain": as_dict(rsetup.resolve(r.preset or rsetup.default_preset(r.model), items,
                                                          lambda cfg: False)), "search": None}
            if r.model:
                rsetup.check_model(r.model)
            elif s is None:
                if not (arm.source and arm.source.kind == "random"):  # drawn per run
                    rsetup.read_genotype(retrain_argv(arm, "")[1])
            else:
                items = [re.sub(r"^search\.", "", x) for x in s.sets]
                items += [f"fs.mode={s.fs}"] if s.fs else []
                items += [f"fs.ratio={s.ratio}"] if s.ratio is not None else []
                items += [f"arch.order={s.order}"] if s.order else []
                items += [f"algorithm={s.algo}"] if s.algo else []
                resolved["search"] = as_dict(check_config(resolve_config("search",
                                                                         s.preset or "paper",
                                                                         items)))
        except UserError as e:
            raise UserError(f"arm {arm.name!r}: {e}") from None
        configs[arm.name] = resolved
    return configs


def config_changes(then: dict[str, Any] | None, now: dict[str, Any] | None) -> list[str]:
    """`section key: old -> new` for each key both resolved configs hold with other values
    (a preset edited since the runs were made; keys one side lacks, from another version of
    the code, are not compared)."""
    out = []
    for section in ("search", "retrain"):
        a = dict(flatten((then or {}).get(section) or {}))
        b = dict(flatten((now or {}).get(section) or {}))
        out += [f"{section} {k}: {a[k]!r} -> {b[k]!r}" for k in a if k in b and a[k] != b[k]]
    return out


def make_record(study: Study, dataset: str, seeds: list[int], out: Path,
                configs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """OUT/study.yaml: the study file and each arm's resolved commands and configs
    (`configs`, from preflight). An arm whose commands or settings changed since its runs in
    OUT were made (an edited preset included) is refused: its seeds would mix two settings."""
    configs = configs or {}
    arms = [_recorded_arm(a, dataset, configs) for a in study.arms]
    old: dict[str, Any] = {}
    if (out / layout.RECORD).is_file():
        from study.report import read_record

        old = read_record(out) or {}
    before = {a["name"]: a for a in old.get("arms", [])}
    for a in arms:
        prev = before.get(a["name"])
        then = ((prev or {}).get("search"), (prev or {}).get("retrain"),
                _recorded_source((prev or {}).get("source")))
        now = (a["search"], a["retrain"], a["source"])
        if prev and then != now and layout.seeds_on_disk(out, a["name"]):
            raise UserError(f"arm {a['name']!r} has runs in {out} made with other options "
                            f"({_what_changed(then, now)}); give the changed arm a new name "
                            "or use another --out")
        changed = config_changes((prev or {}).get("config"), a["config"])
        if changed and layout.seeds_on_disk(out, a["name"]):
            raise UserError(f"arm {a['name']!r} has runs in {out} made with other settings "
                            f"({'; '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}: a "
                            "preset changed); give the changed arm a new name or use another "
                            "--out")
    all_seeds = sorted(set(old.get("seeds") or []) | set(seeds))
    return {"name": study.name, "source": str(study.source) if study.source else None,
            "dataset": dataset, "seeds": all_seeds, "compare": [list(p) for p in study.compare],
            "arms": arms, "study": study.raw}


def _recorded_arm(a: Any, dataset: str, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One arm of OUT/study.yaml: its commands and resolved configs, or a reused arm's
    figures."""
    if a.reuse is not None:
        return {"name": a.name, "search": None, "retrain": None, "source": None, "config": None,
                "seeds": list(a.seeds), "group": a.group, "reuse": a.reuse.record()}
    return {"name": a.name, "search": search_argv(a, dataset) if a.search else None,
            "retrain": retrain_argv(a, dataset, _genotype_arg(a)),
            "source": _plain(dataclasses.asdict(a.source)) if a.source else None,
            "config": configs.get(a.name), "seeds": list(a.seeds) if a.seeds else None,
            "group": a.group}


def _what_changed(then: tuple, now: tuple) -> str:
    """The recorded (search, retrain, source) against today's, in words: the source's keys
    that changed when only the source did, else the recorded retrain command."""
    if then[:2] != now[:2] or not (then[2] and now[2]):
        return " ".join(then[1] or [])
    changed = [f"{k} {then[2].get(k)!r} -> {v!r}" for k, v in now[2].items() if then[2].get(k) != v]
    return "its genotype's source: " + ", ".join(changed)


def _recorded_source(src: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recorded arm source as this version writes it: a budget fit recorded before
    budget rules existed was the ratios-only fit."""
    if not src or "rule" in src:
        return src
    return {**src, "rule": "ratios" if src.get("budget") is not None else None}


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists, as the record reads back from YAML."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _genotype_arg(arm: Any) -> str | None:
    """What the record shows for a genotype made per run: a search's, or a drawn/fitted one."""
    if arm.search is not None:
        return SEARCH_GENOTYPE
    if arm.source is not None and arm.source.kind in ("random", "fit"):
        return DRAWN_GENOTYPE
    return None
