"""The `slurm:` block of a study file: what each run's job asks SLURM for under
`python -m study run STUDY.yaml --launcher slurm` (checked here, without submitit;
study.slurm submits).

    slurm:
      partition: gpu              # sbatch --partition
      time: "12:00:00"            # each job's time limit, quoted SLURM text ("90", "1-00:00:00")
                                  #   or timeout_min: 720 (minutes); one of the two is needed
      gpus_per_node: 1            # GPUs per job (one run per job)
      cpus_per_task: 8            # CPUs per job; the runs' threads unless `threads`/--threads
      mem: 32G                    # sbatch --mem (a bare number is megabytes, as for sbatch)
      account: my-lab             # sbatch --account
      qos: normal                 # sbatch --qos
      max_jobs: 8                 # at most this many of the study's jobs at once (--jobs overrides)
      setup: ["module load cuda"] # shell lines each job runs before Python starts
      extra: {constraint: a100}   # any other submitit SlurmExecutor parameter (checked at launch)
      cluster: local              # for tests: submitit's local executor instead of sbatch

Every mistake is one line naming the file and the key.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from common.errors import UserError

KEYS = ("partition", "time", "timeout_min", "gpus_per_node", "cpus_per_task", "mem", "account",
        "qos", "max_jobs", "setup", "extra", "cluster")
CLUSTERS = ("slurm", "local")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEM = re.compile(r"^[1-9][0-9]*[KMGT]?$", re.IGNORECASE)


@dataclass(frozen=True)
class SlurmOptions:
    """A validated `slurm:` block (None fields: SLURM's or the partition's defaults)."""

    timeout_min: int
    partition: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    max_jobs: int | None = None
    setup: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    cluster: str = "slurm"


def minutes(text: str) -> int | None:
    """SLURM's time text (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in whole minutes, rounded
    up; None if it is not such text."""
    m = _TIME.match(text.strip())
    if not m:
        return None
    days, a, b, c = m.groups()
    nums = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-H[:M[:S]]
        h, mi, s = (nums + [0, 0])[:3]
        total = ((int(days) * 24 + h) * 60 + mi) * 60 + s
    elif len(nums) == 1:
        total = nums[0] * 60
    elif len(nums) == 2:  # M:S
        total = nums[0] * 60 + nums[1]
    else:
        total = (nums[0] * 60 + nums[1]) * 60 + nums[2]
    return -(-total // 60)


def _int(value: Any, key: str, at: str, low: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{at}: {key} must be an integer >= {low}, got {value!r}")
    return value


def _name(value: Any, key: str, at: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise UserError(f"{at}: {key} must be a name, got {value!r}")
    return str(value).strip()


def _time(data: dict[str, Any], at: str) -> int:
    text, mins = data.get("time"), data.get("timeout_min")
    if text is not None and mins is not None:
        raise UserError(f"{at}: give time or timeout_min, not both")
    if mins is not None:
        return _int(mins, "timeout_min", at, 1) or 1
    if text is None:
        raise UserError(f"{at}: needs each job's time limit: time: \"12:00:00\" (quoted) or "
                        "timeout_min: 720 (without it submitit asks SLURM for 5 minutes)")
    if isinstance(text, int) and not isinstance(text, bool):
        raise UserError(f"{at}: time {text!r} is a number (YAML reads an unquoted 4:00:00 as "
                        "14400); quote it (time: \"4:00:00\") or give minutes as timeout_min")
    found = minutes(text) if isinstance(text, str) else None
    if not found:
        raise UserError(f"{at}: time {text!r} is not SLURM time text; use e.g. \"90\" (minutes), "
                        "\"12:00:00\" or \"1-12:00:00\"")
    return found


def _mem(value: Any, at: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip() if not isinstance(value, bool) else ""
    if not _MEM.match(text):
        raise UserError(f"{at}: mem {value!r} is not a SLURM memory size; use e.g. 32G or 16000M")
    return text.upper()


def _setup(value: Any, at: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise UserError(f"{at}: setup must be a list of shell lines, e.g. [\"module load cuda\"]")
    return tuple(value)


def _extra(value: Any, at: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UserError(f"{at}: extra must be a mapping of submitit SlurmExecutor parameters, "
                        "e.g. {constraint: a100, exclude: node07}")
    for key in value:
        own = key.removeprefix("slurm_")
        if own in KEYS or own in ("time", "array_parallelism"):
            raise UserError(f"{at}: extra.{key} is a key of the slurm block itself; set it there")
    return {k.removeprefix("slurm_"): v for k, v in value.items()}


def parse(value: Any, where: str) -> SlurmOptions | None:
    """The study file's `slurm:` block (None without one)."""
    if value is None:
        return None
    at = f"{where}: slurm"
    if not isinstance(value, dict):
        raise UserError(f"{at} must be a mapping (partition: ..., time: ...)")
    for key in value:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(KEYS)})"
            raise UserError(f"{at}: unknown key {key!r}{hint}")
    cluster = value.get("cluster", "slurm")
    if cluster not in CLUSTERS:
        raise UserError(f"{at}: cluster {cluster!r} is unknown; use slurm (or local, for tests)")
    return SlurmOptions(
        timeout_min=_time(value, at), partition=_name(value.get("partition"), "partition", at),
        gpus_per_node=_int(value.get("gpus_per_node"), "gpus_per_node", at, 0),
        cpus_per_task=_int(value.get("cpus_per_task"), "cpus_per_task", at, 1),
        mem=_mem(value.get("mem"), at), account=_name(value.get("account"), "account", at),
        qos=_name(value.get("qos"), "qos", at),
        max_jobs=_int(value.get("max_jobs"), "max_jobs", at, 1),
        setup=_setup(value.get("setup"), at), extra=_extra(value.get("extra"), at),
        cluster=cluster)
