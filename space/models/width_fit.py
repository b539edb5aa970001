"""A registered network narrowed so that a parameter target is met with FS ratios at most
`max_ratio` (retrain `fs.params` with `fs.max_ratio`, the budget's width rule for --model
networks; space/darts/width_fit.py is the DARTS cells').

With a parameter target P and 1D FS (or DFS, counted hardened), one ratio R is fitted so that
the network has the most effective parameters at or under P (space.layers.convert.fit_ratio).
At a tight target R grows past the ratios where FS keeps its accuracy; the width rule caps it:
if the network at its width W needs R > max_ratio, it is rebuilt at the widest width w < W
(`model.width`) at which ratio max_ratio fits P, and R is fitted there (R <= max_ratio, as
close to P as one ratio gets). The effective count grows with the width, so w is found by
bisection over the integers, each step building the plain network once and counting it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from space.darts.width_fit import widest
from space.layers.convert import fs_count
from space.models.registry import get_model, model_entry

__all__ = ["default_width", "narrowed_width", "start_width"]


def default_width(name: str) -> int | None:
    """The network's own `width` (its builder's default); None when it takes no width."""
    entry = model_entry(name)
    if "width" not in entry.settings:
        return None
    return int(inspect.signature(entry.build).parameters["width"].default)


def start_width(name: str, settings: dict[str, Any]) -> int | None:
    """The widest width a narrowing may take: the settings' `width`, else the network's own."""
    return settings.get("width") or default_width(name)


def narrowed_width(name: str, params: int, max_ratio: float, num_classes: int,
                   in_channels: int, input_size: tuple[int, int],
                   settings: dict[str, Any]) -> int | None:
    """The width at which network `name` (with `settings`; its `width`, else the network's
    own, is the widest allowed) meets `params` with 1D FS at ratio `max_ratio`; None when it
    does at its width already (nothing to narrow). Widths are the network's (multiples of its
    `width_step`, from the narrowest it builds). A ValueError (one line) when the network
    takes no width and would need a larger ratio, or when its narrowest width is over."""
    @functools.cache
    def count(width: int | None) -> int:
        given = {**settings, "width": width} if width is not None else settings
        return fs_count(get_model(name, num_classes, in_channels, input_size, **given),
                        max_ratio)

    start = start_width(name, settings)
    if count(settings.get("width")) <= params:
        return None
    if start is None:
        raise ValueError(f"{name} needs FS ratios above fs.max_ratio {max_ratio:g} to reach "
                         f"{params:,} parameters and takes no model.width to narrow; raise "
                         "fs.max_ratio or set it to null (one ratio, however large)")
    step = model_entry(name).width_step
    narrowest = _narrowest(lambda w: count(w), step, int(start))
    width = widest(narrowest, int(start) // step * step, lambda w: count(w) <= params, step)
    if count(width) > params:
        raise ValueError(f"{name} at its narrowest width {width} with FS ratio {max_ratio:g} "
                         f"has {count(width):,} parameters, over fs.params {params:,}; raise "
                         "fs.max_ratio or the target")
    return width


def _narrowest(count: Callable[[int], int], step: int, start: int) -> int:
    """The narrowest width on the grid of `step` that the network builds (a shared-filter
    network needs at least the image's channels); `start` when none below it does."""
    for width in range(step, start, step):
        try:
            count(width)
        except ValueError:
            continue
        return width
    return start
