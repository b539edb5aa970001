"""CPU budget of a run: compute threads and DataLoader workers that together fit the cores.

Imports neither torch nor numpy: the entry points call `choose_openmp_wait_policy` before
torch loads its OpenMP runtime, which reads the waiting policy once, at load time.

Why these defaults: on a 2-core machine with one busy neighbour, 2 spinning OpenMP
threads made a smoke retrain epoch 30x slower. threads + workers <= cores keeps a run from
competing with itself. The OpenMP waiting policy is the one choice made from the load at
start-up, because it changes speed and never a result: idle threads that sleep (PASSIVE)
degrade gracefully beside a busy process (1.08x slower instead of 3.5x, smoke retrain step)
but cost 1.75x on a quiet machine, where spinning threads are fastest (bench/oversubscription.py,
docs/benchmarks.md). The start-up thread and worker counts depend only on the machine, never
on its load, so the same seed gives the same figures on the same machine run after run; load
that arrives later is common.threads' business (it lowers the count while other processes
take cores, and logs each change).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from common.shapes import LARGE_IMAGE

#: Images smaller than this decode in microseconds (CIFAR arrays, small PNGs): on a CPU a
#: loader worker would only take a core from the compute threads. The project's one
#: CIFAR/ImageNet threshold (common.shapes).
SMALL_IMAGE = LARGE_IMAGE


def openmp_wait_policy(busy: int | None, processes: int = 1) -> str | None:
    """PASSIVE (idle OpenMP threads sleep) when `busy` other processes are running or this run
    has several processes on the machine (torchrun), None (OpenMP's default: they spin
    briefly, the fastest on free cores) otherwise."""
    return "PASSIVE" if busy or processes > 1 else None


def choose_openmp_wait_policy() -> str | None:
    """Set OMP_WAIT_POLICY from the load at start-up, unless the user set it; returns the
    policy in force (None: OpenMP's default). Call before torch is imported."""
    if "OMP_WAIT_POLICY" not in os.environ:
        busy = busy_cores() if sees_every_core() else None  # /proc/loadavg: the whole host
        policy = openmp_wait_policy(busy, processes_per_machine())
        if policy:
            os.environ["OMP_WAIT_POLICY"] = policy
    return os.environ.get("OMP_WAIT_POLICY")


def sees_every_core() -> bool:
    """Whether this process may use every core of the machine: only then does a host-wide
    figure (/proc/loadavg, /proc/stat) describe its cores (in a cpuset or under a container
    quota it counts cores this process does not have)."""
    return os.cpu_count() == available_cores()


def _cgroup_quota() -> int | None:
    """Whole cores a cgroup v2 CPU quota allows (containers), or None without one."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may use: its affinity mask (taskset, cpusets), capped by a
    container's CPU quota, which neither os.cpu_count() nor torch's default sees."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def processes_per_machine() -> int:
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE, else 1)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class CpuBudget:
    """What a process runs with; `auto` says whether the threads were chosen here."""

    threads: int
    workers: int
    cores: int
    auto: bool = True

    def describe(self) -> str:
        return (f"{self.threads} thread{'s' * (self.threads != 1)}, {self.workers} loader "
                f"worker{'s' * (self.workers != 1)}")


def default_workers(device_type: str, image_side: int, cores: int) -> int:
    """DataLoader workers when the config says null (auto).

    CPU: none for small images (decoding them costs less than the core a worker takes from
    the compute threads), one for large ones (JPEG decoding and resizing), if there is a core
    to spare. CUDA: the GPU computes, so the cores feed it: 2 for small images, up to 8 for
    large ones, leaving one core to the main process."""
    spare = max(0, cores - 1)
    small = image_side < SMALL_IMAGE
    if device_type == "cpu":
        return 0 if small else min(1, spare)
    return min(2 if small else 8, spare)


def cpu_budget(threads: int | None, workers: int | None, device_type: str, image_side: int,
               cores: int | None = None) -> CpuBudget:
    """Threads and workers of one process: given values win; null ones are chosen so that
    threads + workers fit this process's share of the cores (cores / processes per machine)."""
    share = max(1, (cores or available_cores()) // processes_per_machine())
    w = default_workers(device_type, image_side, share) if workers is None else int(workers)
    t = max(1, share - w) if not threads else int(threads)
    return CpuBudget(t, w, share, auto=not threads)


@functools.cache
def busy_cores(samples: int = 5) -> int | None:
    """Other processes running at start-up: the median over a few samples 20 ms apart of the
    runnable tasks in /proc/loadavg, less this process's own thread. None off Linux. (The
    load average would still count a run that ended a minute ago.) Sampled once per process:
    the OpenMP policy and the start-up hint read the same figure."""
    counts = []
    for i in range(samples):
        try:
            running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
            counts.append(max(0, int(running) - 1))
        except (OSError, IndexError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(0.02)
    return sorted(counts)[len(counts) // 2]


def busy_note(budget: CpuBudget, flag: str = "--threads") -> str | None:
    """A hint when other processes keep cores busy and the threads were chosen automatically;
    None otherwise. A hint only: the start-up thread count never depends on the load, so the
    same seed gives the same figures run after run on a quiet machine."""
    if not budget.auto or os.cpu_count() != budget.cores * processes_per_machine():
        return None  # the machine's load counts cores this process does not see
    others = busy_cores()
    if not others:
        return None
    suggest = max(1, budget.cores - others - budget.workers)
    if suggest >= budget.threads:
        return None
    return (f"note: {others} other process(es) are running on these {budget.cores} cores; "
            f"if epochs are slow, start again with {flag} {suggest}")
