"""The sample outputs of README.md and docs/*.md, read so that tests can check them against
what the commands print today.

A sample is a ```text block whose line before is a marker `<!-- sample of: COMMAND -->`
naming the command that prints it (tests/test_doc_samples.py fails on a block without one,
and on a marker no test checks); its first line may echo the command (`$ COMMAND`). In a
sample, a line `...` stands for any number of output
lines (the middle of a long table); `matches` compares the rest line by line, exactly or with
the figures masked (`mask`: a run's losses, timings and genotype are the machine's).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The files whose samples are checked.
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
MARKER = re.compile(r"^<!-- sample of: (?P<command>.+?) -->$")
_FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_GENOTYPE = re.compile(r"Genotype\(.*\)")
#: Lines a run's sample leaves out: progress lines, and the thread governor's (it lowers the
#: thread count while other processes keep the cores busy; common.threads).
OMITTED = re.compile(r"^(epoch \d+/\d+ \[\d+/\d+\]|threads \d+ -> \d+ at )")


@dataclass(frozen=True)
class Sample:
    """One sample block: where it is, the command its marker names (None: no marker), and
    its lines."""

    path: Path
    line: int
    command: str | None
    lines: tuple[str, ...]

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def shown(self) -> tuple[str, ...]:
        """The output lines (without a first line `$ COMMAND`, the command echoed)."""
        if self.lines and self.lines[0] == f"$ {self.command}":
            return self.lines[1:]
        return self.lines


def samples(paths: tuple[Path, ...] = DOCS) -> list[Sample]:
    """Every ```text block of `paths`, with the command of its marker."""
    out = []
    for path in paths:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = _FENCE.match(lines[i])
            if fence is None:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if _FENCE.match(lines[j]))
            if fence["lang"] == "text":
                before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
                marker = MARKER.match(before.strip())
                out.append(Sample(path, i + 1, marker["command"] if marker else None,
                                  tuple(lines[i + 1:end])))
            i = end + 1
    return out


def sample_of(command: str) -> Sample:
    """The one sample whose marker names `command`."""
    found = [s for s in samples() if s.command == command]
    assert len(found) == 1, f"{len(found)} samples of {command!r} in README.md and docs/"
    return found[0]


def masked(line: str) -> str:
    """`line` with its figures as `#` and a genotype's op list as `Genotype(...)`."""
    return _NUMBER.sub("#", _GENOTYPE.sub("Genotype(...)", line))


def matches(sample: Sample, output: list[str], mask: bool = False) -> str | None:
    """None when `output` is what `sample` shows (`...` lines: any lines in between;
    `mask`: figures masked on both sides); else a diff for the failure message."""
    def norm(xs: list[str] | tuple[str, ...]) -> list[str]:
        return [masked(x) if mask and x != "..." else x for x in xs]

    want, got = norm(sample.shown), norm(output)
    parts = [r"(?:[^\n]*\n)*?" if x == "..." else re.escape(x) + r"\n" for x in want]
    if re.fullmatch("".join(parts), "".join(x + "\n" for x in got)):
        return None
    diff = "\n".join(difflib.unified_diff(want, got, f"{sample.where()} (sample)", "output",
                                          lineterm="", n=1))
    return f"the sample at {sample.where()} is not what `{sample.command}` prints:\n{diff}"
