"""The checks of config keys that a type and bounds cannot say (common.config_schema names
them on its keys): each takes (dotted key, value), returns the value normalised, or raises a
one-line error naming the key, the value and what is allowed. A check's docstring starts
with what it allows, as docs/configuration.md says it."""

from __future__ import annotations

import math
from typing import Any

from common.errors import UserError


def check_fs_ratio(value: Any) -> float:
    """The FS compression ratio as a float, or the one-line error both CLIs give for it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1.0 <= value < math.inf:
        raise UserError(f"FS ratio {value!r} is invalid: it must be a number >= 1 (--ratio or "
                        "fs.ratio; 1 shares nothing, 2 halves each 1x1 layer)")
    return float(value)


def fs_ratio(key: str, value: Any) -> float:
    """a number >= 1"""
    return check_fs_ratio(value)


def fs_ratios(key: str, ratios: Any) -> list[float]:
    """two or more distinct numbers >= 1

    Returned sorted; whether FS layers exist to take them is the search's check
    (search.settings)."""
    if not isinstance(ratios, list) or len(ratios) < 2:
        raise UserError(f"config {key}={ratios!r} is invalid: give two or more ratios, "
                        "e.g. --set fs.ratios=[1,2,4,8]")
    bad = [r for r in ratios if isinstance(r, bool) or not isinstance(r, int | float)
           or not 1.0 <= r < float("inf")]
    if bad:
        raise UserError(f"config {key}={ratios!r} is invalid: {bad[0]!r} is not a ratio; "
                        "each must be a number >= 1, e.g. --ratios 1,2,4,8")
    checked = sorted(float(r) for r in ratios)
    if len(set(checked)) != len(checked):
        raise UserError(f"config {key}={ratios!r} repeats a ratio; list each once")
    return checked


def adam_betas(key: str, betas: Any) -> list[float]:
    """two numbers in [0, 1)"""
    if not (isinstance(betas, list) and len(betas) == 2 and all(
            isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise UserError(f"config {key}={betas!r} is invalid: give two numbers in [0, 1), "
                        f"e.g. --set {key}=[0.5,0.999]")
    return [float(b) for b in betas]


def even_width(key: str, c: int) -> int:
    """even"""
    if c % 2:
        raise UserError(f"config {key}={c} is invalid: it must be even (the reduction "
                        "cells halve it in FactorizedReduce)")
    return c


def even_budget_width(key: str, c: int) -> int:
    """even"""
    if c % 2:
        raise UserError(f"config {key}={c} is invalid: it must be even, as the network's width")
    return c


_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9}


def parse_count(value: Any) -> int | None:
    """A parameter count: 1200000, 1.2e6, "800k", "1.5M" (k/M/G, any case); None stays None.
    Raises ValueError on anything else (the caller words the error)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        scale = _SUFFIX.get(text[-1:].lower(), 1.0)
        number = float(text[:-1] if scale != 1.0 else text)
    elif isinstance(value, int | float):
        number, scale = float(value), 1.0
    else:
        raise ValueError(value)
    count = number * scale
    if not (count >= 1 and count < float("inf")):
        raise ValueError(value)
    return round(count)


def param_count(key: str, v: Any) -> int | None:
    """a parameter count: 1500000, 1.5M, 800k

    Returned as an int (`parse_count`)."""
    try:
        return parse_count(v)
    except ValueError:
        raise UserError(f"config {key}={v!r} is invalid: give a parameter count such as "
                        "1500000, 1.5M or 800k") from None


def shortcut(key: str, v: Any) -> str | None:
    """A (zero-padding) or B (1x1 projection)"""
    if v is None:
        return None
    if str(v).upper() not in ("A", "B"):
        raise UserError(f"config {key}={v!r} is invalid: give A (zero-padding) or B (1x1 "
                        "projection)")
    return str(v).upper()


def cycle_fractions(key: str, v: Any) -> list[float]:
    """increasing fractions of a cycle, each in (0, 1), e.g. [0.5, 0.75]"""
    ok = isinstance(v, list) and all(isinstance(x, int | float) and not isinstance(x, bool)
                                     and 0 < x < 1 for x in v)
    if not ok or any(b <= a for a, b in zip(v, v[1:], strict=False)):
        hint = (" (fractions of the epochs, not epoch numbers: [0.5, 0.75] is epochs 80 and "
                "120 of 160)" if isinstance(v, list) and any(
                    isinstance(x, int | float) and x >= 1 for x in v) else "")
        raise UserError(f"config {key}={v!r} is invalid: give increasing fractions of a cycle, "
                        f"each between 0 and 1, e.g. [0.5, 0.75]{hint}")
    return [float(x) for x in v]
