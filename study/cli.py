"""`python -m study`: run a multi-seed study of retrain (and search) arms, and report it.

    python -m study run STUDY.yaml [--jobs N] [--threads T] [--out DIR] [--seeds 0,1,2]
                                   [--arms A,B] [--dry-run] [--launcher local|slurm]
    python -m study report DIR
    python -m study cancel STUDY.yaml|DIR      # the SLURM jobs of `run --launcher slurm`

`run` checks the whole study first (file, config keys of every arm, genotypes, dataset, the
output folder), then runs every arm x seed that is not finished (see study.runner), then
writes the report (see study.report). Run it again after a kill, or with more seeds, and
only what is missing runs; `--arms` runs only some arms now (e.g. more seeds for one arm).
`--launcher slurm` hands each run to SLURM as one job (the study's `slurm:` block; see
study.slurm and docs/cluster.md).
Exit status: 0 when every run finished, 1 when a run failed,
2 for a mistake in the input (one line), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import signal
import sys
from pathlib import Path

from common.cli_flags import Parser
from common.config import save_config
from common.cpu import available_cores
from common.errors import UserError, cli_entry, listing
from common.runlock import RunLock
from study import layout, reuse
from study.commands import NAMED_DATASETS, dataset_arg
from study.fields import parse_seeds
from study.record import make_record, preflight
from study.sources import size_narrow_arms
from study.spec import Study, load_study


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m study", description="Multi-seed studies: run "
                                "arms x seeds as ordinary run directories and report mean, "
                                "spread, confidence intervals and Welch tests.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or continue) a study, then report it")
    r.add_argument("study", help="study YAML file (schema: see study/spec.py or the README)")
    r.add_argument("--jobs", type=int, help="runs at a time (default 1; with --launcher slurm: "
                   "jobs at a time, default the slurm block's max_jobs)")
    r.add_argument("--threads", type=int, help="torch threads per run (default: the study's "
                   "`threads`, else CPUs / jobs; never more than CPUs / jobs; with --launcher "
                   "slurm: else the job's cpus_per_task)")
    r.add_argument("--out", help="output folder (default: the study's `out`)")
    r.add_argument("--seeds", help="seeds to run instead of the study's, e.g. 0,1,2,3")
    r.add_argument("--arms", help="run only these arms now, e.g. dfs-r2,fs-r2 (the others keep "
                   "their runs and stay in the report)")
    r.add_argument("--dry-run", action="store_true", help="print each run's state and command, run nothing")
    r.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: every run on this machine (default); slurm: one SLURM job per "
                   "run, with the study's `slurm:` options (docs/cluster.md)")
    rep = sub.add_parser("report", help="rebuild study.json, study.md and the plot of a study folder")
    rep.add_argument("dir", help="a study's output folder (or a folder holding its study.json)")
    can = sub.add_parser("cancel", help="cancel the SLURM jobs that `run --launcher slurm` left "
                         "running (their runs keep their checkpoints)")
    can.add_argument("dir", help="the study file or its output folder")
    return p


def split_threads(jobs: int, threads: int | None, cpus: int) -> tuple[int, str | None]:
    """Threads per run so that jobs x threads <= cpus; and a note when `threads` was lowered."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if jobs > cpus:
        raise UserError(f"--jobs {jobs} is more than the {cpus} CPU(s) this process may use; "
                        f"use --jobs {cpus} or fewer")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    per = cpus // jobs
    if threads is None:
        return per, None
    if threads > per:
        return per, (f"note: {threads} threads x {jobs} job(s) would oversubscribe {cpus} CPU(s); "
                     f"using {per} thread(s) per run")
    return threads, None


def _chosen_arms(study: Study, names: str | None) -> Study:
    """The study with only the arms `--arms` names (all without it); the record written to
    OUT keeps every arm, so the report still shows the others."""
    if not names:
        return study
    known = [a.name for a in study.arms]
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    for n in wanted:
        if n not in known:
            near = difflib.get_close_matches(n, known, 1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise UserError(f"--arms: {n!r} is not an arm of {study.name}; {hint}its arms: "
                            f"{listing(known, 'none (add arms to the study file)')}")
    return dataclasses.replace(study, arms=[a for a in study.arms if a.name in wanted])


def arm_seeds(study: Study, given: list[int] | None) -> tuple[Study, list[int]]:
    """(the study with each arm's seeds set, every seed any arm runs): `--seeds` (`given`)
    for every arm but a reused one (it has the seeds it was run with); else an arm's own
    `seeds`, or the study's."""
    if given is not None:
        return dataclasses.replace(study, arms=[
            a if a.reuse is not None else dataclasses.replace(a, seeds=tuple(given))
            for a in study.arms]), given
    arms = [a if a.seeds is not None else dataclasses.replace(a, seeds=tuple(study.seeds))
            for a in study.arms]
    run = sorted({s for a in arms if a.reuse is None for s in a.seeds})  # a reused arm runs none
    return dataclasses.replace(study, arms=arms), run


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from study.runner import Runner, Settings

    study = load_study(args.study)
    study = dataclasses.replace(study, arms=reuse.load_arms(study.arms, study.dataset,
                                                            str(args.study)))
    study, seeds = arm_seeds(study, parse_seeds(args.seeds) if args.seeds else None)
    if not (args.out or study.out):
        raise UserError(f"{args.study} names no output folder; add `out: FOLDER` to it or pass --out")
    out = Path(args.out or study.out)
    note, launcher = None, None
    if args.launcher == "slurm":
        from study.slurm import make_launcher

        launcher, threads, how = make_launcher(study, out, args.threads, args.jobs,
                                               submit=not args.dry_run)
    else:
        jobs = 1 if args.jobs is None else args.jobs
        threads, note = split_threads(jobs, args.threads or study.threads, available_cores())
        how = f"{jobs} at a time, {threads} thread(s) each"
    dataset = dataset_arg(study.dataset)
    if dataset not in NAMED_DATASETS and not Path(dataset).is_dir():
        raise UserError(f"dataset {study.dataset!r} is not a folder ({dataset}) nor cifar10, "
                        "cifar100 or imagenet")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    configs = preflight(study)
    arms, lines = size_narrow_arms(study.arms, dataset)
    study = dataclasses.replace(study, arms=arms)
    lines += [f"arm {a.name}: reused from {a.reuse.study} (arm {a.reuse.arm}, seeds "
              f"{', '.join(map(str, a.seeds))}), not run" for a in study.arms if a.reuse]
    for line in lines:
        print(line, flush=True)
    record = make_record(study, dataset, seeds, out, configs)
    now = _chosen_arms(study, args.arms)
    settings = Settings(out=out.resolve() if launcher else out, dataset=dataset,
                        jobs=1 if launcher else jobs, threads=threads)
    runner = Runner(now, settings, seeds, launcher)
    tasks = runner.tasks()
    finished = sum(layout.retrain_state(layout.run_dir(out, a.name, s)) == layout.FINISHED
                   for a, s in tasks)
    ran = [a for a in now.arms if a.reuse is None]
    shape = (f"{len(ran)} arm(s) x {len(seeds)} seed(s)" if len(tasks) == len(ran) * len(seeds)
             else f"{len(ran)} arm(s) over seeds {', '.join(map(str, seeds))} (each its own)")
    print(f"study {study.name}: {shape} = {len(tasks)} runs in {out}/{layout.RUNS} ({finished} "
          f"finished earlier); {how}", flush=True)
    if note:
        print(note, flush=True)
    if args.dry_run:
        for arm, seed in tasks:
            for module, argv, path in runner.commands(arm, seed):
                state = (layout.search_state if module == "search" else layout.retrain_state)(path)
                print(f"{arm.name} seed {seed} {module}: {state}: python -m {module} "
                      f"{' '.join(argv)}")
        return 0
    if launcher is None and (out / "slurm" / "jobs.json").is_file():
        from study.jobs import refuse_if_live

        refuse_if_live(out, args.study)
    out.mkdir(parents=True, exist_ok=True)
    # The same lock as a search's or a retrain's run directory (common.runlock).
    lock = RunLock(out, "run the study again")
    save_config(record, out / layout.RECORD)
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcomes = runner.run()
    except KeyboardInterrupt:
        if launcher is not None:
            print(f"study stopped; its jobs keep running under SLURM: run `python -m study run "
                  f"{args.study} --launcher slurm` (same options) again to wait for them and "
                  f"report, or `python -m study cancel {args.study}` to stop them",
                  file=sys.stderr, flush=True)
            return 130
        print(f"study interrupted; the runs keep their checkpoints: run `python -m study run "
              f"{args.study}` (same options) again to continue", file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
        lock.release()
    if launcher is None and any(o.status == "interrupted" for o in outcomes):
        # A run was stopped from outside (its status said so): the study stops with it.
        print(f"study stopped: a run was stopped by a signal; the runs keep their checkpoints: "
              f"run `python -m study run {args.study}` (same options) again to continue",
              file=sys.stderr, flush=True)
        return 130
    counts = {k: sum(o.status == k for o in outcomes)
              for k in ("skipped", "done", "failed", "interrupted")}
    stopped = counts["interrupted"]  # under SLURM: a job's run stopped by a signal
    print(f"study {study.name}: {counts['done']} run(s) now, {counts['skipped']} finished "
          f"earlier, {counts['failed']} failed"
          + (f", {stopped} stopped (they keep their checkpoints: run the study again to "
             "continue them)" if stopped else ""), flush=True)
    _report(out)
    return 1 if counts["failed"] or stopped else 0


def _report(out: Path) -> None:
    from study.report import report_folder

    rep, paths = report_folder(out)
    for name, a in rep["arms"].items():
        t = a["top1"]
        mean = "n/a" if t["mean"] is None else f"{t['mean']:.2f}%"
        std = "n/a" if t["std"] is None else f"{t['std']:.2f}"
        print(f"  {name}: n={a['n']} top-1 {mean} (std {std})")
    if rep["missing"]:
        print(f"  {len(rep['missing'])} run(s) missing or unfinished (listed in study.md)")
    print("report: " + ", ".join(str(p) for p in paths), flush=True)


def _folder(arg: str) -> Path:
    """A study's output folder from a study file (its `out`) or the folder itself."""
    path = Path(arg)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        out = load_study(path).out  # a study file: its output folder
        if out is None:
            raise UserError(f"{arg} names no output folder (`out`); give the folder instead")
        path = out
    if not path.is_dir():
        raise UserError(f"{arg} is not a folder; give a study's output folder")
    return path


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run(args)
    path = _folder(args.dir)
    if args.command == "cancel":
        from study.jobs import cancel

        ids = cancel(path)
        print(f"cancelled {len(ids)} job(s): {' '.join(ids)}; their runs keep their checkpoints"
              if ids else f"no job of this study is pending or running ({path})", flush=True)
        return 0
    _report(path)
    return 0
