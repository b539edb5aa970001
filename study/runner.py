"""Runs every arm x seed of a study as ordinary run directories, through a launcher.

A study is a list of `study.task.Task`s (one per arm x seed, seed-major); a launcher runs
them and returns their `Outcome`s. `LocalLauncher` (the default) runs them in this process,
`jobs` at a time, each stage in its own subprocess, so a crash of one run never stops the
study and each folder can be inspected, evaluated or resumed alone. `study.slurm`'s
launcher hands each task to SLURM as one job, where the same `Task` code runs: the rules
for skipping, resuming and restarting a run are the task's, whatever the launcher.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from study.spec import Arm, Study
from study.task import MODULES, Control, Outcome, Settings, Task

__all__ = ["MODULES", "Launcher", "LocalLauncher", "Outcome", "Runner", "Settings", "Task"]


class Launcher(Protocol):
    """Runs tasks to their end and returns their outcomes, in the tasks' order."""

    def run(self, tasks: list[Task]) -> list[Outcome]: ...


class LocalLauncher:
    """Runs the tasks in this process, `jobs` at a time (threads, each waiting on its run's
    subprocess); Ctrl-C stops the runs, which keep their checkpoints."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = jobs
        self.control = Control()

    def run(self, tasks: list[Task]) -> list[Outcome]:
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [pool.submit(t.run, self.control, f"[{k}/{len(tasks)}]")
                       for k, t in enumerate(tasks, 1)]
            try:
                return [f.result() for f in futures]
            except KeyboardInterrupt:
                self.control.interrupt()
                for f in futures:
                    f.cancel()
                raise


class Runner:
    """Executes a study's runs with a launcher (local, `settings.jobs` at a time, by default)."""

    def __init__(self, study: Study, settings: Settings, seeds: list[int],
                 launcher: Launcher | None = None) -> None:
        self.study, self.s, self.seeds = study, settings, seeds
        self.launcher = launcher or LocalLauncher(settings.jobs)

    def tasks(self) -> list[tuple[Arm, int]]:
        """Seed-major order: every arm of seed 0 first, so a study stopped early is balanced;
        an arm with its own seeds runs those only; a reused arm (study.reuse) none."""
        return [(arm, seed) for seed in self.seeds for arm in self.study.arms
                if arm.reuse is None and (arm.seeds is None or seed in arm.seeds)]

    def task(self, arm: Arm, seed: int) -> Task:
        return Task(self.study.name, self.s, arm, seed)

    def commands(self, arm: Arm, seed: int) -> list[tuple[str, list[str], Path]]:
        """(module, argv, run dir) of each stage of one arm x seed, as started fresh."""
        return self.task(arm, seed).stages()

    def run(self) -> list[Outcome]:
        return self.launcher.run([self.task(arm, seed) for arm, seed in self.tasks()])
