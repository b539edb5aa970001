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
import re
import signal
import sys
from pathlib import Path
from typing import Any

from common.cli_flags import Parser
from common.config import resolve_config, save_config
from common.cpu import available_cores
from common.errors import UserError, cli_entry, listing
from common.runlock import RunLock
from common.schema import as_dict, flatten
from study import layout, reuse
from study.commands import NAMED_DATASETS, dataset_arg, retrain_argv, search_argv
from study.sources import size_narrow_arms
from study.spec import Study, load_study, parse_seeds

SEARCH_GENOTYPE = "<search run>/genotype.json"
DRAWN_GENOTYPE = "<run>-genotype.json"


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


def preflight(study: Study) -> dict[str, dict[str, Any]]:
    """Resolve every arm's configs (unknown keys, bad values) and genotypes, as the commands
    will, so that a mistake is one line before anything runs; returns each arm's resolved
    configs ({"retrain": ..., "search": ... or None}, as plain dicts)."""
    from retrain import setup as rsetup
    from search.settings import check_config

    configs: dict[str, dict[str, Any]] = {}
    for arm in study.arms:
        r, s = arm.retrain, arm.search
        if arm.reuse is not None:  # not run: nothing to resolve
            continue
        try:
            items = list(r.sets) + ([f"fs.mode={r.fs}"] if r.fs else [])
            items += [f"fs.ratio={r.ratio}"] if r.ratio is not None else []
            items += [f"model.name={r.model}"] if r.model else []
            resolved = {"retrain": as_dict(rsetup.resolve(r.preset or rsetup.default_preset(r.model), items,
                                                          lambda cfg: False)), "search": None}
            if r.model:
                rsetup.check_model(r.model)
            elif s is None:
                if not (arm.source and arm.source.kind == "random"):  # drawn per run
                    rsetup.read_genotype(retrain_argv(arm, "")[1])
            else:
                items = [re.sub(r"^search\.", "", x) for x in s.sets]
                items += [f"fs.mode={s.fs}"] if s.fs else []
                items += [f"fs.ratio={s.ratio}"] if s.ratio is not None else []
                items += [f"arch.order={s.order}"] if s.order else []
                items += [f"algorithm={s.algo}"] if s.algo else []
                resolved["search"] = as_dict(check_config(resolve_config("search",
                                                                         s.preset or "paper",
                                                                         items)))
        except UserError as e:
            raise UserError(f"arm {arm.name!r}: {e}") from None
        configs[arm.name] = resolved
    return configs


def config_changes(then: dict[str, Any] | None, now: dict[str, Any] | None) -> list[str]:
    """`section key: old -> new` for each key both resolved configs hold with other values
    (a preset edited since the runs were made; keys one side lacks, from another version of
    the code, are not compared)."""
    out = []
    for section in ("search", "retrain"):
        a = dict(flatten((then or {}).get(section) or {}))
        b = dict(flatten((now or {}).get(section) or {}))
        out += [f"{section} {k}: {a[k]!r} -> {b[k]!r}" for k in a if k in b and a[k] != b[k]]
    return out


def make_record(study: Study, dataset: str, seeds: list[int], out: Path,
                configs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """OUT/study.yaml: the study file and each arm's resolved commands and configs
    (`configs`, from preflight). An arm whose commands or settings changed since its runs in
    OUT were made (an edited preset included) is refused: its seeds would mix two settings."""
    configs = configs or {}
    arms = [_recorded_arm(a, dataset, configs) for a in study.arms]
    old: dict[str, Any] = {}
    if (out / layout.RECORD).is_file():
        from study.report import read_record

        old = read_record(out) or {}
    before = {a["name"]: a for a in old.get("arms", [])}
    for a in arms:
        prev = before.get(a["name"])
        then = ((prev or {}).get("search"), (prev or {}).get("retrain"),
                _recorded_source((prev or {}).get("source")))
        now = (a["search"], a["retrain"], a["source"])
        if prev and then != now and layout.seeds_on_disk(out, a["name"]):
            raise UserError(f"arm {a['name']!r} has runs in {out} made with other options "
                            f"({_what_changed(then, now)}); give the changed arm a new name "
                            "or use another --out")
        changed = config_changes((prev or {}).get("config"), a["config"])
        if changed and layout.seeds_on_disk(out, a["name"]):
            raise UserError(f"arm {a['name']!r} has runs in {out} made with other settings "
                            f"({'; '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}: a "
                            "preset changed); give the changed arm a new name or use another "
                            "--out")
    all_seeds = sorted(set(old.get("seeds") or []) | set(seeds))
    return {"name": study.name, "source": str(study.source) if study.source else None,
            "dataset": dataset, "seeds": all_seeds, "compare": [list(p) for p in study.compare],
            "arms": arms, "study": study.raw}


def _recorded_arm(a: Any, dataset: str, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One arm of OUT/study.yaml: its commands and resolved configs, or a reused arm's
    figures."""
    if a.reuse is not None:
        return {"name": a.name, "search": None, "retrain": None, "source": None, "config": None,
                "seeds": list(a.seeds), "group": a.group, "reuse": a.reuse.record()}
    return {"name": a.name, "search": search_argv(a, dataset) if a.search else None,
            "retrain": retrain_argv(a, dataset, _genotype_arg(a)),
            "source": _plain(dataclasses.asdict(a.source)) if a.source else None,
            "config": configs.get(a.name), "seeds": list(a.seeds) if a.seeds else None,
            "group": a.group}


def _what_changed(then: tuple, now: tuple) -> str:
    """The recorded (search, retrain, source) against today's, in words: the source's keys
    that changed when only the source did, else the recorded retrain command."""
    if then[:2] != now[:2] or not (then[2] and now[2]):
        return " ".join(then[1] or [])
    changed = [f"{k} {then[2].get(k)!r} -> {v!r}" for k, v in now[2].items() if then[2].get(k) != v]
    return "its genotype's source: " + ", ".join(changed)


def _recorded_source(src: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recorded arm source as this version writes it: a budget fit recorded before
    budget rules existed was the ratios-only fit."""
    if not src or "rule" in src:
        return src
    return {**src, "rule": "ratios" if src.get("budget") is not None else None}


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists, as the record reads back from YAML."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _genotype_arg(arm: Any) -> str | None:
    """What the record shows for a genotype made per run: a search's, or a drawn/fitted one."""
    if arm.search is not None:
        return SEARCH_GENOTYPE
    if arm.source is not None and arm.source.kind in ("random", "fit"):
        return DRAWN_GENOTYPE
    return None


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
    counts = {k: sum(o.status == k for o in outcomes) for k in ("skipped", "done", "failed")}
    print(f"study {study.name}: {counts['done']} run(s) now, {counts['skipped']} finished "
          f"earlier, {counts['failed']} failed", flush=True)
    _report(out)
    return 1 if counts["failed"] else 0


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
