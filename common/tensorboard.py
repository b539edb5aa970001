"""TensorBoard event files beside log.jsonl, for search and retrain (config `log.tensorboard`,
flag --tensorboard; off by default: a run's figures are all in log.jsonl, and the event files
cost a heat map per search epoch).

A sink fed the records the pipelines write to log.jsonl, one per epoch, so the two always
agree: every number of a record is a scalar of the same name at step = epoch (a dict of
numbers, e.g. free_ops, as `key/sub`; None and booleans are left out); the images a pipeline
draws of a record are added as they are (a search's alphas heat maps, search.outputs), and a
record's genotype is a text entry per epoch. E[P], the
derived count and the budget share one chart (custom scalars).

    tensorboard --logdir runs/

Event files go to RUN_DIR/tensorboard/. A resumed run purges the events from the epoch it
repeats on, as it truncates log.jsonl there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SUBDIR = "tensorboard"
SIZE_CHART = ["expected_params", "params", "budget"]


def scalars_of(record: dict[str, Any]) -> dict[str, float]:
    """The scalar tags and values a record gives (see the module docstring)."""
    out: dict[str, float] = {}

    def add(tag: str, v: Any) -> None:
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[tag] = float(v)
        elif isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(x, (dict, list)):
                    add(f"{tag}/{k}", x)

    for key, value in record.items():
        if key != "epoch":
            add(key, value)
    return out


class TensorBoardLog:
    """The event-file sink of one run (inactive when not `enabled`: ranks other than 0, or
    log.tensorboard off). The writer opens at the first record, purging later steps."""

    def __init__(self, run_dir: str | Path, enabled: bool,
                 images_of: Callable[[dict[str, Any]], dict[str, np.ndarray]] | None = None) -> None:
        self.dir, self.enabled = Path(run_dir) / SUBDIR, bool(enabled)
        self.images_of = images_of  # the pipeline's own pictures of a record (search: alphas)
        self._writer = None

    def _open(self, first_step: int):
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(self.dir), purge_step=first_step)
        w.add_custom_scalars({"size": {"E[P] against the budget": ["Multiline", SIZE_CHART]}})
        return w

    def write(self, record: dict[str, Any]) -> None:
        """Log one epoch's record (a log.jsonl line)."""
        if not self.enabled:
            return
        step = int(record["epoch"])
        if self._writer is None:
            self._writer = self._open(step)
        w = self._writer
        for tag, value in scalars_of(record).items():
            w.add_scalar(tag, value, step)
        for tag, img in (self.images_of(record) if self.images_of else {}).items():
            w.add_image(tag, img, step, dataformats="HWC")
        if record.get("genotype"):
            from genotypes import from_dict, genotype_lines

            text = "\n".join(genotype_lines(from_dict(record["genotype"])))
            w.add_text("genotype", f"```\n{text}\n```", step)
        w.flush()  # every epoch: an interrupted run keeps what log.jsonl has

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
