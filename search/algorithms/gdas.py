"""GDAS (Dong & Yang, CVPR 2019): one sampled op per edge per step, by Gumbel-softmax.

For each edge, with logits alpha and temperature tau,

    g_o ~ Gumbel(0, 1),   p = softmax((log_softmax(alpha) + g) / tau),   k = argmax_o p_o
    h = one_hot(k) - stopgrad(p) + p       (forward: one-hot; backward: d h / d alpha = d p / d alpha)
    edge(x) = h_k * op_k(x) + sum_{o != k} h_o

so only op k runs, and every alpha of the edge gets a gradient (the other h_o are 0 in value;
their gradient is the sum of the output's gradient). A sample with inf/NaN is drawn again.
tau falls linearly from `gdas.tau_start` (10) at the first epoch to `gdas.tau_end` (0.1) at
the last, as in the GDAS code. Architecture steps are first order. In evaluation mode the
edge runs its most likely op (the argmax of alpha, no noise), so validation figures are
those of the current derived ops and draw nothing from the random stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from common.fs_settings import temperature_at
from common.schema import key, section
from search.algorithms.base import Algorithm, register
from space.darts.supernet import CellWeights, SearchNetwork


def gumbel_hard(alphas: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """(straight-through one-hot weights, sampled index) per row of `alphas` (module docstring)."""
    while True:
        gumbels = -torch.empty_like(alphas).exponential_().log()
        probs = F.softmax((alphas.log_softmax(dim=-1) + gumbels) / tau, dim=-1)
        if torch.isfinite(gumbels).all() and torch.isfinite(probs).all():
            break
    index = probs.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
    return one_hot - probs.detach() + probs, index.squeeze(-1)


class GumbelWeighting:
    """`SearchNetwork.weighting` for GDAS: a fresh hard sample per cell kind and forward."""

    def __init__(self, tau: float) -> None:
        self.tau = float(tau)

    def __call__(self, net: SearchNetwork, reduction: bool) -> CellWeights:
        alphas = net.alphas_reduce if reduction else net.alphas_normal
        if not net.training:
            index = alphas.argmax(dim=-1)
            return CellWeights(F.one_hot(index, alphas.shape[-1]).to(alphas.dtype), None,
                               index.tolist())
        weights, index = gumbel_hard(alphas, self.tau)
        return CellWeights(weights, None, index.tolist())


@dataclass
class GdasTemperature:
    """GDAS's Gumbel-softmax temperature, linear over the epochs."""

    tau_start: float = key(10.0, "gdas: temperature at the first epoch", lo=0.0, lo_open=True)
    tau_end: float = key(0.1, "gdas: temperature at the last epoch", lo=0.0, lo_open=True)


@dataclass
class GdasKeys:
    """GDAS's keys in the `search` section: the `gdas` section."""

    gdas: GdasTemperature = section(GdasTemperature)


@register("gdas", config=GdasKeys)
class Gdas(Algorithm):
    """Gumbel-softmax hard sampling with an annealed temperature, first order."""

    orders = ("first",)

    def attach(self, net: SearchNetwork) -> None:
        net.weighting = GumbelWeighting(self.cfg.gdas.tau_start)

    def tau(self, epoch: int, epochs: int) -> float:
        g = self.cfg.gdas
        return temperature_at(g.tau_start, g.tau_end, "linear", epoch, epochs)

    def start_epoch(self, net: SearchNetwork, epoch: int, epochs: int) -> dict[str, float]:
        tau = self.tau(epoch, epochs)
        net.weighting.tau = tau
        return {"tau": tau}
