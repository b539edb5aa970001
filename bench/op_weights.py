"""Where a search puts its op weight, epoch by epoch (figures, not a test).

    .venv/bin/python bench/op_weights.py RUN_DIR [RUN_DIR ...] [--cell normal|reduce] [--epochs 0,1,2]

Reads each search's log.jsonl (its softmax(alpha) per epoch) and prints, per epoch, each op's
weight averaged over the cell's 14 edges (1/8 = 0.125 each when uniform), with E[P] beside
it. A size budget that moves the op weights shows as the parametric ops losing weight in the
first architecture epoch, when E[P] first drops (search.penalty, `budget.acts_on`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genotypes import PRIMITIVES  # noqa: E402
from genotypes.plot import RunLogError, read_log  # noqa: E402

SHORT = {"none": "none", "max_pool_3x3": "max", "avg_pool_3x3": "avg", "skip_connect": "skip",
         "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3",
         "dil_conv_5x5": "dil5"}


def mean_op_weights(record: dict, cell: str) -> list[float]:
    """Each op's weight averaged over the cell's edges, in PRIMITIVES order."""
    rows = record[f"alphas_{cell}"]
    return [sum(r[k] for r in rows) / len(rows) for k in range(len(PRIMITIVES))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--cell", choices=("normal", "reduce"), default="normal")
    p.add_argument("--epochs", help="comma-separated epochs (0-based, as log.jsonl counts) to "
                   "print, the last one always (default: all)")
    a = p.parse_args()
    keep = None if a.epochs is None else {int(e) for e in a.epochs.split(",")}
    for run in a.runs:
        try:
            records = read_log(run)
        except RunLogError as e:
            raise SystemExit(f"error: {e}") from None
        print(f"{run} ({a.cell} cell)")
        print("epoch " + " ".join(f"{SHORT.get(o, o):>6s}" for o in PRIMITIVES) + "        E[P]")
        for rec in records:
            if keep is not None and rec["epoch"] not in keep and rec is not records[-1]:
                continue
            ep = rec.get("expected_params")
            print(f"{rec['epoch']:5d} " + " ".join(f"{w:6.3f}" for w in mean_op_weights(rec, a.cell))
                  + (f"  {ep:>10,.0f}" if ep is not None else ""))


if __name__ == "__main__":
    main()
