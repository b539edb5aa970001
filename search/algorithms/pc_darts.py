"""PC-DARTS (Xu et al., ICLR 2020): partial channel connections and edge normalisation.

Each edge mixes its ops on 1/K of its channels and shuffles them with the rest
(space/darts/partial.py), and each node sums its incoming edges weighted by

    edge_e = softmax_{f -> node(e)}(beta_f)_e

(space.darts.supernet.node_softmax), so that the sampled channels do not make the edge choice
unstable. The genotype is derived from softmax(alpha_e) * edge_e (the op choice is
unchanged; the edge choice is beta-weighted), and the budget's E[P] scales the edge
strengths by the same edge_e. The `pc-darts` preset holds the paper's defaults
(batch 256, weight lr 0.1, architecture lr 6e-4, 15 warm-up epochs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.schema import key
from search.algorithms.base import Algorithm, register


@dataclass
class PCDartsKeys:
    """PC-DARTS's keys in the `search` section."""

    partial_channels: int = key(4, "pc-darts: each edge mixes its ops on 1/K of the channels",
                                lo=1)


@register("pc-darts", config=PCDartsKeys)
class PCDarts(Algorithm):
    """Partial channels (1/`partial_channels`) with edge normalisation."""

    def describe(self) -> str:
        return f" 1/{self.cfg.partial_channels} channels"

    def build_hint(self) -> str:
        if int(self.cfg.partial_channels) <= 1:
            return ""
        return (f" (pc-darts: each edge's ops have init_channels/{self.cfg.partial_channels} "
                "channels; raise init_channels or lower --partial-channels)")

    def network_options(self) -> dict[str, Any]:
        return {"partial_channels": int(self.cfg.partial_channels), "edge_norm": True}
