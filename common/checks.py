"""Checks of a resolved config, shared by search.settings and retrain.setup: every bad value
is one line naming the key, the value and what is allowed, before anything runs."""

from __future__ import annotations

from typing import Any

from common.errors import UserError


def get_key(cfg: dict[str, Any], key: str) -> Any:
    """The value at dotted `key`; a missing key is a one-line error."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"config key {key!r} is missing; start from a preset in configs/")
        node = node[part]
    return node


def set_key(cfg: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = value


def check_number(cfg: dict[str, Any], key: str, kind: type, lo: float | None = None,
                 hi: float | None = None, lo_open: bool = False, optional: bool = False,
                 hi_open: bool = False) -> None:
    """`key` must be an int or a number (`kind`) within the bounds (null too if `optional`);
    it is stored back as `kind`, so YAML's 1 and 1.0 mean the same."""
    v = get_key(cfg, key)
    if v is None and optional:
        return
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    if kind is int:
        ok = ok and float(v).is_integer()
    if ok:
        v = kind(v)
        ok = ((lo is None or (v > lo if lo_open else v >= lo))
              and (hi is None or (v < hi if hi_open else v <= hi)))
    if not ok:
        what = "an integer" if kind is int else "a number"
        bound = "" if lo is None else f" {'>' if lo_open else '>='} {lo:g}"
        bound += "" if hi is None else f" and {'<' if hi_open else '<='} {hi:g}"
        none = " (or null)" if optional else ""
        raise UserError(f"config {key}={v!r} is invalid: it must be {what}{bound}{none}")
    set_key(cfg, key, v)


def check_choice(cfg: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    v = get_key(cfg, key)
    if v not in allowed:
        raise UserError(f"config {key}={v!r} is invalid: choose one of {', '.join(allowed)}")


def check_bool(cfg: dict[str, Any], key: str) -> None:
    if not isinstance(get_key(cfg, key), bool):
        raise UserError(f"config {key}={get_key(cfg, key)!r} is invalid: use true or false")


def normalise_fs_mode(cfg: dict[str, Any]) -> None:
    """YAML reads a bare `off` as false; in fs.mode it can only mean the text."""
    if get_key(cfg, "fs.mode") is False:
        set_key(cfg, "fs.mode", "off")


def check_even_channels(cfg: dict[str, Any]) -> None:
    c = get_key(cfg, "init_channels")
    if c % 2:
        raise UserError(f"config init_channels={c} is invalid: it must be even (the reduction "
                        "cells halve it in FactorizedReduce)")


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


def check_count(cfg: dict[str, Any], key: str) -> None:
    """`key` is null or a positive parameter count (`parse_count`), stored back as an int."""
    v = get_key(cfg, key)
    try:
        set_key(cfg, key, parse_count(v))
    except ValueError:
        raise UserError(f"config {key}={v!r} is invalid: give a parameter count such as "
                        "1500000, 1.5M or 800k") from None
