"""`python -m study run STUDY.yaml --launcher slurm`: each arm x seed as one SLURM job,
through submitit; the job runs the same `study.task.Task` as the local launcher.

The study submits every task that is not finished as one job array (at most `max_jobs`
running at once), records the job ids (OUT/slurm/jobs.json, study.jobs) before anything
else, then waits and prints each task's lines when its job ends. Stopping the study (Ctrl-C,
kill, a closed terminal) leaves the jobs running on the cluster. Run it again and a task
finished on disk is skipped whatever its record says, a task whose recorded job is still
pending or running is waited for (never submitted twice), and a task whose job ended without
finishing it is submitted again (its run resumes from its checkpoint). `python -m study
cancel` cancels the live jobs. A job that reaches its time limit or is preempted is requeued
by submitit (up to 3 times) with the same task, which resumes from the run's checkpoint.

submitit is imported only here and in study.jobs, and only when a study uses this launcher.
"""

from __future__ import annotations

import shlex
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from common.errors import UserError
from study import layout
from study.cluster import SlurmOptions
from study.jobs import FOLDER, LIVE, LOGS, Jobs, read_jobs, write_jobs
from study.spec import Study
from study.task import ROOT, Control, Outcome, Task


def _submitit(opts: SlurmOptions) -> Any:
    """submitit, where the jobs can be submitted from here (else one line)."""
    try:
        import submitit
    except ImportError:
        raise UserError("--launcher slurm needs submitit: pip install 'submitit>=1.5' (it is "
                        "among the project's dependencies)") from None
    if opts.cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--launcher slurm: sbatch is not on PATH here; run the study on a SLURM "
                        "login node (or drop --launcher slurm)")
    return submitit


def executor(opts: SlurmOptions, out: Path, name: str, threads: int, max_jobs: int | None) -> Any:
    """submitit's executor for the study's jobs (sbatch, or local processes for tests)."""
    submitit = _submitit(opts)
    logs = Path(out) / FOLDER / LOGS
    # The job imports this project from the folder the study runs from, with the Python that
    # runs the study (submitit's default): both must be on a filesystem the nodes share.
    setup = [f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
             *opts.setup]
    ex = submitit.AutoExecutor(folder=logs, cluster=opts.cluster)
    params: dict[str, Any] = {
        "name": f"study-{name}", "timeout_min": opts.timeout_min, "nodes": 1, "tasks_per_node": 1,
        "cpus_per_task": opts.cpus_per_task or threads, f"{opts.cluster}_setup": setup,
        # No GPU line at all without GPUs: some clusters refuse --gpus-per-node=0.
        "gpus_per_node": opts.gpus_per_node or None}
    if opts.cluster == "slurm":
        own = {"partition": opts.partition, "mem": opts.mem, "account": opts.account,
               "qos": opts.qos, "array_parallelism": max_jobs}
        for key, value in {**own, **opts.extra}.items():
            if value is not None:
                params[f"slurm_{key}"] = value
        _check_extra(opts.extra)
    try:
        ex.update_parameters(**params)
    except (ValueError, TypeError, NameError, AssertionError) as e:
        raise UserError(f"slurm options refused by submitit: {str(e).splitlines()[0]}") from None
    return ex


def _check_extra(extra: dict[str, Any]) -> None:
    import difflib

    from submitit.slurm.slurm import SlurmExecutor

    valid = sorted(SlurmExecutor._valid_parameters())
    for key in extra:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see submitit's SlurmExecutor"
            raise UserError(f"slurm extra: {key!r} is not a submitit SlurmExecutor parameter; {hint}")


class SlurmLauncher:
    """Hands each task to SLURM (or, with `cluster: local`, to submitit's local executor) as
    one job, and reattaches to the jobs a stopped study left running (see the module)."""

    def __init__(self, opts: SlurmOptions, out: Path, name: str, threads: int,
                 max_jobs: int | None = None, poll_s: float | None = None) -> None:
        self.opts, self.out, self.name, self.threads = opts, Path(out), name, threads
        self.max_jobs = max_jobs or opts.max_jobs
        self.poll_s = poll_s if poll_s is not None else (0.2 if opts.cluster == "local" else 10.0)
        self.jobs = Jobs(self.out, opts.cluster)
        self.control = Control()

    def _pause(self) -> None:
        time.sleep(self.poll_s)

    def run(self, tasks: list[Task]) -> list[Outcome]:
        say = self.control.say
        tags = {t.key: f"[{k}/{len(tasks)}]" for k, t in enumerate(tasks, 1)}
        rec = read_jobs(self.out)
        known = rec["jobs"] if rec.get("cluster") in (None, self.opts.cluster) else {}
        outcomes: dict[str, Outcome] = {}
        waiting: dict[str, tuple[Task, Any]] = {}
        submit: list[Task] = []
        handles = {}
        for t in tasks:
            fig = t.finished()
            if fig is not None:  # the folder wins over any job record
                say(f"{tags[t.key]} {t.arm.name} seed {t.seed}: finished earlier: {layout.short(fig)}")
                outcomes[t.key] = Outcome(t.arm.name, t.seed, "skipped", fig)
            elif known.get(t.key, {}).get("job_id") is not None:  # all first: one sacct call
                handles[t.key] = self.jobs.handle(str(known[t.key]["job_id"]))
        for t in tasks:
            if t.key in outcomes:
                continue
            job = handles.get(t.key)
            if job is not None:
                old, state = job.job_id, self.jobs.state(job)
                if state in LIVE:
                    say(f"{tags[t.key]} {t.arm.name} seed {t.seed}: job {old} is still {state}; "
                        "waiting for it (not submitted again)")
                    waiting[t.key] = (t, job)
                    continue
                how = "" if state == "DONE" else f" ({state})"
                say(f"{tags[t.key]} {t.arm.name} seed {t.seed}: its job {old} ended{how} without "
                    "finishing it; submitting it again")
            submit.append(t)
        if submit:
            ex = executor(self.opts, self.out, self.name, self.threads, self.max_jobs)
            try:
                jobs = ex.submit_array(submit)
            except Exception as e:  # sbatch refused (partition, account, limits): its own words
                text = str(e).strip().splitlines() or [type(e).__name__]
                raise UserError(f"submitting {len(submit)} job(s) failed: {text[-1]}") from None
            now = datetime.now().isoformat(timespec="seconds")
            rec = {"cluster": self.opts.cluster, "jobs": {**known}}
            for t, job in zip(submit, jobs, strict=True):
                rec["jobs"][t.key] = {"job_id": str(job.job_id), "submitted": now}
                waiting[t.key] = (t, job)
            write_jobs(self.out, rec)
            for t, job in zip(submit, jobs, strict=True):
                say(f"{tags[t.key]} {t.arm.name} seed {t.seed}: submitted as job {job.job_id}")
        if waiting:
            say(f"waiting for {len(waiting)} job(s); logs in {self.jobs.logs}")
        try:
            while waiting:
                for key, (t, job) in list(waiting.items()):
                    if self.jobs.alive(job):
                        continue
                    del waiting[key]
                    outcomes[key] = self.jobs.outcome(t, job)
                    for line in outcomes[key].lines:
                        say(f"{tags[key]} {line}")
                if waiting:
                    self._pause()
        except KeyboardInterrupt:
            ids = " ".join(str(job.job_id) for _, job in waiting.values())
            say(f"stopped waiting: {len(waiting)} job(s) keep running ({ids}); none will be "
                "submitted twice")
            raise
        return [outcomes[t.key] for t in tasks]




def make_launcher(study: Study, out: Path, threads: int | None, jobs: int | None,
                  submit: bool = True) -> tuple[SlurmLauncher, int, str]:
    """The launcher of `run --launcher slurm`, the threads per run (--threads, else the
    study's, else the job's CPUs) and one line saying how the runs go. `submit`: check now
    that jobs can be submitted from here (not for a dry run)."""
    opts = study.slurm
    if opts is None:
        raise UserError("--launcher slurm needs a `slurm:` block in the study file (partition, "
                        "time, gpus_per_node, cpus_per_task, mem, ...; see docs/cluster.md)")
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    threads = threads or study.threads or opts.cpus_per_task or 1
    if threads < 1 or (opts.cpus_per_task and threads > opts.cpus_per_task):
        raise UserError(f"{threads} thread(s) per run does not fit the job's cpus_per_task "
                        f"{opts.cpus_per_task}; lower threads or raise cpus_per_task")
    if submit:
        _submitit(opts)
        if opts.cluster == "slurm":
            _check_extra(opts.extra)
    launcher = SlurmLauncher(opts, Path(out).resolve(), study.name, threads, jobs)
    asks = [f"partition {opts.partition}" if opts.partition else "default partition",
            f"{opts.timeout_min} min", f"{opts.gpus_per_node or 0} GPU(s)",
            f"{opts.cpus_per_task or threads} CPU(s)"] + ([f"mem {opts.mem}"] if opts.mem else [])
    where = "SLURM" if opts.cluster == "slurm" else "submitit-local"
    return launcher, threads, (f"one {where} job each ({', '.join(asks)}), "
                               f"{launcher.max_jobs or 'all'} at a time, {threads} thread(s) each")
