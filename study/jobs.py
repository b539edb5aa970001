"""The SLURM jobs of a study folder: their record, their state, their results, cancelling.

    OUT/slurm/jobs.json   the last job of each task: {"cluster": "slurm", "jobs":
                          {"<arm>/seed-<s>": {"job_id": "4242_3", "submitted": "..."}}}
    OUT/slurm/logs/       submitit's folder: each job's pickled task and result, and its log
                          (<job id>_0_log.out / .err)

A job's state is SLURM's (sacct, through submitit's watcher, which rate-limits the calls);
a local job's (submitit's local executor, for tests) is whether its controller process is
alive. submitit is imported only when a job is looked at.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from common.errors import UserError
from study import layout
from study.task import Outcome, Task

FOLDER, JOBS, LOGS = "slurm", "jobs.json", "logs"
#: sacct states of a job that may still run the task (submitit's "incomplete" ones and the
#: other transient ones); UNKNOWN (sacct has no word yet) counts as live: a task is never
#: submitted while its job might still write its folder.
LIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
        "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "PREEMPTED", "READY",
        "UNKNOWN"}


def read_jobs(out: Path) -> dict[str, Any]:
    """OUT/slurm/jobs.json ({"cluster": None, "jobs": {}} when there is none)."""
    try:
        rec = json.loads((Path(out) / FOLDER / JOBS).read_text())
    except (OSError, ValueError):
        return {"cluster": None, "jobs": {}}
    return rec if isinstance(rec, dict) and isinstance(rec.get("jobs"), dict) else \
        {"cluster": None, "jobs": {}}


def write_jobs(out: Path, rec: dict[str, Any]) -> None:
    path = Path(out) / FOLDER / JOBS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(path)  # whole or absent: a killed study never leaves half a record


def _local_pid_alive(job_id: str) -> bool:
    # A local job's id is its controller's pid; the command line guards against a reused pid
    # (an exited controller not yet reaped reads as an empty command line).
    try:
        return b"submitit.local._local" in Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


class Jobs:
    """The jobs of one study folder: their state on the cluster, their results, their logs."""

    def __init__(self, out: Path, cluster: str) -> None:
        self.out, self.cluster = Path(out), cluster
        self.logs = self.out / FOLDER / LOGS

    def handle(self, job_id: str) -> Any:
        """A submitit job for a recorded id (no process handle for a local one)."""
        if self.cluster == "local":
            from submitit.local.local import LocalJob

            return LocalJob(folder=self.logs, job_id=job_id)
        from submitit.slurm.slurm import SlurmJob

        return SlurmJob(folder=self.logs, job_id=job_id)

    def state(self, job: Any) -> str:
        """RUNNING, PENDING, ... (SLURM's word), or DONE once its result is written."""
        if job.paths.result_pickle.exists():
            return "DONE"
        if self.cluster == "local":
            proc = getattr(job, "_process", None)  # submitted by this process: its handle
            if proc is not None:
                return "RUNNING" if proc.poll() is None else "ENDED"
            return "RUNNING" if _local_pid_alive(job.job_id) else "ENDED"
        state = (job.state or "UNKNOWN").split()[0].upper()
        return _squeue_state(job.job_id) if state == "UNKNOWN" else state

    def alive(self, job: Any) -> bool:
        return self.state(job) in LIVE

    def outcome(self, task: Task, job: Any) -> Outcome:
        """The task's Outcome from its ended job (a failed one if the job left none)."""
        path = job.paths.result_pickle
        try:
            with open(path, "rb") as f:
                kind, value = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                ImportError):
            state = self.state(job)
            return _failed(task, f"job {job.job_id} ended ({state}) before its run finished; "
                                 f"log {job.paths.stderr}")
        if kind == "success" and isinstance(value, Outcome):
            return value
        last = [x for x in str(value).splitlines() if x.strip()] or ["(no trace)"]
        return _failed(task, f"job {job.job_id} raised {last[-1].strip()}; log {job.paths.stderr}")


def _squeue_state(job_id: str) -> str:
    """The state squeue gives a job that sacct does not know (accounting off or not yet
    written): its state while queued or running, ENDED once the queue no longer holds it,
    UNKNOWN (live) when squeue cannot answer."""
    try:
        r = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "UNKNOWN"
    if r.returncode != 0:  # squeue refuses an id it no longer holds on some versions
        return "ENDED" if "invalid job id" in r.stderr.lower() else "UNKNOWN"
    words = r.stdout.split()
    return words[0].upper() if words else "ENDED"


def _failed(task: Task, msg: str) -> Outcome:
    return Outcome(task.arm.name, task.seed, "failed", message=msg,
                   lines=[f"{task.arm.name} seed {task.seed}: FAILED: {msg}"])


def live_jobs(out: Path) -> tuple[str | None, list[str]]:
    """(cluster, ids) of the recorded jobs that may still run an unfinished task of OUT."""
    rec = read_jobs(out)
    cluster = rec.get("cluster")
    ids = [str(entry.get("job_id")) for key, entry in rec["jobs"].items()
           if layout.retrain_state(Path(out) / layout.RUNS / key) != layout.FINISHED]
    if not ids or cluster not in ("slurm", "local"):
        return cluster, []
    if cluster == "slurm" and shutil.which("sacct") is None:
        raise UserError(f"{Path(out) / FOLDER / JOBS} lists SLURM jobs of unfinished runs, and "
                        "sacct is not here to say whether they still run; run this on the "
                        "cluster's login node (or, if none of them runs any more, delete that file)")
    jobs = Jobs(out, cluster)
    try:
        handles = [jobs.handle(job_id) for job_id in ids]
    except ImportError:  # no submitit: jobs.json came from elsewhere
        return cluster, []
    return cluster, [str(job.job_id) for job in handles if jobs.alive(job)]


def refuse_if_live(out: Path, study: str) -> None:
    """The local launcher never runs a task that a SLURM job of this study may be running."""
    _, ids = live_jobs(out)
    if ids:
        raise UserError(f"{len(ids)} SLURM job(s) of this study still run in {out} "
                        f"({' '.join(ids)}); wait for them with --launcher slurm, or stop them "
                        f"with `python -m study cancel {study}`")


def cancel(out: Path) -> list[str]:
    """Cancel the study's live jobs (scancel; a local job gets SIGINT); their ids."""
    cluster, ids = live_jobs(out)
    if not ids:
        return []
    if cluster == "slurm":
        subprocess.call(["scancel", *ids])
        return ids
    # The controller and every process under it: SIGINT first (what Ctrl-C sends); SIGTERM after 5 s to
    # whatever still runs (a process started in the background of a non-interactive shell
    # ignores SIGINT). Checkpoints are written atomically, so either signal loses at most
    # the epoch under way.
    pids = [p for job_id in ids for p in [int(job_id), *_descendants(int(job_id))]]
    for sig in (signal.SIGINT, signal.SIGTERM):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        while (alive := [j for j in ids if _local_pid_alive(str(j))]) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive:
            break
    return ids


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (the job and the runs it started), children first."""
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            kids.append(int(p.name))
    return kids
