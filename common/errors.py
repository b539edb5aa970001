"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

import errno
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

    def __init__(self, pipeline: str, epoch: int, step: int | None, what: str, advice: str,
                 epochs: int | None = None) -> None:
        # `epoch` and `step` count from 0, as the loops do; the console counts from 1.
        where = (f"epoch {epoch + 1}" + (f"/{epochs}" if epochs else "")
                 + (f", batch {step + 1}" if step is not None else ""))
        super().__init__(f"the {pipeline} diverged at {where} ({what}); nothing of it was saved "
                         f"(the run directory keeps its last good checkpoint, if any): {advice}")


class Interrupted(Exception):
    """Ctrl-C during a run; the message says what the run directory holds and how to go on
    (empty on ranks other than 0, which stay quiet)."""


#: File-system errors a user can meet and fix (errno -> what to do), reported in one line.
FS_ADVICE = {
    errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some space (disk quota)",
    errno.EFBIG: "free some space or use another file system",
    errno.EACCES: "check the permissions", errno.EPERM: "check the permissions",
    errno.EROFS: "the file system is read-only: use a writable one",
    errno.EIO: "check the disk", errno.ENOENT: "check the path", errno.ENOTDIR: "check the path",
}


def fs_error(e: BaseException) -> tuple[str, str] | None:
    """(what failed, naming the path when known; what to do) for a file-system OSError (full
    disk, permission, read-only, ...); None for anything else (e.g. PIL's errors, which
    carry no errno)."""
    if not isinstance(e, OSError) or e.errno not in FS_ADVICE:
        return None
    reason = e.strerror or os.strerror(e.errno)
    return (f"{e.filename}: {reason}" if e.filename else reason), FS_ADVICE[e.errno]


def from_interrupt(e: BaseException) -> bool:
    """An error raised because of Ctrl-C: a C extension whose import was interrupted (e.g.
    onnxruntime) reports `ImportError: initialization failed` caused by the KeyboardInterrupt."""
    seen = 0
    cause: BaseException | None = e
    while cause is not None and seen < 20:
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


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
        except Exception as e:
            # Before a run directory exists (a run's own are reported by common.runlog
            # .interrupt_advice, with what it kept).
            if from_interrupt(e):
                print("interrupted", file=sys.stderr)
                raise SystemExit(130) from None
            found = fs_error(e)
            if found is None:
                raise
            print(f"error: {found[0]}; {found[1]}, then run the command again", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


def quiet_broken_pipe() -> None:
    """The reader of stdout went away (`... | head`): point stdout at /dev/null so that
    Python's exit-time flush does not complain, and let the caller exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
