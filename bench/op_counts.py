"""The ATen ops one training step calls, in this checkout and in another (e.g. an earlier
commit): a count-by-count comparison that machine noise cannot blur (figures, not a
test).

    .venv/bin/python bench/op_counts.py OTHER_CHECKOUT [--step retrain|search1|search2|all]
        [--fs off|dfs] [--aten-stats]

Step times on a small shared VM vary by up to 30% between processes, so a few percent
between two checkouts takes many interleaved rounds to resolve (bench/against.py). Whether
the code does more work is a sharper question: this runs one step per checkout under
torch.profiler, after two warm-up steps, and lists every ATen op whose call count differs.
Equal counts mean the two checkouts do the same arithmetic; a time difference is then noise
or dispatch overhead, not extra work.

* retrain: DARTS_V2, C=16, 8 cells, auxiliary head, drop path 0.1, batch 64, channels_last,
  a hand-written SGD step (zero grad, forward, backward, clip 5, step);
* search1 / search2: SearchNetwork C=8, 5 cells, batch 32, a first- / second-order step of
  the checkout's search/architect.py, then the same hand-written weight step.

Each checkout runs in its own process with its own code (PYTHONPATH), the APIs used
(retrain.model.NetSpec/build_network, SearchNetwork (space.darts.supernet; space.supernet
before the layers/darts split), search.architect.Architect) exist in every checkout since
commit cf9c511^. `--aten-stats` switches
off the search supernet's exact batch statistics where the checkout can
(space.layers.fused.exact_batch_stats, from f480fb3 on; between 7026c66 and it they were always on),
to compare the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
STEPS = ("retrain", "search1", "search2")


def worker(checkout: str, step: str, fs_mode: str, aten_stats: bool) -> dict[str, int]:
    """{op name: calls} of one step of `step` in the checkout on sys.path."""
    sys.path.insert(0, checkout)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from genotypes import FSSpec, load_genotype

    torch.set_num_threads(2)
    torch.manual_seed(0)
    fs = None if fs_mode == "off" else FSSpec(2.0, True, 4)
    if step == "retrain":
        from retrain.model import NetSpec, build_network

        spec = NetSpec(load_genotype("DARTS_V2"), 16, 8, 10, (32, 32), auxiliary=True, fs=fs)
        net = build_network(spec).to(memory_format=torch.channels_last).train()
        net.drop_path_prob = 0.1
        x = torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (64,))
        lower, upper, arch = list(net.parameters()), [], None

        def loss():
            logits, aux = net(x)
            return F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
    else:
        from search.architect import Architect

        try:
            from space.darts.supernet import SearchNetwork
        except ImportError:  # a checkout from before space/darts/ (space/supernet.py)
            from space.supernet import SearchNetwork

        net = SearchNetwork(8, 10, 5, fs=fs).train()
        if aten_stats:
            try:
                from space.layers.fused import exact_batch_stats
            except ImportError:
                try:  # a checkout from before space/layers/
                    from space.fused import exact_batch_stats
                except ImportError:  # a checkout from before them: nothing to switch off
                    exact_batch_stats = None
            if exact_batch_stats is not None:
                exact_batch_stats(net, False)
        upper, lower = net.arch_parameters() + net.offset_parameters(), net.weight_parameters()
        g = torch.Generator().manual_seed(1)
        xt, xv = (torch.randn(32, 3, 32, 32, generator=g) for _ in range(2))
        yt, yv = (torch.randint(0, 10, (32,), generator=g) for _ in range(2))
        order = "first" if step == "search1" else "second"

        def loss():
            return F.cross_entropy(net(xt), yt)
    opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9, weight_decay=3e-4)
    if step != "retrain":
        arch = Architect(net, upper, lower, opt, order=order)

    def one_step() -> None:
        if arch is not None:
            arch.step(xt, yt, xv, yv, 0.025)
        opt.zero_grad(set_to_none=True)
        loss().backward()
        for p in upper:  # the weight step leaves the upper level's gradients alone
            p.grad = None
        nn.utils.clip_grad_norm_(lower, 5.0)
        opt.step()

    for _ in range(2):
        one_step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one_step()
    return {e.key: e.count for e in prof.key_averages() if e.key.startswith("aten::")}


def counts(checkout: Path, step: str, fs_mode: str, aten_stats: bool) -> dict[str, int]:
    args = [sys.executable, str(HERE), "--worker", str(checkout), "--step", step, "--fs", fs_mode]
    r = subprocess.run(args + (["--aten-stats"] if aten_stats else []), cwd=checkout,
                       env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True,
                       text=True, check=False)
    if r.returncode:
        raise SystemExit(f"{step} failed in {checkout}:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, nargs="?", help="the other checkout (a git worktree, say)")
    ap.add_argument("--step", choices=[*STEPS, "all"], default="all")
    ap.add_argument("--fs", choices=["off", "dfs"], default="dfs")
    ap.add_argument("--aten-stats", action="store_true",
                    help="the search supernet without its exact batch statistics")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.step, a.fs, a.aten_stats)))
        return
    if a.other is None:
        ap.error("name the other checkout")
    this, other = HERE.parents[1], a.other.resolve()
    if not all((other / pkg / "__init__.py").is_file() for pkg in ("space", "search", "retrain")):
        ap.error(f"{other} has no space/, search/ and retrain/ packages; give a checkout of "
                 "this project")
    for step in STEPS if a.step == "all" else (a.step,):
        mine, theirs = (counts(c, step, a.fs, a.aten_stats) for c in (this, other))
        diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        print(f"\n{step}, fs {a.fs}{', ATen batch statistics' if a.aten_stats else ''}: "
              f"{sum(mine.values()):,} ATen calls here, {sum(theirs.values()):,} in {a.other}; "
              + ("the same count of every op" if not diff else f"{len(diff)} ops differ:"))
        for k in diff:
            print(f"  {k:<40} {mine.get(k, 0):>7} here {theirs.get(k, 0):>7} there")


if __name__ == "__main__":
    main()
