"""The study file's fields: each read and checked, with one line naming the file and the key
on a mistake (`where` is the file, or `--seeds`)."""

from __future__ import annotations

import difflib
import json
from typing import Any

from common.config import check_fs_ratio
from common.errors import UserError, listing


def fail(where: str, msg: str) -> UserError:
    """The one-line error of a study file's mistake: `where` (the file) and what is wrong."""
    return UserError(f"{where}: {msg}")


def check_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str, what: str) -> None:
    """Refuse a key of `data` (`what`: the block, in words) that is not in `allowed`, naming
    the closest allowed key."""
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
            raise fail(where, f"unknown key {key!r} in {what}{hint}")


def _scalar(value: Any) -> str:
    """A value as `--set key=value` text that config.apply_override reads back as YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _flatten(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in mapping.items():
        if isinstance(v, dict) and v:
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={_scalar(v)}")
    return out


def parse_sets(value: Any, where: str) -> tuple[str, ...]:
    """`set:` as a mapping ({optimizer.lr: 0.05} or {optimizer: {lr: 0.05}}) or a list of
    "key=value" strings -> the `--set` items, in order."""
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(_flatten(value))
    if isinstance(value, list) and all(isinstance(s, str) and "=" in s for s in value):
        return tuple(s.strip() for s in value)
    raise fail(where, "`set` must be a mapping (key: value) or a list of 'key=value' strings")


def fs_choice(value: Any, allowed: tuple[str, ...], where: str) -> str | None:
    """An arm's `fs`, one of `allowed` (YAML's `off`, read as false, is "off"); None if unset."""
    if value is None:
        return None
    if value is False:  # YAML reads `off` as false
        value = "off"
    if value not in allowed:
        raise fail(where, f"fs {value!r} is unknown; use one of "
                   f"{listing(allowed, 'none (this stage takes no fs): drop it')}")
    return str(value)


def fs_ratio(value: Any, where: str) -> float | None:
    """An arm's `ratio`, checked as the CLIs check --ratio; None if unset."""
    if value is None:
        return None
    try:
        return check_fs_ratio(value)  # the CLIs' own rule and wording
    except UserError as e:
        raise fail(where, str(e)) from None


def opt_text(value: Any, key: str, where: str) -> str | None:
    """An optional text value (a number is taken as its text); None if unset."""
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise fail(where, f"{key} must be a string, got {value!r}")
    return str(value)


def as_mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    """`value` if it is a mapping, else one line naming `what` it should have been."""
    if not isinstance(value, dict):
        raise fail(where, f"{what} must be a mapping (key: value lines)")
    return value


def seed_list(value: Any, where: str) -> list[int]:
    """`seeds`: a non-empty list of distinct integers >= 0."""
    if not isinstance(value, list) or not value:
        raise fail(where, "`seeds` must be a non-empty list of integers, e.g. [0, 1, 2]")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        raise fail(where, f"seeds must be integers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise fail(where, f"seeds repeat: {value!r}")
    return list(value)


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2] (one line if malformed)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r} must be integers separated by commas, e.g. 0,1,2") from None
    return seed_list(seeds, "--seeds")
