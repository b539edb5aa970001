"""The `search` section's schema and the checks of a resolved `search` config that span keys.

SearchConfig is common.config_schema.SearchBase with each registered algorithm's own keys
(declared beside it, search/algorithms/) joined right after `algorithm`, an algorithm's keys
before its sections; importing this module registers it as the `search` section's schema
(common.config_schema.SECTIONS), so that presets, `--set`, `--resume` and the generated docs
all read it. Each key's own type, bounds and choices are the schema's; the checks here are
one line naming what is wrong, before anything runs."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from common.config_schema import SECTIONS, SearchBase
from common.errors import UserError
from common.schema import leaf_keys
from search.algorithms import Algorithm, make_algorithm
from search.algorithms.base import CONFIG_KEYS

#: The section's description (docs/configuration.md).
DOC = "The `search` section: the DARTS defaults (Liu et al., 2019) with FS/DFS 1x1 convs."


def _fresh(f: dataclasses.Field) -> Any:
    """A copy of a declared field, for a new dataclass (a Field belongs to one class)."""
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


def _fields(cls: type) -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], _fresh(f)) for f in dataclasses.fields(cls)]


def join(base: type, extra: list[type]) -> type:
    """`base`'s fields with each of `extra`'s joined after its first field (`algorithm`):
    leaf keys first, then sections, in `extra`'s order. A name declared twice is an error."""
    own = _fields(base)
    added = [f for cls in extra for f in _fields(cls)]
    added.sort(key=lambda f: bool(f[2].metadata.get("section")))  # stable: keeps the order
    names = [f[0] for f in own + added]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"config keys declared twice in the search section: {', '.join(twice)}")
    cls = dataclasses.make_dataclass("SearchConfig", own[:1] + added + own[1:])
    cls.__module__ = __name__  # pickled and documented as search.settings.SearchConfig
    cls.__doc__ = DOC
    return cls


SearchConfig: Any = join(SearchBase, list(CONFIG_KEYS.values()))
SECTIONS["search"] = SearchConfig

#: The choices of the search's text keys (study.spec reads fs.mode's).
CHOICES = {k.name: k.meta["choices"] for k in leaf_keys(SearchConfig).values()
           if k.meta["choices"]}


def check_config(cfg: Any) -> Any:
    """Checks across keys of a `search` config (each key was checked when it was set)."""
    checked_algorithm(cfg)
    return cfg


def checked_algorithm(cfg: Any) -> Algorithm:
    """check_config's checks, and the search's one algorithm (made once per search)."""
    algorithm = make_algorithm(cfg)  # the algorithm's own limits (GDAS: first order only)
    if cfg.fs.ratios is not None and cfg.fs.mode == "off":
        raise UserError("config fs.ratios needs FS layers, but fs.mode is off; use --fs fs or "
                        "--fs dfs, or drop fs.ratios")
    if cfg.budget.acts_on == "ratios" and cfg.budget.params is not None and cfg.fs.ratios is None:
        raise UserError("budget.acts_on=ratios needs searched ratios, but the ratio is fixed; "
                        "give --ratios (e.g. 1,2,4,8) or use budget.acts_on=all")
    return algorithm
