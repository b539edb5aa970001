"""One process per run directory: an OS file lock (flock) on RUN_DIR/.dfs-lock.

The lock is held on an open file, so the kernel drops it when its process ends, however it
ends (kill -9 included): there is never a stale lock to clean up by hand. The file itself
stays (removing it while another process waits on it would let two processes lock two
different files); it holds the holder's process id and command, for the refusal message.
Search, retrain and the study tool take it (common.runlog.make_run_dir and the resumes).
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
from pathlib import Path

from common.errors import UserError

LOCK_FILE = ".dfs-lock"


def _holder(path: Path) -> str:
    """'process PID (`command`)' as the holder wrote it, or 'another process'."""
    try:
        pid, _, command = path.read_text().partition("\n")
    except OSError:
        return "another process"
    pid = pid.strip()
    if not pid.isdigit():
        return "another process"
    command = command.strip()
    return f"process {pid}" + (f" (`{command[:120]}`)" if command else "")


class RunLock:
    """An exclusive, non-blocking lock on folder `folder` (it must exist), held until
    `release()` (or the end of a `with` block, or of the process). Refuses in one line that
    names the holder's process id when another process holds it."""

    def __init__(self, folder: str | Path, doing: str = "use it") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        # O_CREAT with the umask's mode: a file like any other the run writes.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{self.folder} is in use by {_holder(self.path)}; wait for it to "
                            f"finish or stop it, then {doing}") from None
        self.fd: int | None = fd
        try:  # who holds it, for the refusal's line; the lock itself is the flock
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n{shlex.join(sys.argv)}\n".encode())
        except OSError:  # e.g. a full disk: the lock holds all the same
            pass

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops the lock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_unlocked(folder: str | Path, doing: str = "use it") -> None:
    """Refuse (RunLock's one line) when another process holds `folder`'s lock, without
    keeping it: the CLIs ask before opening a dataset, so a busy run costs nothing. A folder
    without a lock file was never locked and is not touched."""
    if str(Path(folder).resolve()) in _HELD:  # this process holds it: flock would refuse us
        return
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 asks for all (no race)
        return
    if (Path(folder) / LOCK_FILE).is_file():
        RunLock(folder, doing).release()


#: The run directories this process holds, until the command ends (release_run_dirs).
_HELD: dict[str, RunLock] = {}


def hold_run_dir(folder: str | Path, doing: str = "use it") -> bool:
    """Lock `folder` for the rest of this command (a no-op when already held here). True
    where this process holds it; False on torchrun ranks other than 0, which write nothing,
    and so must not clean anything up either (rank 0 may yet be refused)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return False
    key = str(Path(folder).resolve())
    if key not in _HELD:
        _HELD[key] = RunLock(folder, doing)
    return True


def release_run_dirs() -> None:
    """Drop every lock `hold_run_dir` took (the CLIs call it when they end; a process that
    dies drops them anyway)."""
    while _HELD:
        _HELD.popitem()[1].release()


def drop_inherited_locks(_worker_id: int = 0) -> None:
    """A forked DataLoader worker's `worker_init_fn`: close the lock files it inherited. An
    flock belongs to the open file, which the fork shares, so without this a run killed with
    -9 stays locked until its workers notice and exit (seconds later), and `--resume` right
    away is refused. Closing the worker's copy does not unlock the parent's."""
    for lock in _HELD.values():
        if lock.fd is not None:
            os.close(lock.fd)
            lock.fd = None
