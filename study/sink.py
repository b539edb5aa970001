"""Where a study's child process writes: its run folder's stdout.log, once the child has made
that folder; the last lines are kept for the study's one-line report of a failure."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from study import layout


class Sink:
    """Appends a child's output to RUN_DIR/stdout.log once the child has made that folder
    (its config.yaml exists); until then the lines wait in memory."""

    def __init__(self, run_dir: Path, ready: bool, pending: str) -> None:
        self.path = run_dir / layout.STDOUT
        self.run_dir, self.ready, self.pending = run_dir, ready, pending
        self.tail: deque[str] = deque(maxlen=20)

    def write(self, line: str) -> None:
        if line.strip():
            self.tail.append(line.rstrip())
        self.ready = self.ready or (self.run_dir / "config.yaml").is_file()
        self.pending += line
        if self.ready:
            with open(self.path, "a") as f:
                f.write(self.pending)
            self.pending = ""

    def close(self, fallback: Path) -> Path:
        """Write what is left; returns the log's path (`fallback` if the folder never came)."""
        path = self.path if self.run_dir.is_dir() else fallback
        if self.pending:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(self.pending)
        return path

    @property
    def last(self) -> str:
        return self.tail[-1] if self.tail else "(no output)"
