"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


class UserError(Exception):
    """A problem with the user's input or environment; its message is one line that says what
    was wrong and what to do."""


def listing(items: Iterable[object], empty: str) -> str:
    """The items joined by ', ' for a message, or `empty` (what to do instead) when there are
    none: a message never offers an empty list of choices."""
    names = [str(i) for i in items]
    return ", ".join(names) if names else empty


class Diverged(UserError):
    """A loss or a parameter became NaN/inf; the run stops before saving that state, so its
    last checkpoint is the last good one."""

    def __init__(self, pipeline: str, epoch: int, step: int | None, what: str, advice: str) -> None:
        where = f"epoch {epoch}" + (f", batch {step}" if step is not None else "")
        super().__init__(f"the {pipeline} diverged at {where} ({what}); nothing of it was saved "
                         f"(the run directory keeps its last good checkpoint, if any): {advice}")


class Interrupted(Exception):
    """Ctrl-C during a run; the message says what the run directory holds and how to go on
    (empty on ranks other than 0, which stay quiet)."""


def cli_entry(fn: F) -> F:
    """Wrap a CLI main: a UserError (or a known input error) prints one line on stderr and
    exits with status 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except Interrupted as e:
            if str(e):
                print(e, file=sys.stderr)
            raise SystemExit(130) from None
        except KeyboardInterrupt:  # before a run directory exists: nothing to keep or resume
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except BrokenPipeError:
            quiet_broken_pipe()
            raise SystemExit(0) from None

    return wrapper  # type: ignore[return-value]


def quiet_broken_pipe() -> None:
    """The reader of stdout went away (`... | head`): point stdout at /dev/null so that
    Python's exit-time flush does not complain, and let the caller exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
