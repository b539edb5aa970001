"""Checks of a resolved `search` config: every bad value is one line naming the key, the
value and what is allowed, before anything runs."""

from __future__ import annotations

from typing import Any

from common.checks import (
    check_bool,
    check_choice,
    check_count,
    check_even_channels,
    check_number,
    get_key,
    normalise_fs_mode,
    set_key,
)
from common.config import check_fs_ratio
from common.errors import UserError
from search.algorithms import ALGORITHMS, make_algorithm

CHOICES = {
    "fs.mode": ("off", "fs", "dfs"),
    "fs.offsets_with": ("arch", "weights"),
    "fs.temperature.schedule": ("constant", "linear", "cosine"),
    "arch.order": ("first", "second"),
    "budget.mode": ("hinge", "target"),
}


def _check_ratios(cfg: dict[str, Any]) -> None:
    """fs.ratios: null or a list of distinct ratios >= 1 (at least two), needing FS layers."""
    ratios = get_key(cfg, "fs.ratios")
    if ratios is None:
        return
    if not isinstance(ratios, list) or len(ratios) < 2:
        raise UserError(f"config fs.ratios={ratios!r} is invalid: give two or more ratios, "
                        "e.g. --set fs.ratios=[1,2,4,8]")
    bad = [r for r in ratios if isinstance(r, bool) or not isinstance(r, int | float)
           or not 1.0 <= r < float("inf")]
    if bad:
        raise UserError(f"config fs.ratios={ratios!r} is invalid: {bad[0]!r} is not a ratio; "
                        "each must be a number >= 1, e.g. --ratios 1,2,4,8")
    checked = sorted(float(r) for r in ratios)
    if len(set(checked)) != len(checked):
        raise UserError(f"config fs.ratios={ratios!r} repeats a ratio; list each once")
    if get_key(cfg, "fs.mode") == "off":
        raise UserError("config fs.ratios needs FS layers, but fs.mode is off; use --fs fs or "
                        "--fs dfs, or drop fs.ratios")
    set_key(cfg, "fs.ratios", checked)


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate (and normalise number types of) a `search` config in place."""
    normalise_fs_mode(cfg)
    for key, allowed in CHOICES.items():
        check_choice(cfg, key, allowed)
    check_choice(cfg, "algorithm", tuple(ALGORITHMS))
    make_algorithm(cfg)  # the algorithm's own limits (GDAS: first order only)
    check_number(cfg, "partial_channels", int, 1)
    for key in ("gdas.tau_start", "gdas.tau_end"):
        check_number(cfg, key, float, 0.0, lo_open=True)
    for key in ("epochs", "batch_size", "layers"):
        check_number(cfg, key, int, 1)
    check_number(cfg, "seed", int, 0)
    check_number(cfg, "init_channels", int, 2)
    check_even_channels(cfg)
    check_number(cfg, "train_portion", float, 0.0, 1.0, lo_open=True)
    if get_key(cfg, "train_portion") >= 1.0:
        raise UserError("config train_portion=1 leaves no images for the architecture; use < 1")
    set_key(cfg, "fs.ratio", check_fs_ratio(get_key(cfg, "fs.ratio")))  # worded as retrain words it
    check_number(cfg, "fs.num_offsets", int, 1)
    check_number(cfg, "fs.offset_lr_scale", float, 0.0, lo_open=True)
    _check_ratios(cfg)
    check_count(cfg, "budget.params")
    for key in ("budget.init_channels", "budget.layers"):
        check_number(cfg, key, int, 1)
    if get_key(cfg, "budget.init_channels") % 2:
        raise UserError(f"config budget.init_channels={get_key(cfg, 'budget.init_channels')} "
                        "is invalid: it must be even, as the network's width")
    check_number(cfg, "budget.weight", float, 0.0)
    check_number(cfg, "budget.aim", float, 0.0, 1.0, lo_open=True)
    check_number(cfg, "budget.warmup_epochs", int, 0)
    check_number(cfg, "arch.ratio_lr", float, 0.0, lo_open=True, optional=True)
    check_number(cfg, "arch.beta_decay", float, 0.0, optional=True)
    check_number(cfg, "arch.max_skip", int, 0, optional=True)
    check_number(cfg, "arch.max_free", int, 0, optional=True)
    for key in ("fs.temperature.start", "fs.temperature.end"):
        check_number(cfg, key, float, 0.0, lo_open=True)
    for key in ("weights.lr", "weights.lr_min", "weights.momentum", "weights.weight_decay",
                "arch.lr", "arch.weight_decay"):
        check_number(cfg, key, float, 0.0)
    check_number(cfg, "weights.grad_clip", float, 0.0, lo_open=True)
    check_number(cfg, "arch.fd_eps", float, 0.0, lo_open=True)
    check_number(cfg, "arch.warmup_epochs", int, 0)
    betas = get_key(cfg, "arch.betas")
    if not (isinstance(betas, list) and len(betas) == 2 and all(
            isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise UserError(f"config arch.betas={betas!r} is invalid: give two numbers in [0, 1), "
                        "e.g. --set arch.betas=[0.5,0.999]")
    check_number(cfg, "data.workers", int, 0, optional=True)  # null: chosen (common.cpu)
    check_number(cfg, "data.max_images", int, 1, optional=True)
    check_number(cfg, "data.input_size", int, 8, optional=True)
    check_number(cfg, "runtime.threads", int, 1, optional=True)
    check_number(cfg, "runtime.draw_every", int, 0)
    for key in ("data.download", "runtime.amp", "runtime.channels_last", "runtime.plot",
                "runtime.deterministic", "runtime.adapt_threads"):
        check_bool(cfg, key)
    return cfg
