"""The thread governor (common.threads): it follows other processes' load, with a fake clock
and fake CPU counters standing in for /proc/stat and os.times()."""

from __future__ import annotations

import pytest

from common import threads as th


class FakeMachine:
    """A machine of `cores` cores where this run uses `own` cores and others `others`."""

    def __init__(self, own: float, others: float) -> None:
        self.t = 0.0
        self.busy = 0.0
        self.mine = 0.0
        self.own, self.others = own, others

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mine += self.own * seconds
        self.busy += (self.own + self.others) * seconds


def make(machine: FakeMachine, threads: int = 2, cores: int = 2,
         **kw) -> tuple[th.ThreadGovernor, list, list]:
    said: list[str] = []
    set_to: list[int] = []
    g = th.ThreadGovernor(threads, cores, interval=1.0, hold=3.0, set_threads=set_to.append,
                          say=said.append, clock=lambda: machine.t, busy=lambda: machine.busy,
                          own=lambda: machine.mine, **kw)
    return g, said, set_to


def steps(g: th.ThreadGovernor, machine: FakeMachine, n: int, seconds: float = 0.5) -> None:
    for _ in g.watch(range(n), epoch=0):
        machine.advance(seconds)


def test_quiet_machine_never_changes() -> None:
    m = FakeMachine(own=2.0, others=0.1)
    g, said, set_to = make(m)
    steps(g, m, 100)
    assert g.threads == 2 and not said and not set_to
    assert g.figures() == {"threads": 2}


def test_a_neighbour_takes_a_thread_and_gives_it_back() -> None:
    m = FakeMachine(own=2.0, others=0.0)
    g, said, set_to = make(m)
    steps(g, m, 10)
    m.own, m.others = 1.33, 0.67  # a busy loop beside two threads: it gets 2/3 of a core
    steps(g, m, 20)
    assert set_to == [1] and g.threads == 1
    assert said and said[0].startswith("threads 2 -> 1 at epoch 1 step ")
    assert "0.7 of 2 cores busy" in said[0]
    m.own, m.others = 1.0, 1.0  # at one thread the neighbour has its core: stay at 1
    steps(g, m, 40)
    assert set_to == [1]
    m.own, m.others = 1.0, 0.0  # the neighbour left
    steps(g, m, 20)
    assert set_to == [1, 2] and g.threads == 2 and "(back up)" in said[-1]
    fig = g.figures()
    assert fig["threads"] == 2
    assert [(c["from"], c["to"]) for c in fig["thread_changes"]] == [(2, 1), (1, 2)]
    assert g.figures() == {"threads": 2}  # the changes went to one epoch's record


def test_a_short_burst_changes_nothing() -> None:
    m = FakeMachine(own=2.0, others=0.0)
    g, said, set_to = make(m)
    steps(g, m, 10)
    m.others = 1.0
    steps(g, m, 4)  # 2 s of load: under the 3 s hold
    m.others = 0.0
    steps(g, m, 20)
    assert not set_to and not said


def test_one_long_step_under_load_is_enough() -> None:
    """A collapsed step can last minutes: one window longer than the hold decides."""
    m = FakeMachine(own=1.0, others=1.0)
    g, _, set_to = make(m)
    for k, _ in enumerate(g.watch(range(2), epoch=0)):  # the first sample opens a window
        m.advance(0.5 if k == 0 else 40.0)
    assert set_to == [1]


@pytest.mark.parametrize("others,want", [(0.0, 4), (0.5, 4), (0.7, 3), (1.0, 3), (2.6, 1), (9.0, 1)])
def test_wanted_count_from_the_top(others: float, want: int) -> None:
    g, _, _ = make(FakeMachine(0, 0), threads=4, cores=4)
    assert g.want(others) == want


@pytest.mark.parametrize("others,want", [(0.0, 2), (0.2, 2), (0.3, 1), (0.6, 1), (1.4, 1)])
def test_wanted_count_at_one_thread_of_two(others: float, want: int) -> None:
    """Back up only when the neighbours leave 1.75 cores free, down above half a core."""
    g, _, _ = make(FakeMachine(0, 0))
    g.threads = 1
    assert g.want(others) == want


def test_a_neighbour_hovering_at_half_a_core_does_not_flip_the_count() -> None:
    m = FakeMachine(own=2.0, others=0.0)
    g, _, set_to = make(m)
    for k, _ in enumerate(g.watch(range(400), epoch=0)):
        m.others = 0.5 + (0.08 if k % 6 < 3 else -0.08)
        m.advance(0.5)
    assert set_to in ([], [1])  # at most down once, never back up


def test_each_epoch_opens_a_new_window() -> None:
    """Load between epochs (evaluation, drawings) does not count."""
    m = FakeMachine(own=2.0, others=0.0)
    g, _, set_to = make(m)
    steps(g, m, 10)
    m.advance(0.0)
    m.others = 2.0
    m.advance(30.0)  # a busy evaluation between two epochs
    m.others = 0.0
    for _ in g.watch(range(10), epoch=1):
        m.advance(0.5)
    assert not set_to


def test_a_checkpoint_count_is_restored_below_the_start_count() -> None:
    m = FakeMachine(own=1.0, others=1.0)
    g, _, set_to = make(m, threads=4, cores=4)
    g.restore(2)
    assert g.threads == 2 and set_to == [2]
    g.restore(9)
    assert g.threads == 4 and set_to == [2, 4]
    g.restore(None)
    assert g.threads == 4


def test_never_above_the_start_count() -> None:
    m = FakeMachine(own=1.0, others=0.0)
    g, _, set_to = make(m, threads=1, cores=8)
    steps(g, m, 50)
    assert not set_to and not g.enabled  # one thread: nothing to adapt


def test_disabled_changes_nothing() -> None:
    m = FakeMachine(own=1.0, others=1.0)
    g, said, set_to = make(m, enabled=False)
    steps(g, m, 50)
    assert not set_to and not said and g.threads == 2


def test_fixed_where_it_cannot_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    assert th.why_fixed("cuda") == "the run computes on a GPU"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert "several processes" in th.why_fixed("cpu")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("WORLD_SIZE", "2")  # one process per node of a multi-node run
    assert "several processes" in th.why_fixed("cpu")
    monkeypatch.delenv("WORLD_SIZE")
    cores = th.available_cores()
    assert "more than the cores" in th.why_fixed("cpu", threads=cores, workers=1)
    monkeypatch.setattr(th, "available_cores", lambda: 1)
    monkeypatch.setattr(th.os, "cpu_count", lambda: 4)
    assert "every core" in th.why_fixed("cpu")


def test_machine_counters_are_read() -> None:
    """On Linux the busy time of the machine is at least this process's own CPU time."""
    busy = th.machine_busy_seconds()
    if busy is None:
        pytest.skip("no /proc/stat here")
    assert busy >= th.own_cpu_seconds() > 0


def test_thread_figures_for_the_log() -> None:
    assert th.thread_figures({"threads": 2, "x": 1}) == {"threads": 2}
    changes = [{"at": "epoch 1 step 3", "from": 2, "to": 1, "others": 1.0}]
    assert th.thread_figures({"threads": 1, "thread_changes": changes}) == {
        "threads": 1, "thread_changes": changes}
