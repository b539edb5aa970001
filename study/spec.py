"""The study file: a YAML list of named arms, each run over several seeds.

    name: fs-fidelity                  # title of the report
    dataset: ../shared/data/cifar10-subset   # cifar10 | cifar100 | imagenet | ImageFolder path
    out: runs/study-fs-fidelity        # output folder (`--out` overrides it; one is needed)
    seeds: [0, 1, 2]                   # `--seeds 0,1,2,3` overrides them
    threads: 2                         # optional: torch threads per run (default: CPUs / jobs)
    defaults:                          # optional: options every arm starts from
      genotype: DARTS_V2
      preset: smoke
      set: {epochs: 20}
    arms:
      - name: fs-off                   # letters, digits, '-', '_', '.'; a folder name
        fs: off                        # retrain --fs: off | fs | dfs | genotype
      - name: dfs-r2
        fs: dfs
        ratio: 2                       # retrain --ratio
        set: {fs.harden_epoch: 5}      # retrain --set items: a mapping (nested or dotted
                                       #   keys) or a list of "key=value" strings
      - name: searched
        search: {preset: smoke, algo: pc-darts, fs: dfs, ratio: 2, order: first, set: {epochs: 3}}
      - name: random                   # one uniform draw per seed (genotypes.random) ...
        random: true
        budget: 0.5M                   # ... optionally fitted to a budget (study.sources)
        ratios: [1, 2, 4, 8]
      - name: darts-v2-fit             # a named genotype's ratios fitted to a budget
        budget: 0.5M
        ratios: [1, 2, 4, 8]
      - name: plain-narrow             # plain, at the width matching a count
        fs: off
        match_arm: darts-v2-fit        # or match_params: 0.5M
      - name: resnet20-fs4             # a registered network (retrain --model) instead of
        model: resnet20                #   a genotype
        fs: fs
        ratio: 4
        set: {model.width: 16}
      - name: resnet8                  # `seeds`: this arm's own seeds (else the study's);
        model: resnet8                 #   `group`: the report's table it is in
        fs: off
        seeds: [0, 1, 2, 3, 4]
        group: "A: about 0.07M"
      - name: dfs-r2-committed         # a committed study's arm, not run again (study.reuse)
        reuse: {study: studies/fs-fidelity/study.json, arm: dfs-r2-lr100-anneal}
    compare:                           # pairs of arms: the first minus the second; "wq:ARM"
      - [dfs-r2, fs-off]               #   compares ARM's 8-bit WQ copy
    slurm: {partition: gpu, time: "12:00:00", gpus_per_node: 1}   # optional: jobs under
                                       #   `--launcher slurm` (keys: study.cluster)

An arm holds retrain options (`genotype` or `model`, `preset`, `fs`, `ratio`, `set`) and optionally a
`search` block (`preset`, `algo`, `fs`, `ratio`, `order`, `set`): the search runs first, with the same
seed, and the arm's retrain trains its genotype.json (an arm with a search has no
`genotype`). An arm has exactly one of `genotype`, `model`, `search` and `random: true` (a
`model` arm ignores the defaults' genotype); `budget`,
`ratios`, `match_params` and `match_arm` make or size its genotype (study.sources).
`defaults` holds the same keys as an arm (but `name`); an arm's own keys win, and
`set` items (also a search block's) are applied defaults first, so the arm's win. Relative
paths (dataset, out, genotype and preset files) are relative to the working directory, as
for every command here. Every mistake is one line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import UserError
from retrain.setup import FS_MODES
from search.algorithms import ALGORITHMS
from search.algorithms.base import algorithm_choices
from search.settings import CHOICES
from study import cluster, reuse, sources
from study.cluster import SlurmOptions
from study.fields import as_mapping, check_keys, fail, fs_choice, fs_ratio, opt_text, parse_sets, seed_list
from study.layout import WQ_PREFIX
from study.reuse import Reused
from study.sources import Source

TOP_KEYS = ("name", "dataset", "out", "seeds", "threads", "defaults", "arms", "compare",
            "slurm")
ARM_KEYS = ("name", "genotype", "model", "preset", "fs", "ratio", "set", "search", "seeds", "group",
            "reuse", *sources.KEYS)
#: Keys of an arm alone (not of `defaults`).
OWN_KEYS = ("name", "seeds", "group", "reuse")
SEARCH_KEYS = ("preset", "algo", "fs", "ratio", "order", "set")
RETRAIN_FS = FS_MODES  # retrain's --fs choices
SEARCH_FS = CHOICES["fs.mode"]  # search's
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Stage:
    """The options of one command of an arm (its retrain, or its search)."""

    preset: str | None = None
    fs: str | None = None
    ratio: float | None = None
    order: str | None = None
    algo: str | None = None
    genotype: str | None = None
    model: str | None = None
    sets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Arm:
    """A named arm: a retrain, optionally preceded by a search whose genotype it trains, or
    of a genotype drawn, fitted or sized by `source` (study.sources)."""

    name: str
    retrain: Stage
    search: Stage | None = None
    source: Source | None = None
    seeds: tuple[int, ...] | None = None  # the arm's own seeds (else the study's)
    group: str | None = None  # the report's table the arm is in (one table without groups)
    reuse: Reused | None = None  # figures of a committed study's arm (study.reuse): not run


@dataclass
class Study:
    """A validated study file."""

    name: str
    dataset: str
    out: Path | None  # None: the file names none, `--out` must
    seeds: list[int]
    arms: list[Arm]
    compare: list[tuple[str, str]]
    threads: int | None = None
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    slurm: SlurmOptions | None = None  # the `slurm:` block (study.cluster), for --launcher slurm

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


def _stage(data: dict[str, Any], where: str, search: bool) -> Stage:
    order = algo = None
    if search:
        order = data.get("order")
        if order not in (None, "first", "second"):
            raise fail(where, f"order {order!r} is unknown; use first or second")
        algo = data.get("algo")
        if algo is not None and algo not in ALGORITHMS:
            raise fail(where, f"algo {algo!r} is unknown; use one of "
                       f"{algorithm_choices()}")
    fs = fs_choice(data.get("fs"), SEARCH_FS if search else RETRAIN_FS, where)
    ratio = fs_ratio(data.get("ratio"), where)
    if fs == "off" and ratio is not None:
        raise fail(where, "ratio has no effect with fs off; drop it")
    return Stage(preset=opt_text(data.get("preset"), "preset", where), fs=fs, ratio=ratio,
                 order=order, algo=algo, genotype=opt_text(data.get("genotype"), "genotype", where),
                 model=None if search else opt_text(data.get("model"), "model", where),
                 sets=parse_sets(data.get("set"), where))


def _merge(defaults: dict[str, Any], arm: dict[str, Any], where: str) -> dict[str, Any]:
    """The arm's keys over the defaults'; `set` items concatenated (defaults first)."""
    out = {**defaults, **arm}
    if "set" in defaults and "set" in arm:
        out["set"] = list(parse_sets(defaults["set"], where)) + list(parse_sets(arm["set"], where))
    ds, asr = defaults.get("search"), arm.get("search")
    if isinstance(ds, dict) and isinstance(asr, dict):
        out["search"] = _merge(ds, asr, where)
    return out


def _arm(raw: Any, defaults: dict[str, Any], where: str, index: int) -> Arm:
    raw = as_mapping(raw, where, f"arm {index + 1}")
    check_keys(raw, ARM_KEYS, where, f"arm {raw.get('name', index + 1)!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        quote = "; quote it (YAML reads off/on/yes/no as booleans)" if isinstance(name, bool) else ""
        raise fail(where, f"arm {index + 1} needs a `name` of letters, digits, '-', '_' or '.' "
                   f"(it names a folder), got {name!r}{quote}")
    at = f"{where}: arm {name!r}"
    if "reuse" in raw:  # its figures are read when the study runs (study.reuse.load_arms)
        reuse.check_keys(raw, at)
        block = as_mapping(raw["reuse"], at, "reuse")
        check_keys(block, reuse.KEYS, at, "reuse")
        if any(block.get(k) in (None, "") for k in reuse.KEYS):
            raise fail(at, "reuse needs `study` (a committed study.json) and `arm` (one of its "
                       "arms), e.g. {study: studies/x/study.json, arm: a}")
        return Arm(name=name, retrain=Stage(), reuse=Reused(str(block["study"]), str(block["arm"])),
                   group=opt_text(raw.get("group"), "group", at))
    seeds = tuple(seed_list(raw["seeds"], at)) if raw.get("seeds") is not None else None
    own = {"seeds": seeds, "group": opt_text(raw.get("group"), "group", at)}
    raw = {k: v for k, v in raw.items() if k not in ("seeds", "group")}
    return dataclasses.replace(_arm_body(name, _merge(defaults, raw, where), raw, at), **own)


def _arm_body(name: str, data: dict[str, Any], raw: dict[str, Any], at: str) -> Arm:
    search = None
    if data.get("model") is not None:
        return _model_arm(name, data, raw, at)
    source = sources.parse(data, raw, at)
    if source is not None and source.kind == "random":
        data.pop("genotype", None)
    elif data.get("search") is not None:
        block = as_mapping(data["search"], at, "search")
        check_keys(block, SEARCH_KEYS, at, "search")
        search = _stage(block, f"{at} search", search=True)
        if raw.get("genotype") is not None:
            raise UserError(f"{at}: has both `genotype` and `search`; its retrain trains the "
                            "search's genotype, so drop one")
        data.pop("genotype", None)
    elif data.get("genotype") is None:
        raise UserError(f"{at}: needs a `genotype` (zoo name, file, search run), a `search` "
                        "block or `random: true`")
    return Arm(name=name, retrain=_stage(data, at, search=False), search=search, source=source)


def _model_arm(name: str, data: dict[str, Any], raw: dict[str, Any], at: str) -> Arm:
    """An arm that trains a registered network (retrain --model); the defaults' genotype or
    search block, if any, does not apply to it."""
    if raw.get("genotype") is not None or raw.get("search") is not None:
        raise UserError(f"{at}: has `model` and a genotype source (`genotype` or `search`); a "
                        "model arm trains the registered network, so drop one")
    if any(k in raw for k in sources.KEYS):
        raise UserError(f"{at}: {', '.join(k for k in sources.KEYS if k in raw)} sizes a DARTS "
                        "genotype; a model arm sets model.width or fs.params in `set` instead")
    data = {k: v for k, v in data.items() if k not in ("genotype", "search", *sources.KEYS)}
    return Arm(name=name, retrain=_stage(data, at, search=False))


def _compare(value: Any, names: list[str], where: str) -> list[tuple[str, str]]:
    pairs = []
    for item in value or []:
        if not (isinstance(item, list) and len(item) == 2):
            raise fail(where, f"each `compare` item must be a pair [arm, arm], got {item!r}")
        for n in item:
            arm = str(n).removeprefix(WQ_PREFIX)
            if arm not in names:
                close = difflib.get_close_matches(arm, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (arms: {', '.join(names)})"
                raise fail(where, f"compare names arm {n!r}, which is not an arm{hint}")
        if item[0] == item[1]:
            raise fail(where, f"compare pair {item!r} compares an arm with itself")
        pairs.append((item[0], item[1]))
    return pairs


def from_dict(data: Any, where: str = "study", source: Path | None = None) -> Study:
    """Validate a parsed study file."""
    data = as_mapping(data, where, "a study file")
    check_keys(data, TOP_KEYS, where, "the study file")
    for key in ("name", "dataset", "arms"):
        if data.get(key) in (None, "", []):
            raise fail(where, f"`{key}` is missing")
    threads = data.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise fail(where, f"threads must be a positive integer, got {threads!r}")
    defaults = as_mapping(data.get("defaults") or {}, where, "defaults")
    check_keys(defaults, tuple(k for k in ARM_KEYS if k not in OWN_KEYS), where, "defaults")
    if not isinstance(data["arms"], list):
        raise fail(where, "`arms` must be a list of arms (each `- name: ...`)")
    arms = [_arm(raw, defaults, where, i) for i, raw in enumerate(data["arms"])]
    names = [a.name for a in arms]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise fail(where, f"arm names repeat: {', '.join(dup)}")
    sources.check_matches(arms, where)
    out = data.get("out")
    return Study(name=str(data["name"]), dataset=str(data["dataset"]),
                 out=Path(str(out)) if out not in (None, "") else None,
                 seeds=seed_list(data.get("seeds"), where), arms=arms,
                 compare=_compare(data.get("compare"), names, where), threads=threads,
                 source=source, raw=data, slurm=cluster.parse(data.get("slurm"), where))


def load_study(path: str | Path) -> Study:
    """Read and validate a study file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"study file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    return from_dict(data, str(path), path.resolve())
