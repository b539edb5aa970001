"""One arm x seed of a study: its genotype, then each of its stages (search, retrain) as a
subprocess, each skipped, resumed or restarted from what its folder holds.

The same `Task` runs in the study's own process (study.runner's local launcher, several at a
time on threads) and inside a SLURM job (study.slurm: the task is pickled, and its
`__call__` runs it on the node and returns its `Outcome`), so both launchers apply the same
rules: a finished run (metrics.json; for a search, its last epoch logged) is skipped, an
interrupted one continues with `--resume` from its checkpoint, and one that stopped before
its first checkpoint is started again (`--overwrite` semantics: only in a folder
`common.runlog.is_run_dir` recognises, and only the files the project wrote are removed).
A run's output is appended to its folder's stdout.log as it comes.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.runlog import clear_run_dir, is_run_dir
from study import layout, sources
from study.child import PARENT_ENV
from study.commands import retrain_argv, search_argv
from study.sink import Sink
from study.spec import Arm

ROOT = Path(__file__).resolve().parents[1]
#: Stage -> module run as `python -m MODULE` (tests swap in stand-ins).
MODULES = {"retrain": "retrain", "search": "search"}


@dataclass
class Outcome:
    """What became of one arm x seed: skipped (finished earlier), done, failed or interrupted;
    `lines`: what the task said (a SLURM job's lines, printed by the study when it ends)."""

    arm: str
    seed: int
    status: str
    figures: dict[str, Any] | None = None
    message: str = ""
    lines: list[str] = field(default_factory=list)


@dataclass
class Settings:
    """How to run: output folder, dataset argument, parallel jobs and threads per run."""

    out: Path
    dataset: str
    jobs: int = 1
    threads: int = 1
    python: list[str] = field(default_factory=lambda: [sys.executable])
    #: The module run for each stage.
    modules: dict[str, str] = field(default_factory=lambda: dict(MODULES))


#: Exit statuses of a run that was told to stop: killed by SIGINT or SIGTERM, or exiting
#: 130 after a KeyboardInterrupt (common.errors.cli_entry).
STOPPED = (-signal.SIGINT, -signal.SIGTERM, 130)


class Control:
    """What the tasks running in one process share: where their lines go, a stop flag, and
    their live subprocesses (so that an interrupt reaches them)."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen] = set()
        self.echo = echo or (lambda msg: print(msg, flush=True))

    def say(self, msg: str) -> None:
        with self.lock:
            self.echo(msg)

    def interrupt(self) -> None:
        """Start nothing more and ask the running runs to stop (their checkpoints stay)."""
        self.stop.set()
        with self.lock:
            procs = list(self.procs)
        deadline = time.monotonic() + 2.0  # after Ctrl-C they stop by themselves (same group)
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGINT)


@dataclass
class Task:
    """One arm x seed of study `study`: picklable, so that a SLURM job can run it."""

    study: str
    settings: Settings
    arm: Arm
    seed: int

    @property
    def key(self) -> str:
        """'<arm>/seed-<s>': the task's name in records (study.slurm)."""
        return f"{self.arm.name}/seed-{self.seed}"

    def stages(self) -> list[tuple[str, list[str], Path]]:
        """(module, argv, run dir) of each stage, as started fresh."""
        s, arm, seed = self.settings, self.arm, self.seed
        out, t = s.out, str(s.threads)
        stages = []
        genotype = None
        if arm.search is not None:
            sdir = layout.search_dir(out, arm.name, seed)
            argv = search_argv(arm, s.dataset) + ["--seed", str(seed), "--threads", t,
                                                  "--out", str(sdir)]
            stages.append(("search", argv + _workers("search"), sdir))
            genotype = str((sdir / "genotype.json").resolve())
        elif arm.source is not None and arm.source.kind in ("random", "fit"):
            genotype = str(sources.genotype_path(out, arm.name, seed).resolve())
        rdir = layout.run_dir(out, arm.name, seed)
        argv = retrain_argv(arm, s.dataset, genotype) + ["--seed", str(seed), "--threads", t,
                                                         "--out", str(rdir)]
        stages.append(("retrain", argv + _workers("retrain"), rdir))
        return stages

    def finished(self) -> dict[str, Any] | None:
        """The figures of the task's retrain when it finished earlier, else None."""
        rdir = layout.run_dir(self.settings.out, self.arm.name, self.seed)
        if layout.retrain_state(rdir) != layout.FINISHED:
            return None
        return layout.read_figures(rdir)

    # --- inside a SLURM job (study.slurm) ----------------------------------------------------
    def __call__(self) -> Outcome:
        """Run the task in this process (a job on a node); its lines go to the job's log and
        come back in the Outcome, for the study to print."""
        lines: list[str] = []

        def echo(msg: str) -> None:
            lines.append(msg)
            print(msg, flush=True)

        outcome = self.run(Control(echo))
        outcome.lines = lines
        return outcome

    def checkpoint(self) -> Any:
        """submitit calls this when the job is preempted or reaches its time limit: the job is
        requeued with this same task, which resumes its run from the run's checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)

    # --- the task itself -------------------------------------------------------------------
    def run(self, ctl: Control, tag: str = "") -> Outcome:
        """Prepare the genotype, then run each stage that is not finished."""
        arm, seed, out = self.arm, self.seed, self.settings.out
        label = f"{tag} {arm.name} seed {seed}".strip()
        stages = self.stages()
        rdir, took = stages[-1][2], "0 s"
        fig = self.finished()
        if fig is not None:
            ctl.say(f"{label}: finished earlier: {layout.short(fig)}")
            return Outcome(arm.name, seed, "skipped", fig)
        try:  # a random or fit arm's genotype, drawn once per seed (study.sources)
            for line in sources.prepare(arm, seed, out, self.settings.dataset):
                ctl.say(f"{label}: {line}")
        except (UserError, ValueError, OSError) as e:  # bad genotype file or counting: this run fails
            ctl.say(f"{label}: FAILED to make its genotype: {e}")
            return Outcome(arm.name, seed, "failed", message=str(e))
        for module, argv, path in stages:
            search = module == "search"
            state = (layout.search_state if search else layout.retrain_state)(path)
            if state == layout.FINISHED:
                continue
            if ctl.stop.is_set():
                return Outcome(arm.name, seed, "interrupted")
            if state == layout.RESUME:
                argv = ["--resume", str(path), "--threads", str(self.settings.threads)]
                argv += _workers("search") if search else []  # as started (see _workers)
            elif state == layout.RESTART:
                argv = argv + ["--overwrite"]
            what = f"{label}{' search' if search else ''}"
            ctl.say(f"{what}: {_VERB[state]} ({path})")
            t0 = time.perf_counter()
            rc, last, log = self._launch(ctl, module, argv, path, state,
                                         layout.failed_log(out, arm.name, seed, search))
            took = _took(time.perf_counter() - t0)
            if rc != 0:
                # A run stopped by Ctrl-C or SIGTERM (a kill, a scheduler's notice) keeps its
                # checkpoint: it was told to stop, it did not fail, and nothing more starts.
                if rc in STOPPED:
                    ctl.stop.set()
                status = "interrupted" if ctl.stop.is_set() else "failed"
                ctl.say(f"{what}: {status.upper()} (exit {rc}) after {took}: {last}; log {log}")
                return Outcome(arm.name, seed, status, message=last)
            if search:
                ctl.say(f"{what}: done in {took}: {_search_figure(path)}")
        fig = layout.read_figures(rdir)
        if fig is None:
            ctl.say(f"{label}: FAILED: the run ended without a readable metrics.json; log "
                    f"{rdir / layout.STDOUT}")
            return Outcome(arm.name, seed, "failed", message="no metrics.json")
        ctl.say(f"{label}: done in {took}: {layout.short(fig)}")
        return Outcome(arm.name, seed, "done", fig)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
        env["OMP_NUM_THREADS"] = str(self.settings.threads)
        env["PYTHONUNBUFFERED"] = "1"
        env[PARENT_ENV] = str(os.getpid())
        if self.settings.jobs > 1:  # idle OpenMP threads sleep instead of spinning on shared cores
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return env

    def _launch(self, ctl: Control, stage: str, argv: list[str], path: Path, state: str,
                fallback: Path) -> tuple[int, str, Path]:
        """Run one stage to its end; (exit status, last output line, log path)."""
        pending = ""
        if state == layout.RESTART:
            if not is_run_dir(path):
                return 1, f"{path} exists and is not a run directory; refusing to replace it", path
            old = path / layout.STDOUT
            pending = old.read_text() if old.is_file() else ""
            clear_run_dir(path)  # what --overwrite does, but keeping the earlier output
        module = self.settings.modules[stage]
        shown = shlex.join(["python", "-m", stage, *argv])
        pending += f"=== {datetime.now():%Y-%m-%d %H:%M:%S} study {self.study}: {shown}\n"
        sink = Sink(path, ready=state == layout.RESUME, pending=pending)
        cmd = [*self.settings.python, "-m", "study.child", module, *argv]
        with ctl.lock:
            if ctl.stop.is_set():
                return 130, "interrupted before it started", path
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self._env(), text=True,
                                    bufsize=1, errors="replace")
            ctl.procs.add(proc)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sink.write(line)
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with ctl.lock:
                ctl.procs.discard(proc)
        return rc, sink.last, sink.close(fallback)


def _workers(module: str) -> list[str]:
    # Every run loads data in its own process, whatever --jobs: parallel runs' workers would
    # oversubscribe the cores (the figures do not depend on the worker count: augmentation
    # is seeded per image, common.loader). The thread count stays as given: a run's figures
    # depend on it, and a study's must not depend on what else ran beside its runs.
    fixed = ["--set", "runtime.adapt_threads=false"]
    return (["--workers", "0"] if module == "search" else ["--set", "data.workers=0"]) + fixed


_VERB = {layout.NEW: "start", layout.RESUME: "resume from its checkpoint",
         layout.RESTART: "restart (it stopped before its first checkpoint)"}


def _took(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _search_figure(path: Path) -> str:
    log = layout.read_log(path)
    if not log:
        return f"genotype {path / 'genotype.json'}"
    return f"valid acc {log[-1].get('valid_acc', float('nan')):.2f}%, genotype {path / 'genotype.json'}"
