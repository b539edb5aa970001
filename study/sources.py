"""Where an arm's genotype comes from besides a zoo name, a file or a search.

    random: true                  # one uniform draw per seed (genotypes.random), seed = run seed
    budget: 0.5M                  # optional: fitted to this budget as a search fits its genotype
    ratios: [1, 2, 4, 8]          #   each op's ratio among these (needs FS layers)

    genotype: DARTS_V2            # a named genotype ...
    budget: 0.5M                  # ... with its ratios fitted to the budget (same fit)
    ratios: [1, 2, 4, 8]
    budget_rule: width            # width (the default, the search's): the ratios, then the
                                  #   network narrowed (space.darts.width_fit); ratios: the
                                  #   ratios alone (space.darts.budget_fit). Without `ratios`
                                  #   the width rule takes 1, 2 (the search's own candidates
                                  #   up to budget.max_ratio 2)

    genotype: DARTS_V2            # a plain network ...
    fs: off
    match_params: 0.5M            # ... at the even width whose count is closest to this
    match_arm: darts-v2-fit       #   or to the effective count of that fit arm's genotype at
                                  #   its own retrain width (one of the two)

A budget is counted as `python -m search --budget` counts it: the retrain network at C=36
with 20 cells and the dataset's classes (study.fit). The drawn or fitted genotype is
written to OUT/runs/<arm>/seed-<s>-genotype.json before the seed's retrain and never drawn
again once there, so a resumed or extended study trains the same genotypes. A plain-narrow
arm's width is chosen when the study starts and becomes its retrain's `init_channels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.checks import parse_count
from common.errors import UserError
from genotypes import FSSpec, Genotype
from space.darts.width_fit import rule_ratios

#: The arm keys this module reads.
KEYS = ("random", "budget", "ratios", "match_params", "match_arm", "budget_rule")
RULES = ("width", "ratios")


@dataclass(frozen=True)
class Source:
    """How an arm's genotype is made: `random` (a draw per seed), `fit` (a named genotype's
    ratios fitted to `budget`) or `narrow` (a plain network sized to a parameter count)."""

    kind: str
    budget: int | None = None
    ratios: tuple[float, ...] | None = None
    match_params: int | None = None
    match_arm: str | None = None
    rule: str | None = None  # a fit's or draw's budget rule (width | ratios); None: no budget


def _count(value: Any, key: str, at: str) -> int:
    try:
        count = parse_count(value)
    except ValueError:
        count = None
    if count is None:
        raise UserError(f"{at}: {key} {value!r} is not a parameter count; give one such as "
                        "500000, 0.5M or 800k")
    return count


def _ratios(value: Any, at: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) >= 2 and all(
        isinstance(r, int | float) and not isinstance(r, bool) and 1.0 <= r < float("inf")
        for r in value)
    if not ok or len(set(value)) != len(value):
        raise UserError(f"{at}: ratios {value!r} is invalid: give two or more distinct ratios "
                        ">= 1, e.g. [1, 2, 4, 8]")
    return tuple(sorted(float(r) for r in value))


def parse(data: dict[str, Any], raw: dict[str, Any], at: str) -> Source | None:
    """The source of an arm (`data`: its keys merged over the defaults; `raw`: its own), or
    None for a plain genotype or search arm. Mistakes are one line."""
    random = data.get("random")
    if random not in (None, True, False):
        raise UserError(f"{at}: random must be true or false, got {random!r}")
    has_search = data.get("search") is not None
    if random and (raw.get("genotype") is not None or has_search):
        raise UserError(f"{at}: give exactly one of `genotype`, `search` or `random: true`")
    budget = None if data.get("budget") is None else _count(data["budget"], "budget", at)
    ratios = _ratios(data.get("ratios"), at)
    match = None if data.get("match_params") is None else _count(
        data["match_params"], "match_params", at)
    match_arm = data.get("match_arm")
    fs = data.get("fs")
    fs = "off" if fs is False else fs
    if has_search and (budget, ratios, match, match_arm) != (None, None, None, None):
        raise UserError(f"{at}: a search arm's budget is the search's own: set it in its search "
                        "block (set: {budget.params: 0.5M, fs.ratios: [1, 2, 4, 8]})")
    if ratios is not None and budget is None:
        raise UserError(f"{at}: ratios are the candidates of a budget fit; add `budget` (e.g. 0.5M)")
    if (budget is not None or random) and fs == "off" and ratios is not None:
        raise UserError(f"{at}: ratios need FS layers, but fs is off; use fs: dfs or fs: fs")
    if budget is not None and ratios is not None and data.get("ratio") is not None:
        raise UserError(f"{at}: ratio would overrule the fitted per-op ratios; drop it")
    if match is not None and match_arm is not None:
        raise UserError(f"{at}: give match_params or match_arm, not both")
    if match is not None or match_arm is not None:
        if random or budget is not None:
            raise UserError(f"{at}: match_params/match_arm size a plain named genotype; drop "
                            "random and budget from this arm")
        if fs != "off":
            raise UserError(f"{at}: match_params/match_arm choose the width of a plain network; "
                            "add fs: off")
        if match_arm is not None and not isinstance(match_arm, str):
            raise UserError(f"{at}: match_arm must name another arm, got {match_arm!r}")
        return Source("narrow", match_params=match, match_arm=match_arm)
    rule = data.get("budget_rule")
    if rule is not None and budget is None:
        raise UserError(f"{at}: budget_rule chooses how a budget is met; add `budget` or drop it")
    if rule not in (None, *RULES):
        raise UserError(f"{at}: budget_rule {rule!r} is unknown; use width or ratios")
    rule = None if budget is None else (rule or "width")
    if random:
        return Source("random", budget=budget, ratios=ratios, rule=rule)
    if budget is not None:
        return Source("fit", budget=budget, ratios=ratios, rule=rule)
    return None


def check_matches(arms: list[Any], where: str) -> None:
    """A match_arm names another arm whose genotype is fitted to a budget (one count)."""
    by_name = {a.name: a for a in arms}
    for a in arms:
        if a.source is None or a.source.match_arm is None:
            continue
        other = by_name.get(a.source.match_arm)
        if other is None or other.source is None or other.source.kind != "fit":
            raise UserError(f"{where}: arm {a.name!r}: match_arm {a.source.match_arm!r} must name "
                            "an arm with a named genotype fitted to a budget (genotype + budget)")


def genotype_path(out: Path, arm: str, seed: int) -> Path:
    """Where a random or fitted arm's genotype of one seed is written."""
    return Path(out) / "runs" / arm / f"seed-{seed}-genotype.json"


def fs_of(fs_mode: str | None) -> FSSpec | None:
    """The FS settings a drawn or fitted genotype records for an arm's retrain `fs`: none for
    off, fixed offsets for fs, learned ones otherwise (dfs, genotype, or the preset's)."""
    if fs_mode == "off":
        return None
    return FSSpec(ratio=2.0, dfs=fs_mode != "fs")


#: Draws a random arm's seed may take to find a genotype that fits its budget.
MAX_DRAWS = 100


def make_genotype(source: Source, base: Genotype | None, seed: int, fs_mode: str | None,
                  dataset: str) -> tuple[Genotype, list[str]]:
    """The genotype of one seed of a random or fit arm, and the fit's lines."""
    from study.fit import budget_fit

    fs = fs_of(fs_mode)
    if source.kind == "random":
        from genotypes.random import random_genotype

        g = random_genotype(seed, fs)
    else:
        assert base is not None
        g = base
    if source.budget is None:
        return g, []
    classes, size = dataset_shape_of(dataset)
    ratios = list(source.ratios) if source.ratios else None
    if ratios is None and source.rule == "width" and fs is not None:
        ratios = rule_ratios()  # the search's own candidates when nobody chose them

    def fit_of(g: Genotype) -> Any:
        return budget_fit(g, source.budget, ratios, fs, num_classes=classes, input_size=size,
                          rule=source.rule or "width")

    fit = fit_of(g)
    if source.kind == "random" and not fit.within:
        # A random architecture at the budget: uniform over the genotypes the fit brings within
        # it, by rejection (the seed's next draws); the draw taken is recorded in `source`.
        for draw in range(1, MAX_DRAWS):
            fit = fit_of(random_genotype(seed, fs, draw))
            if fit.within:
                break
    return fit.genotype, fit.lines()


def retrain_config(arm: Any) -> dict[str, Any]:
    """The resolved retrain config of an arm, as its command will resolve it."""
    from retrain import setup as rsetup

    r = arm.retrain
    items = list(r.sets) + ([f"fs.mode={r.fs}"] if r.fs else [])
    items += [f"fs.ratio={r.ratio}"] if r.ratio is not None else []
    return rsetup.resolve(r.preset or rsetup.default_preset(r.model), items, lambda cfg: False)


def path_arg(value: str) -> str:
    """A genotype or preset that names an existing file, as an absolute path (here rather
    than in study.commands, which imports study.spec, which imports this module)."""
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else value


def _base(arm: Any) -> Genotype:
    from genotypes import load_genotype

    return load_genotype(path_arg(arm.retrain.genotype or ""))


def prepare(arm: Any, seed: int, out: Path, dataset: str) -> list[str]:
    """Write the genotype of a random or fit arm's seed unless it is there (then it is
    kept: a resumed study trains what it drew). Returns what to print."""
    src = arm.source
    path = genotype_path(out, arm.name, seed)
    if src is None or src.kind == "narrow" or path.is_file():
        return []
    from genotypes import save_genotype

    g, lines = make_genotype(src, None if src.kind == "random" else _base(arm), seed,
                             arm.retrain.fs, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.json")
    save_genotype(g, tmp)
    tmp.replace(path)  # whole or absent: a killed study never leaves half a genotype
    what = "drew" if src.kind == "random" else "fitted"
    return [f"{what} {path}"] + lines


def size_narrow_arms(arms: list[Any], dataset: str) -> tuple[list[Any], list[str]]:
    """The arms with each plain-narrow arm's width set (`--set init_channels=W` last among
    its retrain items), and one line per choice."""
    import dataclasses

    from common.shapes import is_large
    from study.fit import count_at, narrow_width, plain_count

    classes, size = dataset_shape_of(dataset)
    large = is_large(size)
    by_name = {a.name: a for a in arms}
    out, lines = [], []
    for a in arms:
        src = a.source
        if src is None or src.kind != "narrow":
            out.append(a)
            continue
        if src.match_params is not None:
            target, what = src.match_params, f"match_params {src.match_params:,}"
        else:
            other = by_name[src.match_arm]
            g, _ = make_genotype(other.source, _base(other), 0, other.retrain.fs, dataset)
            cfg = retrain_config(other)
            target = count_at(g, cfg.init_channels, cfg.layers, classes,
                              imagenet=large)
            what = (f"arm {other.name}'s {target:,} effective parameters at C="
                    f"{cfg.init_channels}, {cfg.layers} cells")
        cfg = retrain_config(a)
        width, count = narrow_width(_base(a), int(target), cfg.layers, classes,
                                    imagenet=large)
        retrain = dataclasses.replace(a.retrain, sets=(*a.retrain.sets, f"init_channels={width}"))
        out.append(dataclasses.replace(a, retrain=retrain))
        near = ", ".join(f"C={c}: {plain_count(_base(a), c, cfg.layers, classes, imagenet=large):,}"
                         for c in (width - 2, width + 2) if c >= 2)
        lines.append(f"arm {a.name}: plain width init_channels={width} ({count:,} parameters, "
                     f"{cfg.layers} cells; {near}), the closest to {what}")
    return out, lines


def dataset_shape_of(dataset: str) -> tuple[int, tuple[int, int]]:
    """study.fit.dataset_shape, its error as one line."""
    from study.fit import dataset_shape

    try:
        return dataset_shape(dataset)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the classes and image size of {dataset}: {e}") from None
