"""The commands of an arm: `python -m retrain` / `python -m search` options from a study's
arm (seed, output folder and threads are added per run by study.runner)."""

from __future__ import annotations

from pathlib import Path

from common.shapes import KNOWN as NAMED_DATASETS
from study.sources import path_arg
from study.spec import Arm


def dataset_arg(dataset: str) -> str:
    """Named datasets as they are (lower case); a folder as an absolute path, even one that
    does not exist yet (the caller says so in one line)."""
    if dataset.lower() in NAMED_DATASETS:
        return dataset.lower()
    return str(Path(dataset).expanduser().resolve())


def retrain_argv(arm: Arm, dataset: str, genotype: str | None = None) -> list[str]:
    """`python -m retrain` options of an arm (seed, out and threads are added per run)."""
    r = arm.retrain
    network = (["--model", r.model] if r.model and not genotype
               else ["--genotype", genotype or path_arg(r.genotype or "")])
    argv = [*network, "--dataset", dataset]
    argv += ["--preset", path_arg(r.preset)] if r.preset else []
    argv += ["--fs", r.fs] if r.fs else []
    argv += ["--ratio", f"{r.ratio:g}"] if r.ratio is not None else []
    for item in r.sets:
        argv += ["--set", item]
    return argv


def search_argv(arm: Arm, dataset: str) -> list[str]:
    """`python -m search` options of an arm with a search (seed, out, threads per run)."""
    s = arm.search
    assert s is not None
    argv = [dataset]
    argv += ["--preset", path_arg(s.preset)] if s.preset else []
    argv += ["--fs", s.fs] if s.fs else []
    argv += ["--ratio", f"{s.ratio:g}"] if s.ratio is not None else []
    argv += ["--order", s.order] if s.order else []
    argv += ["--algo", s.algo] if s.algo else []
    for item in s.sets:
        argv += ["--set", item]
    return argv
