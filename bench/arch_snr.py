"""How much signal the architecture gradient carries at a search checkpoint (figures, not a
test).

    .venv/bin/python bench/arch_snr.py RUN_DIR [--checkpoint FILE] [--plain] [--batches N]

Rebuilds the search of RUN_DIR (its config.yaml) at its checkpoint, then takes the first-order
validation gradient g_b = dL_val(w, alpha)/dalpha of every batch b = 1..B of the
architecture half (training augmentation, BatchNorm in training mode: what an architecture
step of DARTS sees), without changing any weight. `--plain` takes the same images in the same
batches (the run's architecture sampler) through the evaluation transform instead: what a step
with `arch.augment: false` sees. Per alpha element, over the B batches:

    mean m, standard deviation s (printed: ||m||, the median s and the median ||g_b - m||),
    per-batch SNR = |m| / s,
    z of the whole half = |m| / (s / sqrt(B))     (|z| > 2 for ~4.6% of elements by chance)

Per edge, the ops ranked by m (the most negative gradient is the op the step favours): the
margin of the best op over the second, in units of its standard error over the batches; and
the number of batches an epoch would need for that margin to reach 3 standard errors. The two
ops are picked on the same batches, which biases the margin upward: the batch counts are
lower bounds.

The budget and beta-DARTS terms are deterministic functions of alpha; their gradient norm is
printed beside the data term's mean gradient norm (does the penalty dominate the step?).

Each checkpoint holds the latest epoch only: copy `checkpoint.pt` at the epochs to compare and
pass the copies with --checkpoint.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.checkpoint import load_checkpoint  # noqa: E402
from common.config import load_config_file, resolve_config  # noqa: E402
from common.data import open_dataset  # noqa: E402
from common.distributed import DistInfo  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.runtime import seed_everything, set_threads  # noqa: E402
from genotypes import PRIMITIVES  # noqa: E402
from search.data import build_search_data  # noqa: E402
from search.resolve import resolve_search  # noqa: E402
from search.trainer import SearchTrainer  # noqa: E402
from space.layers.fs_model import set_temperature  # noqa: E402


def batch_gradients(trainer: SearchTrainer, limit: int | None) -> torch.Tensor:
    """(B, 2, 14, 8): the data term's alpha gradient of each batch of the trainer's
    architecture loader, in its order."""
    net = trainer.net
    net.train()
    alphas = [net.alphas_normal, net.alphas_reduce]
    out = []
    for b, (x, y) in enumerate(trainer.data.valid):
        if limit is not None and b >= limit:
            break
        loss = F.cross_entropy(net(x), y)
        grads = torch.autograd.grad(loss, alphas)
        out.append(torch.stack([g.detach().double() for g in grads]))
    return torch.stack(out)


def edge_decisions(g: torch.Tensor) -> list[dict]:
    """Per cell of g (B, 2, E, 8): per edge the favoured op (most negative mean gradient,
    'none' excluded as the derivation excludes it), the margin over the runner-up in standard
    errors (the one-sample t statistic of their paired per-batch difference) and the batches
    that margin needs to reach 3 (9 var/mean^2 of the difference, i.e. B (3/t)^2)."""
    B = g.shape[0]
    cells = []
    for c in range(g.shape[1]):
        margins, need, best = [], [], []
        for e in range(g.shape[2]):
            ge = g[:, c, e, 1:]
            order = ge.mean(0).argsort()  # most negative first
            d = ge[:, order[1]] - ge[:, order[0]]  # > 0: the best op leads
            margins.append(float(d.mean() / (d.std() / math.sqrt(B))))
            need.append(9.0 * float(d.var() / d.mean() ** 2))
            best.append(PRIMITIVES[1 + int(order[0])])
        cells.append({"margin": margins, "batches_for_3se": need, "best": best})
    return cells


def report(g: torch.Tensor, reg_norm: float | None) -> None:
    B = g.shape[0]
    m, s = g.mean(0), g.std(0).clamp_min(1e-30)
    snr, z = m.abs() / s, m.abs() / (s / math.sqrt(B))
    print(f"{B} batches")
    print(f"  per-batch SNR |m|/s: median {snr.median():.3f}, 90th pct {snr.quantile(0.9):.3f}")
    print(f"  z of the whole half: median {z.median():.2f}; |z| > 2 for {(z > 2).double().mean():.1%} "
          f"of elements (4.6% by chance), > 3 for {(z > 3).double().mean():.1%} (0.3%)")
    print(f"  mean-gradient norm {m.norm():.3e}; one batch's gradient norm (median) "
          f"{g.flatten(1).norm(dim=1).median():.3e}; its deviation from the mean ||g_b - m|| "
          f"(median) {(g - m).flatten(1).norm(dim=1).median():.3e}; per-element s (median) "
          f"{s.median():.3e}"
          + (f"; penalty gradient norm {reg_norm:.3e}" if reg_norm is not None else ""))
    for cell, d in zip(("normal", "reduce"), edge_decisions(g), strict=True):
        mt = torch.tensor(d["margin"])
        print(f"  {cell}: best-op margin over the second, in standard errors: median "
              f"{mt.median():.2f}, edges above 3: {int((mt > 3).sum())}/{len(mt)}; batches "
              f"needed for 3 (median) {torch.tensor(d['batches_for_3se']).median():.0f}")
        print(f"    favoured ops: {', '.join(d['best'])}")


def run(a: argparse.Namespace) -> None:
    if not (a.run_dir / "config.yaml").is_file():
        raise UserError(f"{a.run_dir} is not a search run directory (no config.yaml)")
    state = load_checkpoint(a.checkpoint or a.run_dir / "checkpoint.pt", "search")
    set_threads(a.threads)
    saved = load_config_file(a.run_dir / "config.yaml")
    cfg = resolve_config("search", str(a.run_dir / "config.yaml"), [])
    cfg.data.workers = 0
    # Either transform through the run's own architecture loader (same sampler and seed), so
    # that both modes take the same images in the same batches, whatever the run trained with.
    cfg.arch.augment = not a.plain
    seed_everything(int(cfg.seed))
    train_set, _, info = open_dataset(a.dataset or saved["dataset"], cfg.data.root, False,
                                      cfg.data.input_size)
    dist = DistInfo(rank=0, world_size=1, local_rank=0)
    settings = resolve_search(cfg, info)
    trainer = SearchTrainer(settings, build_search_data(train_set, info, settings.cfg, dist),
                            torch.device("cpu"), dist)
    trainer.load_state_dict(state)
    if state.get("temperature") is not None:
        set_temperature(trainer.net, float(state["temperature"]))
    print(f"{a.run_dir} at epoch {state['epoch']} of {cfg.epochs}; architecture batches "
          + ("plain (evaluation transform)" if a.plain else "augmented (training transform)"))
    reg_norm = None
    pen = trainer.penalty
    pen.epoch = int(state["epoch"]) - 1
    if pen.active:
        reg = pen()
        if reg is not None:
            alphas = [trainer.net.alphas_normal, trainer.net.alphas_reduce]
            reg_norm = float(torch.cat([g.flatten() for g in torch.autograd.grad(
                reg, alphas, allow_unused=True, materialize_grads=True)]).norm())
    report(batch_gradients(trainer, a.batches), reg_norm)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--checkpoint", type=Path, help="default: RUN_DIR/checkpoint.pt")
    p.add_argument("--dataset", help="default: the run's dataset")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, help="use only the first N batches")
    p.add_argument("--plain", action="store_true",
                   help="batches without the training augmentation (the evaluation transform); "
                        "default: with it, whatever the run's arch.augment")
    try:
        run(p.parse_args())
    except UserError as e:  # a missing run, checkpoint or dataset: one line
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
