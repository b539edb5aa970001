"""The checks of a resolved `search` config that span keys (each key's own type, bounds and
choices are the schema's, common.config_schema): one line naming what is wrong, before
anything runs."""

from __future__ import annotations

from common.config_schema import SearchConfig
from common.errors import UserError
from common.schema import leaf_keys
from search.algorithms import make_algorithm

#: The choices of the search's text keys (study.spec reads fs.mode's).
CHOICES = {k.name: k.meta["choices"] for k in leaf_keys(SearchConfig).values()
           if k.meta["choices"]}


def check_config(cfg: SearchConfig) -> SearchConfig:
    """Checks across keys of a `search` config (each key was checked when it was set)."""
    make_algorithm(cfg)  # the algorithm's own limits (GDAS: first order only)
    if cfg.fs.ratios is not None and cfg.fs.mode == "off":
        raise UserError("config fs.ratios needs FS layers, but fs.mode is off; use --fs fs or "
                        "--fs dfs, or drop fs.ratios")
    if cfg.budget.acts_on == "ratios" and cfg.budget.params is not None and cfg.fs.ratios is None:
        raise UserError("budget.acts_on=ratios needs searched ratios, but the ratio is fixed; "
                        "give --ratios (e.g. 1,2,4,8) or use budget.acts_on=all")
    return cfg
