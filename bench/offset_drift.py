"""How far a search's DFS offset logits move, and where a paper-length search would take them
(figures, not a test).

    .venv/bin/python bench/offset_drift.py CKPT_1.pt CKPT_2.pt [...] [--target-steps 19550]

Give two or more `checkpoint.pt` copies of one search, taken at different epochs (a search
keeps only its latest; copy it after each epoch). For each: the architecture steps taken
(the offset logits' Adam step count), the mean offset entropy H (nats; ln M = uniform) at
the checkpoint's temperature, the mean largest offset weight, and the spread of the logits
d = rms over filters of the logits' deviation from their row mean.

Extrapolation to `--target-steps` (default 19,550: DARTS's 50 epochs x 391 steps, the
25,000-image architecture half of CIFAR-10 in batches of 64), keeping each filter's logit
direction and scaling its size:

* fitted: d grows as steps^a, a fitted on the checkpoints (log-log least squares); a = 1 is
  drift in a steady direction, a = 0.5 a random walk;
* linear: a = 1, the most a steady Adam drift gives (Adam moves a logit by at most about
  lr per step).

The entropies printed are those of softmax(scaled logits / T).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def read(path: Path) -> tuple[int, float, list[torch.Tensor]]:
    """(architecture steps, temperature, offset logits per DFS layer) of a search checkpoint."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such file; give copies of one search's checkpoint.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # not a torch file, truncated, ...
        raise SystemExit(f"{path} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("kind") != "search":
        raise SystemExit(f"{path} is not a search checkpoint")
    logits = [v.float() for k, v in state["model"].items() if k.endswith("offset_logits")]
    if not logits:
        raise SystemExit(f"{path} holds no DFS offset logits (a search with --fs dfs has them)")
    steps = max(int(s["step"]) for s in state["architect"]["optimizer"]["state"].values())
    return steps, float(state.get("temperature") or 1.0), logits


def figures(logits: list[torch.Tensor], temperature: float, scale: float = 1.0) -> dict[str, float]:
    rows = torch.cat([x.reshape(-1, x.shape[-1]) for x in logits]).double() * scale
    p = torch.softmax(rows / temperature, dim=1)
    h = -(p * p.clamp_min(1e-300).log()).sum(1)
    dev = rows - rows.mean(1, keepdim=True)
    return {"H": h.mean().item(), "max_w": p.max(1).values.mean().item(),
            "d": dev.pow(2).mean().sqrt().item(), "M": rows.shape[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--target-steps", type=int, default=50 * math.ceil(25_000 / 64))
    a = ap.parse_args()
    runs = sorted((read(p) for p in a.checkpoints), key=lambda r: r[0])
    rows = [(s, t, figures(lg, t)) for s, t, lg in runs]
    m = rows[0][2]["M"]
    print(f"{sum(x.numel() for x in runs[0][2]) // m:,} filters, M = {m} offsets "
          f"(uniform: H = ln {m} = {math.log(m):.5f}, max weight {1 / m:.4f})\n")
    print("| arch steps | T | H (nats) | ln M - H | mean max weight | logit spread d |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s, t, f in rows:
        print(f"| {s} | {t:g} | {f['H']:.5f} | {math.log(m) - f['H']:.2e} | {f['max_w']:.4f} "
              f"| {f['d']:.3e} |")
    if len({s for s, _, _ in rows}) < 2:
        raise SystemExit("\nneed checkpoints at two or more step counts to extrapolate")
    x = np.log([s for s, _, _ in rows])
    y = np.log([f["d"] for _, _, f in rows])
    slope = float(np.polyfit(x, y, 1)[0])
    last_s, last_t, last = runs[-1]
    print(f"\nfitted growth: d ~ steps^{slope:.2f}")
    print(f"\nat {a.target_steps:,} architecture steps (from the last checkpoint, {last_s} steps):")
    for name, power in (("fitted", slope), ("linear", 1.0)):
        f = figures(last, last_t, (a.target_steps / last_s) ** power)
        print(f"- {name} (a = {power:.2f}): H = {f['H']:.4f} nats, mean max weight "
              f"{f['max_w']:.4f}, d = {f['d']:.3f}")


if __name__ == "__main__":
    main()
