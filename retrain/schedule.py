"""The retrain's per-epoch schedule, as pure functions of the config and the epoch: the RNG
seed of an epoch, the DFS temperature and the hardening epoch, the pruning epoch, and the
cyclic multistep learning-rate factor. retrain.trainer applies them; retrain.cli reads the
pruning epoch to describe a run before it starts.
"""

from __future__ import annotations

from common.config_schema import RetrainConfig
from common.fs_settings import temperature_at


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + epoch * 10_007 + rank) % (2**63)


def harden_epoch(cfg: RetrainConfig) -> int:
    """The epoch at whose start DFS offsets become fixed (default: half of training)."""
    e = cfg.fs.harden_epoch
    return cfg.epochs // 2 if e is None else int(e)


def prune_epoch(cfg: RetrainConfig) -> int | None:
    """The epoch at whose start the network is pruned (`prune.at` of the epochs, at least one
    epoch before and after), or None without `prune.params`."""
    if cfg.prune.params is None:
        return None
    return min(max(round(float(cfg.prune.at) * cfg.epochs), 1), max(int(cfg.epochs) - 1, 1))


def temperature_of_epoch(cfg: RetrainConfig, epoch: int, harden_at: int) -> float:
    """DFS softmax temperature for `epoch`: geometric from fs.temperature.start (first epoch)
    to .end (last epoch before hardening)."""
    t = cfg.fs.temperature
    return temperature_at(t.start, t.end, "geometric",
                          min(epoch, harden_at - 1), harden_at)


class CyclicMultiStep:
    """The learning-rate factor of epoch e: `gamma` to the number of `milestones` (fractions of
    a cycle) passed in e's cycle; `cycles` cycles of epochs/cycles epochs each, every one
    restarting at factor 1. One cycle with milestones 0.5, 0.75 is the CIFAR ResNet
    baselines' schedule (lr / 10 at 1/2 and 3/4 of training); four are FSNet's cyclical one.
    A plain object (not a lambda) so that LambdaLR's state_dict, and so resume, keep it."""

    def __init__(self, epochs: int, milestones: list[float], gamma: float, cycles: int) -> None:
        self.epochs, self.cycles = int(epochs), int(cycles)
        self.milestones, self.gamma = [float(m) for m in milestones], float(gamma)

    def __call__(self, epoch: int) -> float:
        # Exact position in the cycle: the fractional part of epoch * cycles / epochs.
        where = (epoch * self.cycles % self.epochs) / self.epochs
        return self.gamma ** sum(where >= m for m in self.milestones)
