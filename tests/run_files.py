"""What a run directory holds beyond the files the project declares it writes."""

from __future__ import annotations

from pathlib import Path

from common.runlog import RUN_OUTPUTS


def run_files_outside_the_list(run: Path) -> list[str]:
    """Files in a run directory that `RUN_OUTPUTS` does not name: the real-run tests check
    that this is empty, so the list covers everything --overwrite may have to clear."""
    ours = {p for pattern in RUN_OUTPUTS for p in run.glob(pattern)}
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p not in ours)
