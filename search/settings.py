"""Checks of a resolved `search` config: every bad value is one line naming the key, the
value and what is allowed, before anything runs."""

from __future__ import annotations

from typing import Any

from common.config import check_fs_ratio
from common.errors import UserError

CHOICES = {
    "fs.mode": ("off", "fs", "dfs"),
    "fs.offsets_with": ("arch", "weights"),
    "fs.temperature.schedule": ("constant", "linear", "cosine"),
    "arch.order": ("first", "second"),
}


def _get(cfg: dict[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"config key {key!r} is missing; start from a preset in configs/")
        node = node[part]
    return node


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = value


def _number(cfg, key: str, kind: type, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, optional: bool = False) -> None:
    v = _get(cfg, key)
    if v is None and optional:
        return
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    if kind is int:
        ok = ok and float(v).is_integer()
    if ok:
        v = kind(v)
        ok = (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
    if not ok:
        what = "an integer" if kind is int else "a number"
        bound = "" if lo is None else f" {'>' if lo_open else '>='} {lo:g}"
        bound += "" if hi is None else f" and <= {hi:g}"
        none = " (or null)" if optional else ""
        raise UserError(f"config {key}={v!r} is invalid: it must be {what}{bound}{none}")
    _set(cfg, key, v)


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate (and normalise number types of) a `search` config in place."""
    # YAML reads a bare `off` as false; in fs.mode it can only mean the text.
    if _get(cfg, "fs.mode") is False:
        _set(cfg, "fs.mode", "off")
    for key, allowed in CHOICES.items():
        v = _get(cfg, key)
        if v not in allowed:
            raise UserError(f"config {key}={v!r} is invalid: choose one of {', '.join(allowed)}")
    for key in ("epochs", "batch_size", "layers"):
        _number(cfg, key, int, 1)
    _number(cfg, "seed", int, 0)
    _number(cfg, "init_channels", int, 2)
    if _get(cfg, "init_channels") % 2:
        raise UserError(f"config init_channels={_get(cfg, 'init_channels')} is invalid: it must be "
                        "even (the reduction cells halve it in FactorizedReduce)")
    _number(cfg, "train_portion", float, 0.0, 1.0, lo_open=True)
    if _get(cfg, "train_portion") >= 1.0:
        raise UserError("config train_portion=1 leaves no images for the architecture; use < 1")
    _set(cfg, "fs.ratio", check_fs_ratio(_get(cfg, "fs.ratio")))  # worded as retrain words it
    _number(cfg, "fs.num_offsets", int, 1)
    for key in ("fs.temperature.start", "fs.temperature.end"):
        _number(cfg, key, float, 0.0, lo_open=True)
    for key in ("weights.lr", "weights.lr_min", "weights.momentum", "weights.weight_decay",
                "arch.lr", "arch.weight_decay"):
        _number(cfg, key, float, 0.0)
    _number(cfg, "weights.grad_clip", float, 0.0, lo_open=True)
    _number(cfg, "arch.fd_eps", float, 0.0, lo_open=True)
    _number(cfg, "arch.warmup_epochs", int, 0)
    betas = _get(cfg, "arch.betas")
    if not (isinstance(betas, list) and len(betas) == 2 and all(
            isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise UserError(f"config arch.betas={betas!r} is invalid: give two numbers in [0, 1), "
                        "e.g. --set arch.betas=[0.5,0.999]")
    _number(cfg, "data.workers", int, 0, optional=True)  # null: chosen (common.cpu)
    _number(cfg, "data.max_images", int, 1, optional=True)
    _number(cfg, "data.input_size", int, 8, optional=True)
    _number(cfg, "runtime.threads", int, 1, optional=True)
    _number(cfg, "runtime.draw_every", int, 0)
    for key in ("data.download", "runtime.amp", "runtime.channels_last", "runtime.plot"):
        if not isinstance(_get(cfg, key), bool):
            raise UserError(f"config {key}={_get(cfg, key)!r} is invalid: use true or false")
    return cfg
