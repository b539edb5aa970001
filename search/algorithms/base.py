"""The seam between a search algorithm and the supernet, and the registry of algorithms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.config_schema import SearchBase
from common.errors import UserError, listing
from space.darts.supernet import SearchNetwork

ALGORITHMS: dict[str, type[Algorithm]] = {}
#: Each algorithm's own config keys, a dataclass of `key(...)` / `section(...)` fields that
#: search.settings joins to the `search` section's schema.
CONFIG_KEYS: dict[str, type] = {}


def algorithm_choices() -> str:
    """The registered names for a message; never an empty list (importing search.algorithms
    registers them)."""
    return listing(ALGORITHMS, "none (no algorithm is registered: reinstall dfsnet-darts)")


def register(name: str, config: type | None = None) -> Callable[[type[Algorithm]], type[Algorithm]]:
    """Class decorator: make an `Algorithm` available as `--algo name`; `config`, a dataclass
    of the algorithm's own keys (search.settings joins them to the `search` section)."""
    def add(cls: type[Algorithm]) -> type[Algorithm]:
        if name in ALGORITHMS:
            raise ValueError(f"search algorithm {name!r} is registered twice")
        cls.name = name
        ALGORITHMS[name] = cls
        if config is not None:
            CONFIG_KEYS[name] = config
        return cls
    return add


class Algorithm:
    """DARTS's behaviour, which an algorithm overrides where it differs: the supernet's
    build options, the weighting each forward uses (set by `attach`; left alone, the
    supernet's softmax), the per-epoch schedule, and the architecture-step orders it
    supports."""

    name = "darts"
    #: Architecture-step orders (search.arch.order) this algorithm supports.
    orders: tuple[str, ...] = ("first", "second")

    def __init__(self, cfg: SearchBase) -> None:
        self.cfg = cfg
        order = cfg.arch.order
        if order not in self.orders:
            raise UserError(f"--algo {self.name} supports --order {' or '.join(self.orders)} "
                            f"only, not {order}")

    def describe(self) -> str:
        """What the search's start-up line says after the algorithm's name (e.g. pc-darts's
        share of the channels); nothing by default."""
        return ""

    def build_hint(self) -> str:
        """Appended to the one line of a supernet the config cannot build; nothing by default."""
        return ""

    def network_options(self) -> dict[str, Any]:
        """Keyword arguments for `SearchNetwork` beyond the space's own."""
        return {}

    def attach(self, net: SearchNetwork) -> None:
        """Set what the algorithm needs on the built supernet (its weighting)."""

    def start_epoch(self, net: SearchNetwork, epoch: int, epochs: int) -> dict[str, float]:
        """Called before each epoch's training; returns figures for that epoch's log record."""
        return {}


def make_algorithm(cfg: SearchBase) -> Algorithm:
    """The algorithm a resolved `search` config names."""
    name = cfg.algorithm
    if name not in ALGORITHMS:
        raise UserError(f"config algorithm={name!r} is invalid: choose one of "
                        f"{algorithm_choices()}")
    return ALGORITHMS[name](cfg)
