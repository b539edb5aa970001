"""Command-line conventions both pipelines share: the shorthand flags as config overrides,
and what --resume lets change."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from common.config_schema import RetrainConfig
from common.runlog import console_script
from common.schema import resumable_keys

#: Shorthand flag (argparse dest) -> config key, in both CLIs; each may add its own.
SHORTHANDS: dict[str, str] = {
    "epochs": "epochs", "batch_size": "batch_size", "seed": "seed", "fs": "fs.mode",
    "ratio": "fs.ratio", "device": "runtime.device", "threads": "runtime.threads",
    "data_root": "data.root", "workers": "data.workers", "tensorboard": "log.tensorboard",
}

#: Config keys --resume may change in both pipelines (the schema's `resumable` keys; the
#: search adds its own): where and how fast a run computes, never what (the worker count
#: included: augmentation is seeded per image, common.loader).
RESUMABLE: tuple[str, ...] = resumable_keys(RetrainConfig)


def flag_overrides(args: Any, shorthands: dict[str, str] = SHORTHANDS) -> list[str]:
    """The shorthand flags given as `key=value` overrides (applied after --set), and
    --no-download as data.download=false."""
    items = [f"{key}={getattr(args, flag)}" for flag, key in shorthands.items()
             if getattr(args, flag) is not None]
    if args.no_download:
        items.append("data.download=false")
    return items


def override_key(item: str) -> str:
    """The key of a `key=value` override."""
    return item.split("=", 1)[0].strip()


def fixed_on_resume(items: list[str], resumable: tuple[str, ...] = RESUMABLE) -> list[str]:
    """The keys of `items` (`key=value` overrides) that --resume may not change."""
    return [override_key(s) for s in items if not override_key(s).startswith(resumable)]


class Parser(argparse.ArgumentParser):
    """argparse with the project's error style: one line, `error: ...`, exit status 2 (the
    usage text stays behind --help). Run as a console script (dfsnet-search, ...), its usage
    and hints name that script rather than `prog`'s `python -m ...`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prog = console_script() or self.prog

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def ratio_arg(text: str) -> float:
    """--ratio's type: one number; a list (a slip for --ratios) gets a hint."""
    try:
        return float(text)
    except ValueError:
        if "," in text:
            raise argparse.ArgumentTypeError(
                f"one ratio, not a list ({text!r}); to search each op's ratio among several, "
                f"use --ratios {text}") from None
        raise argparse.ArgumentTypeError(f"a ratio is a number >= 1, not {text!r}") from None
