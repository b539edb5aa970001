"""`python -m study run --launcher slurm`: through submitit's local executor (`slurm: {cluster:
local}`), the same outcome as the local runner; a stopped study that waits for its live jobs
and submits again only what ended unfinished; cancelling; and, with stand-in sbatch / sacct /
scancel commands, the sbatch file and the reattaching of the SLURM path. One-line errors for
bad slurm options. Stand-in runs (no training)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml
from cli_exits import one_line_exit
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob
from test_retrain_cli import make_folder
from test_study import FAKE

from study import cli, runner, slurm
from study.cli import main
from study.cluster import minutes
from study.jobs import _local_pid_alive, live_jobs, read_jobs
from study.spec import load_study

# The stand-in retrain, held (while the file FAKE_HOLD exists) for the run FAKE_HELD names.
HELD = FAKE.replace("time.sleep(0.6)\n", '''hold = Path(os.environ.get("FAKE_HOLD", "/nonexistent"))
limit = time.time() + 120
while f"{arm}/{seed}" == os.environ.get("FAKE_HELD") and hold.exists() and time.time() < limit:
    time.sleep(0.05)
time.sleep(0.3)
''')
LOCAL = {"cluster": "local", "timeout_min": 10}


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    (tmp_path / "fake_retrain.py").write_text(HELD)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log.jsonl"))
    monkeypatch.setenv("FAKE_HOLD", str(tmp_path / "hold"))
    monkeypatch.setitem(runner.MODULES, "retrain", "fake_retrain")
    monkeypatch.setattr(cli, "available_cores", lambda: 2)
    return tmp_path


def _study(tmp: Path, out: str, arms: list[dict] | None = None, **extra) -> dict:
    data = tmp / "data"
    if not data.is_dir():
        make_folder(data, per_class=2, test_per_class=1)
    return {"name": "tiny", "dataset": str(data), "out": str(tmp / out), "seeds": [0, 1],
            "threads": 1, "defaults": {"genotype": "DARTS_V2", "preset": "smoke"},
            "arms": arms or [{"name": "fs-off", "fs": False}, {"name": "fs-r2", "fs": "fs", "ratio": 2}],
            "slurm": LOCAL, **extra}


def _write(path: Path, study: dict) -> Path:
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _runs(log: Path) -> list[tuple[str, int]]:
    """(arm, seed) of each stand-in run that finished, in order."""
    if not log.is_file():
        return []
    return [(r["arm"], r["seed"]) for r in map(json.loads, log.read_text().splitlines())]


def _metrics(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / arm / f"seed-{seed}" / "metrics.json"


def test_minutes_of_slurm_time_text():
    assert [minutes(t) for t in ("90", "1:30", "12:00:00", "1-12", "1-00:00:01", "2-3:04")] == \
        [90, 2, 720, 2160, 1441, 2 * 1440 + 3 * 60 + 4]
    assert minutes("4h") is None and minutes("") is None


def test_bad_slurm_options_are_one_line(fakes, capsys, monkeypatch):
    f = fakes / "s.yaml"

    def err(slurm_block, *args) -> str:
        study = _study(fakes, "out", slurm=slurm_block)
        if slurm_block is None:
            del study["slurm"]
        return one_line_exit(main, ["run", str(_write(f, study)), "--launcher", "slurm", *args],
                             capsys)

    assert "slurm: unknown key 'partiton'; did you mean 'partition'?" in err(
        {"partiton": "gpu", "timeout_min": 5})
    assert "needs each job's time limit" in err({"partition": "gpu"})
    # YAML reads an unquoted 4:00:00 as the number 14400: never taken as minutes.
    text = yaml.safe_dump(_study(fakes, "out", slurm={"timeout_min": 5}), sort_keys=False)
    f.write_text(text.replace("timeout_min: 5", "time: 4:00:00"))
    assert "quote it" in one_line_exit(main, ["run", str(f), "--launcher", "slurm"], capsys)
    assert "time '4h' is not SLURM time text" in err({"time": "4h"})
    assert "give time or timeout_min, not both" in err({"time": "10", "timeout_min": 10})
    assert "mem 'lots' is not a SLURM memory size" in err({"timeout_min": 5, "mem": "lots"})
    assert "max_jobs must be an integer >= 1, got 0" in err({"timeout_min": 5, "max_jobs": 0})
    assert "cluster 'pbs' is unknown" in err({"timeout_min": 5, "cluster": "pbs"})
    assert "extra.partition is a key of the slurm block itself" in err(
        {"timeout_min": 5, "extra": {"partition": "x"}})
    assert "needs a `slurm:` block" in err(None)
    assert "2 thread(s) per run does not fit the job's cpus_per_task 1" in err(
        {"timeout_min": 5, "cpus_per_task": 1}, "--threads", "2")
    monkeypatch.setenv("PATH", str(fakes))  # no sbatch here
    assert "sbatch is not on PATH here" in err({"timeout_min": 5})
    assert not (fakes / "out").exists()


@pytest.mark.slow  # starts submitit jobs: several processes
def test_slurm_launcher_gives_the_local_runners_outcome(fakes, capsys):
    arms = [{"name": "fs-off", "fs": False}, {"name": "rnd", "random": True}]
    local = _write(fakes / "local.yaml", _study(fakes, "local", arms))
    jobs = _write(fakes / "jobs.yaml", _study(fakes, "jobs", arms))
    assert main(["run", str(local)]) == 0
    said_local = capsys.readouterr().out
    assert main(["run", str(jobs), "--launcher", "slurm"]) == 0
    said = capsys.readouterr().out
    assert "one submitit-local job each" in said and said.count("submitted as job") == 4
    # Each task said the same in its job as in the local runner (folders aside).
    for arm, seed in (("fs-off", 0), ("rnd", 0), ("fs-off", 1), ("rnd", 1)):
        assert said_local.count(f"{arm} seed {seed}: done in") == said.count(
            f"{arm} seed {seed}: done in") == 1
    assert said.count(": start (") == 4 and said.count("rnd seed 0: drew ") == 1
    a, b = (json.loads((fakes / d / "study.json").read_text()) for d in ("local", "jobs"))
    assert a["arms"] == b["arms"] and a["missing"] == b["missing"] == []
    for seed in (0, 1):  # the drawn genotype is the seed's, wherever it was drawn
        name = f"runs/rnd/seed-{seed}-genotype.json"
        assert (fakes / "local" / name).read_text() == (fakes / "jobs" / name).read_text()
    rec = read_jobs(fakes / "jobs")
    assert rec["cluster"] == "local" and len({j["job_id"] for j in rec["jobs"].values()}) == 4
    log = next((fakes / "jobs" / "slurm" / "logs").glob("*_0_log.out")).read_text()
    assert "seed" in log and ": done in" in log  # the job's own log holds the task's lines
    # A job that reaches its time limit is requeued with the same task (submitit asks it).
    task = runner.Task("tiny", runner.Settings(out=fakes / "jobs", dataset="d"),
                       load_study(jobs).arms[0], 0)
    assert task.checkpoint().function is task
    # Run again: everything is finished on disk, nothing is submitted.
    assert main(["run", str(jobs), "--launcher", "slurm"]) == 0
    said = capsys.readouterr().out
    assert said.count(": finished earlier:") == 4 and "submitted" not in said


def test_a_jobs_run_stopped_by_a_signal_counts_as_stopped(fakes, capsys):
    """Under SLURM a run killed by SIGTERM (a scheduler's notice) is neither done nor failed:
    the study counts it stopped, says how to continue, and exits 1."""
    arms = [{"name": "fs-off", "fs": False}, {"name": "term", "fs": "fs"}]
    study = _write(fakes / "s.yaml", _study(fakes, "jobs", arms, seeds=[0]))
    assert main(["run", str(study), "--launcher", "slurm"]) == 1
    said = capsys.readouterr().out
    assert "1 run(s) now, 0 finished earlier, 0 failed, 1 stopped (they keep their checkpoints" in said
    assert _runs(fakes / "log.jsonl") == [("fs-off", 0)]


@pytest.mark.slow  # starts submitit jobs: several processes
def test_stopped_study_waits_for_live_jobs_and_resubmits_only_unfinished(fakes, capsys,
                                                                          monkeypatch):
    """The study process stops while one job still runs (Ctrl-C, a kill, a closed terminal):
    run again, it waits for that job instead of submitting it twice, skips the finished
    runs, and submits a task whose job ended without finishing it, and new seeds."""
    out = fakes / "out"
    f = _write(fakes / "s.yaml", _study(fakes, "out"))
    (fakes / "hold").touch()
    monkeypatch.setenv("FAKE_HELD", "fs-r2/1")
    held = out / "runs" / "fs-r2" / "seed-1"
    deadline = time.time() + 240

    def stop_when_only_the_held_run_is_left(self):
        assert time.time() < deadline, "the jobs hung"
        done = list((out / "slurm" / "logs").glob("*_result.pkl"))  # jobs that ended
        if len(done) == 3 and (held / "stdout.log").exists():
            raise KeyboardInterrupt  # what Ctrl-C or SIGTERM does to the waiting study
        time.sleep(0.1)

    monkeypatch.setattr(slurm.SlurmLauncher, "_pause", stop_when_only_the_held_run_is_left)
    assert main(["run", str(f), "--launcher", "slurm"]) == 130
    said = capsys.readouterr()
    assert "1 job(s) keep running" in said.out and "python -m study cancel" in said.err
    first = {k: v["job_id"] for k, v in read_jobs(out)["jobs"].items()}
    assert len(first) == 4 and _local_pid_alive(first["fs-r2/seed-1"])
    assert live_jobs(out) == ("local", [first["fs-r2/seed-1"]])
    # The local launcher never runs beside a live job of the study.
    assert "1 SLURM job(s) of this study still run" in one_line_exit(main, ["run", str(f)], capsys)
    # A run whose job ended without finishing it (here: its metrics.json lost) is submitted again.
    _metrics(out, "fs-off", 1).unlink()
    kept = {(a, s): _metrics(out, a, s).stat().st_mtime_ns for a, s in (("fs-off", 0), ("fs-r2", 0))}

    def release(self):
        assert time.time() < deadline, "the jobs hung"
        (fakes / "hold").unlink(missing_ok=True)
        time.sleep(0.1)

    monkeypatch.setattr(slurm.SlurmLauncher, "_pause", release)
    assert main(["run", str(f), "--launcher", "slurm", "--seeds", "0,1,2"]) == 0
    said = capsys.readouterr().out
    assert f"fs-r2 seed 1: job {first['fs-r2/seed-1']} is still RUNNING; waiting for it" in said
    assert f"fs-off seed 1: its job {first['fs-off/seed-1']} ended without finishing it" in said
    assert said.count(": finished earlier:") == 2 and said.count("submitted as job") == 3
    assert "fs-off seed 1: restart" in said and "fs-r2 seed 1: done in" in said
    runs = _runs(fakes / "log.jsonl")
    assert sorted(runs) == sorted([("fs-off", 0), ("fs-r2", 0), ("fs-off", 1), ("fs-off", 1),
                                   ("fs-r2", 1), ("fs-off", 2), ("fs-r2", 2)])
    assert (held / "stdout.log").read_text().count("fake run") == 1  # started once, never twice
    assert all(_metrics(out, a, s).stat().st_mtime_ns == t for (a, s), t in kept.items())
    now = {k: v["job_id"] for k, v in read_jobs(out)["jobs"].items()}
    assert now["fs-r2/seed-1"] == first["fs-r2/seed-1"] and len(now) == 6
    assert now["fs-off/seed-1"] != first["fs-off/seed-1"]
    rep = json.loads((out / "study.json").read_text())
    assert rep["arms"]["fs-r2"]["seeds"] == [0, 1, 2] and rep["missing"] == []


@pytest.mark.slow  # starts submitit jobs: several processes
def test_cancel_stops_the_jobs_and_a_rerun_resumes(fakes, capsys, monkeypatch):
    out = fakes / "out"
    f = _write(fakes / "s.yaml", _study(fakes, "out", [{"name": "fs-r2", "fs": "fs"}], seeds=[1]))
    (fakes / "hold").touch()
    monkeypatch.setenv("FAKE_HELD", "fs-r2/1")
    deadline = time.time() + 120

    def stop_once_started(self):
        assert time.time() < deadline, "the job hung"
        if (out / "runs" / "fs-r2" / "seed-1" / "stdout.log").exists():
            raise KeyboardInterrupt
        time.sleep(0.1)

    monkeypatch.setattr(slurm.SlurmLauncher, "_pause", stop_once_started)
    assert main(["run", str(f), "--launcher", "slurm"]) == 130
    job = read_jobs(out)["jobs"]["fs-r2/seed-1"]["job_id"]
    capsys.readouterr()
    assert main(["cancel", str(f)]) == 0
    assert f"cancelled 1 job(s): {job}" in capsys.readouterr().out
    while _local_pid_alive(job):
        assert time.time() < deadline, "the cancelled job kept running"
        time.sleep(0.05)
    assert main(["cancel", str(out)]) == 0 and "no job" in capsys.readouterr().out
    assert not _metrics(out, "fs-r2", 1).exists() and _runs(fakes / "log.jsonl") == []
    (fakes / "hold").unlink()
    monkeypatch.setattr(slurm.SlurmLauncher, "_pause", lambda self: time.sleep(0.1))
    assert main(["run", str(f), "--launcher", "slurm"]) == 0
    said = capsys.readouterr().out
    assert f"its job {job} ended" in said and "fs-r2 seed 1: restart" in said
    assert _runs(fakes / "log.jsonl") == [("fs-r2", 1)]


SBATCH = """#!/bin/sh
n=$(cat "$FAKE_BIN/next" 2>/dev/null || echo 4242)
echo $((n + 1)) > "$FAKE_BIN/next"
echo "sbatch $*" >> "$FAKE_BIN/calls"
echo "Submitted batch job $n"
"""
SACCT = """#!/bin/sh
echo "JobID|State|NodeList"
cat "$FAKE_BIN/states" 2>/dev/null
"""
SCANCEL = """#!/bin/sh
echo "scancel $*" >> "$FAKE_BIN/calls"
"""


def test_slurm_path_with_stand_in_sbatch_and_sacct(fakes, capsys, monkeypatch):
    """The sbatch file holds the study's options; jobs sacct reports live are waited for,
    ended ones are submitted again; a run finished on disk is skipped whatever sacct says."""
    bin_ = fakes / "bin"
    bin_.mkdir()
    for name, text in (("sbatch", SBATCH), ("sacct", SACCT), ("scancel", SCANCEL), ("srun", "")):
        (bin_ / name).write_text(text or "#!/bin/sh\n")
        (bin_ / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_BIN", str(bin_))
    monkeypatch.setattr(SlurmJob, "watcher", SlurmInfoWatcher(delay_s=600))
    monkeypatch.setattr(slurm.SlurmLauncher, "_pause", lambda self: (_ for _ in ()).throw(
        KeyboardInterrupt))
    opts = {"partition": "gpu", "time": "2:00:00", "gpus_per_node": 1, "cpus_per_task": 2,
            "mem": "8G", "account": "lab", "max_jobs": 2, "setup": ["module load cuda"],
            "extra": {"constraint": "a100"}}
    out = fakes / "out"
    f = _write(fakes / "s.yaml", _study(fakes, "out", slurm={**opts, "extra": {"constrant": "a"}}))
    assert "slurm extra: 'constrant' is not a submitit SlurmExecutor parameter; did you mean " \
        "'constraint'?" in one_line_exit(main, ["run", str(f), "--launcher", "slurm"], capsys)
    assert not out.exists()
    f = _write(fakes / "s.yaml", _study(fakes, "out", slurm=opts))
    assert main(["run", str(f), "--launcher", "slurm"]) == 130
    said = capsys.readouterr().out
    assert "one SLURM job each (partition gpu, 120 min, 1 GPU(s), 2 CPU(s), mem 8G), 2 at a time" in said
    assert [j["job_id"] for j in read_jobs(out)["jobs"].values()] == [f"4242_{i}" for i in range(4)]
    sub = (out / "slurm" / "logs" / "4242_submission.sh").read_text()
    for line in ("--partition=gpu", "--time=120", "--array=0-3%2", "--gpus-per-node=1",
                 "--cpus-per-task=2", "--mem=8G", "--account=lab", "--constraint=a100",
                 "module load cuda", "export PYTHONPATH=", "-m submitit.core._submit",
                 "--job-name=study-tiny"):
        assert line in sub, line
    # sacct: two live, one failed, one gone without a result; the first also finished on disk.
    (bin_ / "states").write_text("4242_0|RUNNING|n1\n4242_1|PENDING|\n4242_2|FAILED|n2\n"
                                 "4242_3|CANCELLED by 0|n3\n")
    m = _metrics(out, "fs-off", 0)
    m.parent.mkdir(parents=True)
    m.write_text(json.dumps({"test_acc": 50.0}))
    assert main(["run", str(f), "--launcher", "slurm"]) == 130
    said = capsys.readouterr().out
    assert "fs-off seed 0: finished earlier" in said
    assert "fs-r2 seed 0: job 4242_1 is still PENDING" in said
    assert "fs-off seed 1: its job 4242_2 ended (FAILED)" in said
    assert "fs-r2 seed 1: its job 4242_3 ended (CANCELLED)" in said
    calls = (bin_ / "calls").read_text().splitlines()
    assert len(calls) == 2  # one array, then one more for the two ended tasks
    assert "--array=0-1%2" in (out / "slurm" / "logs" / "4243_submission.sh").read_text()
    jobs = {k: v["job_id"] for k, v in read_jobs(out)["jobs"].items()}
    assert jobs == {"fs-off/seed-0": "4242_0", "fs-r2/seed-0": "4242_1",
                    "fs-off/seed-1": "4243_0", "fs-r2/seed-1": "4243_1"}
    (bin_ / "states").write_text("4242_1|RUNNING|n1\n4243_0|PENDING|\n4243_1|COMPLETED|n1\n")
    assert main(["cancel", str(f)]) == 0
    assert (bin_ / "calls").read_text().splitlines()[-1] == "scancel 4242_1 4243_0"
    # Where sacct cannot say whether the jobs still run, the local launcher does not guess.
    (bin_ / "sacct").unlink()
    monkeypatch.setenv("PATH", str(bin_))
    assert "sacct is not here to say whether they still run" in one_line_exit(
        main, ["run", str(f)], capsys)


@pytest.mark.parametrize(("script", "state"), [
    ("echo RUNNING", "RUNNING"),
    ("true", "ENDED"),                                       # the queue no longer holds it
    ("echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", "ENDED"),
    ("echo 'slurm_load_jobs error: Socket timed out' >&2; exit 1", "UNKNOWN"),
    (None, "UNKNOWN"),                                       # no squeue here
])
def test_a_job_sacct_does_not_know_is_asked_of_squeue(tmp_path, monkeypatch, script, state):
    """Without accounting sacct never knows a job; squeue says whether it is still queued,
    so a study does not wait forever for a job that ended."""
    from study import jobs

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    if script is not None:
        (bin_ / "squeue").write_text(f"#!/bin/sh\n{script}\n")
        (bin_ / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_))
    assert jobs._squeue_state("4242_3") == state
