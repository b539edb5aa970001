"""Re-choosing the CPU thread count while a run trains, as other processes come and go.

A run chooses its threads from the cores at start-up (common.cpu). When another process
starts later on the same cores, each of the run's OpenMP threads gets a share of a core,
and the threads that wait at every parallel region's barrier for the one that is not
running slow every step: 2.4x beside one spinning process (bench/oversubscription.py), over
15x for a search beside a retrain on a 2-core machine. Fewer threads than cores avoid it.

Between training steps (never inside one), `ThreadGovernor` measures the load of the rest
of the machine over the last window of at least `interval` seconds:

    others = (busy CPU time of the machine - this process's CPU time) / wall time   [cores]

from /proc/stat (user, nice, system, irq, softirq and steal: a hypervisor taking a core is
load too) and the process's own user + system time, which counts all of its threads,
spinning OpenMP threads included. The thread count that fits is

    free = cores - others
    down to max(1, floor(free + 0.5))                   when free < threads - 0.5
    up to   min(threads at start, floor(free + 0.25))   when free >= threads + 0.75

so a neighbour using more than half a core takes a thread, and the thread comes back once
the neighbours leave at least 1.75 cores free (two thresholds: a neighbour hovering around
half a core does not flip the count back and forth). A change is made once the count has
wanted it for `hold` seconds of windows (a short-lived command does not flip it) and logged
as one line. It never goes above the count the run started with. Each epoch opens a new
window, so evaluation, checkpoints and drawings between epochs do not count.

The run's own DataLoader workers are processes of their own and count among the "others":
the start-up choice leaves them their cores (threads + workers <= cores), so on a quiet
machine they never take a thread.

Off when it cannot judge: the run is on a GPU, it has several processes (torchrun: other
ranks would count as neighbours, and each rank would choose alone), its threads and loader
workers already ask for more than the cores, or the process does not see every core (a
cpuset or container quota, where /proc/stat counts the host's cores).

Determinism. CPU kernels (convolutions, batch-norm reductions) split their sums by thread,
so another thread count rounds differently: one forward and backward of the smoke retrain
network (batch 64) gives logits 2e-5 apart at 1 and 2 threads, and the run then drifts from
an uninterrupted one as another seed would. On a quiet machine the count
never changes, and a run is bit-for-bit reproducible; every change is in log.jsonl (the
epoch record's `thread_changes`), so figures can be traced to the counts used. The count in
use is saved in each checkpoint and a resumed run starts from it, so a resume reproduces an
uninterrupted run when the load is the same (a change depends on when the load comes, so a
run whose count changed is repeated only as closely as its load is).
`--set runtime.adapt_threads=false` keeps the count fixed whatever the load.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from common.cpu import available_cores, processes_per_machine, sees_every_core
from common.runlog import say
from common.runtime import set_threads as set_torch_threads

#: /proc/stat fields (after "cpu") that are busy time: user nice system idle iowait irq
#: softirq steal; guest time is already inside user.
_BUSY = (0, 1, 2, 5, 6, 7)


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all cores), or None where
    /proc/stat is missing (macOS, Windows)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        return sum(int(fields[i]) for i in _BUSY if i < len(fields)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds() -> float:
    """CPU seconds this process (every thread of it) has used."""
    t = os.times()
    return t.user + t.system


def why_fixed(device_type: str, threads: int = 1, workers: int = 0) -> str | None:
    """Why the thread count cannot follow the load here, or None when it can."""
    if device_type != "cpu":
        return "the run computes on a GPU"
    if processes_per_machine() > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "the run has several processes"
    if threads + workers > available_cores():
        return "its threads and loader workers already ask for more than the cores"
    if not sees_every_core():
        return "this process does not see every core of the machine"
    if machine_busy_seconds() is None:
        return "the machine's load cannot be read here"
    return None


class ThreadGovernor:
    """Lowers torch's thread count while other processes keep cores busy and raises it
    back when they leave (module docstring). Wrap each epoch's batches in `watch`."""

    def __init__(self, threads: int, cores: int, *, enabled: bool = True,
                 interval: float = 1.0, hold: float = 3.0,
                 set_threads: Callable[[int], None] | None = None,
                 say: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic,
                 busy: Callable[[], float | None] = machine_busy_seconds,
                 own: Callable[[], float] = own_cpu_seconds) -> None:
        self.max_threads, self.cores = max(1, int(threads)), max(1, int(cores))
        self.threads = self.max_threads
        self.enabled = enabled and self.max_threads > 1
        self.interval, self.hold = interval, hold
        self._set = set_threads or set_torch_threads
        self._say, self._clock, self._busy, self._own = say, clock, busy, own
        self._mark: tuple[float, float, float] | None = None
        self._pending: tuple[int, float] | None = None  # (wanted count, seconds it has wanted it)
        self.changes: list[dict[str, Any]] = []
        self.where = ""  # "epoch E step S", set by watch

    def want(self, others: float) -> int:
        """The thread count beside `others` busy cores, from the current one (docstring)."""
        free = self.cores - others
        if free < self.threads - 0.5:
            return max(1, math.floor(free + 0.5))
        if free >= self.threads + 0.75:
            return min(self.max_threads, math.floor(free + 0.25))
        return self.threads

    def sample(self) -> None:
        """Between two steps: close the window if it is long enough and act on it."""
        if not self.enabled:
            return
        now, busy, own = self._clock(), self._busy(), self._own()
        if busy is None:
            return
        if self._mark is None:
            self._mark = (now, busy, own)
            return
        t0, b0, o0 = self._mark
        span = now - t0
        if span < self.interval:
            return
        self._mark = (now, busy, own)
        others = max(0.0, ((busy - b0) - (own - o0)) / span)
        want = self.want(others)
        if want == self.threads:
            self._pending = None
            return
        held = span + (self._pending[1] if self._pending and self._pending[0] == want else 0.0)
        self._pending = (want, held)
        if held >= self.hold:
            self._change(want, others)

    def _change(self, want: int, others: float) -> None:
        old, self.threads, self._pending = self.threads, want, None
        self._set(want)
        self.changes.append({"at": self.where, "from": old, "to": want,
                             "others": round(others, 2)})
        self._say(f"threads {old} -> {want} at {self.where}: other processes keep "
                  f"{others:.1f} of {self.cores} cores busy"
                  + ("" if want < old else " (back up)"))

    def restore(self, threads: int | None) -> None:
        """Continue at a checkpoint's count (never above the count this run starts with)."""
        if self.enabled and threads and min(int(threads), self.max_threads) != self.threads:
            self.threads = max(1, min(int(threads), self.max_threads))
            self._set(self.threads)

    def watch(self, batches: Iterable, epoch: int) -> Iterator:
        """Yield the epoch's batches, sampling the load between steps; each epoch opens a
        new window (the time between epochs is evaluation and writing, not training)."""
        self._mark = self._pending = None
        for step, item in enumerate(batches):
            self.where = f"epoch {epoch + 1} step {step + 1}"
            yield item
            self.sample()

    def figures(self) -> dict[str, Any]:
        """The epoch's record fields: `threads` (the count at its end) and, when it changed,
        `thread_changes` (each change since the last call)."""
        out: dict[str, Any] = {"threads": self.threads}
        if self.changes:
            out["thread_changes"], self.changes = self.changes, []
        return out


def run_governor(runtime: Any, device: Any, main: bool = True,
                 workers: int = 0) -> ThreadGovernor:
    """A run's governor from its `runtime` config section: it starts at `runtime.threads`
    (as chosen at start-up; torch's count when null) and follows the load when
    `runtime.adapt_threads` is on and the machine allows it (`why_fixed`; `workers`: the
    run's DataLoader worker processes); otherwise it never changes anything. Only the main
    process talks."""
    threads = int(runtime.threads or torch.get_num_threads())
    enabled = bool(runtime.adapt_threads) and why_fixed(device.type, threads, workers) is None
    return ThreadGovernor(threads, available_cores(), enabled=enabled,
                          say=lambda m: say(m, main))


def thread_figures(stats: dict[str, Any]) -> dict[str, Any]:
    """The thread fields of an epoch's training figures, for its log.jsonl record."""
    return {k: stats[k] for k in ("threads", "thread_changes") if k in stats}
