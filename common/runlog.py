"""Run directories, the per-epoch JSONL log and the progress display."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from common.errors import Interrupted, UserError, from_interrupt, fs_error
from common.files import atomic_write_text
from common.runlock import LOCK_FILE, check_unlocked, hold_run_dir

#: Written into every run directory when it is created; it names the kind of run. Only a
#: folder holding it is a run that --overwrite may clear: file names alone (config.yaml,
#: log.jsonl, ...) are common enough that a user's own folder could carry them.
RUN_MARKER = ".dfs-run"

#: Everything this project writes inside a run directory (search, retrain, study), as glob
#: patterns relative to it. --overwrite removes what matches and keeps everything else; a
#: test runs a search and a retrain and checks that they write nothing outside this list.
RUN_OUTPUTS = (
    RUN_MARKER, "config.yaml", "log.jsonl", "genotype.json", "stdout.log",  # both; study
    "checkpoint.pt", "genotypes/epoch-*.json", "cells/*.gv", "cells/*.png",  # search
    "cells/*.svg", "cells/*.pdf", "plots/*.png",
    "latest.pt", "best.pt", "metrics.json", "model.pt", "model-wq.pt",  # retrain
    "model.onnx", "model-wq.onnx", "tensorboard/events.out.tfevents.*",
    ".*.tmp", "*/.*.tmp",  # an atomic write cut short (common.files)
    LOCK_FILE,  # common.runlock; never removed while a run may hold it
)
#: The temporary files of an atomic write (common.files) that a kill can leave behind.
TEMP_FILES = (".*.tmp", "*/.*.tmp")


def _has_files(out: Path) -> bool:
    """A folder with something in it besides the lock file (which a run leaves behind)."""
    return any(p.name != LOCK_FILE for p in out.iterdir())


def is_run_dir(path: str | Path) -> bool:
    """True for a folder this project created as a run directory (search or retrain): it
    holds the run marker."""
    return (Path(path) / RUN_MARKER).is_file()


def _not_a_run(out: Path) -> str:
    return (f"{out} is not empty and is not a run directory of this project (it has no "
            f"{RUN_MARKER} file); nothing in it was changed: choose another --out")


def check_run_dir(out: str | Path | None, overwrite: bool = False) -> None:
    """Raise the one-line error `make_run_dir` would raise for `out`, without creating it:
    CLIs call it before opening a dataset so a mistake costs nothing."""
    if out is None:
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose another --out")
    if not (out.is_dir() and _has_files(out)):
        return
    if not is_run_dir(out):
        raise UserError(_not_a_run(out))
    # A run still going in `out` is refused before anything else (its process id named).
    check_unlocked(out, "run again, or choose another --out")
    if not overwrite:
        raise UserError(
            f"run directory {out} already exists; pass --overwrite to replace its run files, "
            f"--resume {out} to continue it, or choose another --out"
        )


def clear_run_dir(out: str | Path) -> list[Path]:
    """Remove what this project wrote in run directory `out` (`RUN_OUTPUTS`) and return
    what was kept, relative to `out`. Refuses a folder without the run marker."""
    out = Path(out)
    if not is_run_dir(out):
        raise UserError(_not_a_run(out))
    ours = {p for pattern in RUN_OUTPUTS for p in out.glob(pattern)
            if (p.is_file() or p.is_symlink()) and p.name != LOCK_FILE}
    for p in sorted(ours, key=lambda q: str(q) != str(out / RUN_MARKER)):  # the marker last
        p.unlink()
    # Folders the project made are removed once empty; a folder holding a user's file stays.
    for d in sorted({p.parent for p in ours if p.parent != out}, reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()
    return sorted(p.relative_to(out) for p in out.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name != LOCK_FILE)


def remove_temp_files(run_dir: str | Path) -> int:
    """--resume, holding the run's lock: remove the temporary files an atomic write left when
    a run was killed mid-write (no process can be writing them now); returns how many."""
    run_dir = Path(run_dir)
    found = {p for pattern in TEMP_FILES for p in run_dir.glob(pattern) if p.is_file()}
    for p in found:
        p.unlink()
    return len(found)


def make_run_dir(out: str | Path | None, kind: str, tag: str, overwrite: bool = False) -> Path:
    """Create the run directory (default runs/<kind>-<tag>-<time>). An existing non-empty
    directory is only reused when `overwrite` is set and it holds the run marker; then only
    the files this project writes there are removed (`clear_run_dir`), and one line names
    what was kept."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{kind}-{tag}-{stamp}"
    out = Path(out)
    check_run_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    # Held until the command ends: a second run into `out` is refused (common.runlock).
    hold_run_dir(out, "run again, or choose another --out")
    if _has_files(out):
        check_run_dir(out, overwrite)  # again, under the lock: the folder may have changed
        kept = clear_run_dir(out)
        if kept:
            names = ", ".join(str(p) for p in kept[:5]) + (", ..." if len(kept) > 5 else "")
            say(f"--overwrite kept {len(kept)} file(s) in {out} that this project did not "
                f"write: {names}")
    (out / RUN_MARKER).write_text(f"{kind}\n")
    return out


#: Set by run_search.sh to the way it was called, so that config.yaml records that command.
LAUNCHER_ENV = "DFS_LAUNCHER"


#: The console scripts' common prefix (pyproject.toml's [project.scripts]: dfsnet-search, ...).
SCRIPT_PREFIX = "dfsnet-"


def console_script() -> str | None:
    """The name of the console script this process runs as (`dfsnet-search`, ...), or None
    under `python -m` (whose argv[0] is the module's file)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith(SCRIPT_PREFIX) else None


def command_line(module: str, argv: list[str] | None = None) -> list[str]:
    """The command that started this run, for config.yaml: `./run_search.sh ARGS` when the
    script launched it, `dfsnet-MODULE ARGS` from a console script, else `python -m MODULE
    ARGS` (argv None: this process's arguments)."""
    args = sys.argv[1:] if argv is None else list(argv)
    launcher = os.environ.get(LAUNCHER_ENV) or console_script()
    return [launcher, *args] if launcher else ["python", "-m", module, *args]


def start_again(run_dir: str | Path) -> str:
    """How to start a run again that has no checkpoint to resume from."""
    return f"start it again with the same options and --out {shlex.quote(str(run_dir))} --overwrite"


def kept_message(run_dir: str | Path, checkpoint: str, first: str = "the first epoch") -> str:
    """What a stopped run keeps and how to go on: the last epoch's checkpoint to resume, or
    (stopped during `first`) nothing yet."""
    run_dir = Path(run_dir)
    if (run_dir / checkpoint).is_file():
        return (f"{run_dir / checkpoint} (the last completed epoch) is kept: continue with "
                f"--resume {shlex.quote(str(run_dir))}")
    return (f"{run_dir} has no checkpoint yet, as it stopped during {first} (--resume cannot "
            f"continue it); {start_again(run_dir)}")


def interrupted_message(run_dir: str | Path, checkpoint: str) -> str:
    """What Ctrl-C leaves: the last epoch's checkpoint to resume, or (first epoch) nothing."""
    return f"interrupted; {kept_message(run_dir, checkpoint)}"


@contextlib.contextmanager
def interrupt_advice(run_dir: str | Path, checkpoint: str, enabled: bool = True) -> Iterator[None]:
    """Turn Ctrl-C inside the block into `Interrupted` with `interrupted_message`, and a
    file-system error (full disk, permission, read-only: common.errors.fs_error) into one
    line naming the file, what the run kept and how to continue (rank 0 only; the other
    ranks exit quietly)."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(run_dir, checkpoint) if enabled else "") from None
    except Exception as e:
        if from_interrupt(e):  # e.g. an import that Ctrl-C cut short (onnxruntime's)
            raise Interrupted(interrupted_message(run_dir, checkpoint) if enabled else "") from None
        found = fs_error(e)
        if found is None:
            raise
        if not enabled:
            raise SystemExit(2) from None
        raise UserError(f"cannot go on: {found[0]}; {found[1]}, then: "
                        f"{kept_message(run_dir, checkpoint)}") from None


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


class JsonlLog:
    """One JSON object per line (per epoch), flushed to disk at once.

    Appending is the one write of a run that is not atomic, so both ends guard it: a write
    that fails (a full disk) cuts the file back to where it was, and `read` skips a last
    line that a kill or a full disk left half-written, saying so in one line; `truncate`
    (on resume) then rewrites the log without it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        data = memoryview((json.dumps(_jsonable(record)) + "\n").encode())
        # Unbuffered, so that a failed write leaves nothing queued for close() to retry.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            except OSError as e:
                with contextlib.suppress(OSError):  # best effort: the disk may refuse this too
                    os.ftruncate(fd, size)
                if e.filename is None:
                    e.filename = str(self.path)
                raise
        finally:
            os.close(fd)

    def read(self, quiet: bool = False) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = [line for line in self.path.read_text(errors="replace").splitlines() if line.strip()]
        records = []
        for n, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if n < len(lines):  # not an interrupted append: the file was changed by hand
                    raise UserError(f"{self.path} line {n} is not JSON (edited by hand?); restore "
                                    "the line or remove it, then run again") from None
                say(f"note: the last line of {self.path} was cut short (a kill or a full disk "
                    "during its write); it is ignored and its epoch runs again", not quiet)
        return records

    def truncate(self, epochs: int) -> None:
        """Keep only the first `epochs` records: on resume, epochs logged after the checkpoint
        was written are run again and must not appear twice (nor a half-written line)."""
        keep = [r for r in self.read() if r.get("epoch", 0) < epochs]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))


class Progress:
    """Batches of one epoch with running figures: a tqdm bar on a terminal, plain lines
    (every `every` batches and at the end) when the output is a file or a pipe."""

    def __init__(
        self, iterable: Iterable, total: int, desc: str, enabled: bool = True,
        every: int | None = None,
    ) -> None:
        self.iterable, self.total, self.desc = iterable, total, desc
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every = every or max(1, total // 5)
        self.figures: dict[str, str] = {}
        self.bar = None
        if enabled and self.tty:
            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
        self.start = time.perf_counter()
        self.count = 0

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.count += 1
            if self.bar is not None:
                self.bar.update(1)
            elif self.enabled and (self.count % self.every == 0 or self.count == self.total):
                line = " ".join(f"{k} {v}" for k, v in self.figures.items())
                print(f"{self.desc} [{self.count}/{self.total}] {line}", flush=True)
        if self.bar is not None:
            self.bar.close()

    def update(self, **figures: Any) -> None:
        self.figures = {
            k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in figures.items()
        }
        if self.bar is not None:
            self.bar.set_postfix(self.figures, refresh=False)


def say(msg: str, enabled: bool = True) -> None:
    """A line for the user (only rank 0 talks in a distributed run)."""
    if enabled:
        print(msg, flush=True)
