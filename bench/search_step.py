"""Time one full DARTS search step on CPU (figures, not a test).

    .venv/bin/python bench/search_step.py [--fs off|fs|dfs|ratios|all] [--order 1|2|both]
        [--algo darts|pc-darts|gdas|all] [--steps 5] [--warmup 1] [--threads 2] [--repeat 1]
        [--reference PATH/TO/darts/cnn] [--compile]

A step is the architecture step then the weight step. 1st order: loss on a valid batch ->
gradient to the upper level (alphas, plus DFS offset logits) -> Adam; loss on a train batch ->
backward -> clip 5 -> SGD (momentum 0.9, wd 3e-4). 2nd order: the unrolled step (virtual SGD
step w' = w - xi*(dL_train/dw + momentum*buf + wd*w); valid loss at w' -> gradients to alpha
and w'; finite-difference Hessian-vector product at w +- eps*dw', eps = 0.01/||dw'||;
grad_alpha -= xi*(g+ - g-)/(2 eps)), written here with torch.func.functional_call.

Rows (`--fs ratios`: DFS with each op's ratio searched among 1, 2, 4, 8, nested summaries,
against plain DFS):

* `ours`: SearchNetwork (fast path) stepped by search/architect.py's Architect and
  common/weight_step.py's WeightStep: the code the search runs. With --algo, one such row
  per algorithm (`pc-darts`: partial channels 1/4 and edge normalisation; `gdas`: one
  sampled op per edge, first order only), compared with the DARTS row.
* `naive`: the same network with fast=False (all 8 ops including none, sum(w*op(x)),
  contiguous format), stepped by the architecture step written out above; always run.
* with --reference pointing at a quark0/darts checkout's cnn/ directory (fs off only; its
  modules are imported at run time, never copied, with .cuda() patched to a no-op):
  `reference`, its own code as train_search.py runs it (model_search.Network stepped by
  architect.Architect, then the weight step), and `ref-lean`, its Network stepped by the
  step written out above. The lean step asks autograd for the upper-level gradients only,
  where the reference's first-order step also computes every weight gradient and its
  second-order step builds a fresh network per step: `ref-lean` is the stricter baseline.
* with --pc-reference pointing at a yuhuixu1993/PC-DARTS checkout (fs off, with --algo
  pc-darts or all): `reference` rows for PC-DARTS, its model_search.Network stepped by its
  own architect.Architect, compared with our pc-darts rows.

Each row runs in its own process so its peak memory (VmHWM after setup, minus the RSS before
the first step) is its own; rows are interleaved over --repeat rounds so machine noise hits
all alike.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDERS = {"1": [1], "2": [2], "both": [1, 2]}
FS_MODES = {"off": ["off"], "fs": ["fs"], "dfs": ["dfs"], "ratios": ["dfs", "ratios"],
            "all": ["off", "fs", "dfs", "ratios"]}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _load_reference(path: str, module: str = "model_search", cpu: bool = True):
    """A quark0/darts module (model_search, architect), imported from `path` without copying
    its code. Its top-level `genotypes`/`operations` would shadow ours, so they are swapped
    out meanwhile. `cpu`: the reference moves tensors and new networks to the GPU with
    .cuda(); make that a no-op so that everything stays on the CPU."""
    import torch

    if cpu:
        torch.Tensor.cuda = lambda self, *a, **k: self
        torch.nn.Module.cuda = lambda self, *a, **k: self
    names = ("genotypes", "operations", "model_search", "architect")
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in names}
    sys.path.insert(0, path)
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(path)
        for k in [k for k in sys.modules if k.split(".")[0] in names]:
            del sys.modules[k]
        sys.modules.update(saved)


def _build(job: dict):
    import torch
    import torch.nn as nn

    sys.path.insert(0, str(ROOT))
    from common.schema import build
    from genotypes import FSSpec
    from search.algorithms import make_algorithm
    from search.settings import SearchConfig
    from space.darts.supernet import SearchNetwork

    torch.manual_seed(0)
    if job["impl"] in ("reference", "ref-lean"):
        net = _load_reference(job["reference"]).Network(job["C"], 10, job["layers"], nn.CrossEntropyLoss())
        return net, list(net.arch_parameters()), list(net.parameters())
    fs = {"off": None, "fs": FSSpec(2.0, False, 4), "dfs": FSSpec(2.0, True, 4),
          "ratios": FSSpec(2.0, True, 4)}[job["fs"]]
    ratios = (1, 2, 4, 8) if job["fs"] == "ratios" else None
    # a typed search config, as the search builds it (make_algorithm reads its attributes)
    cfg = build(SearchConfig, {"algorithm": job["algo"], "partial_channels": 4,
                               "arch": {"order": {1: "first", 2: "second"}[job["order"]]},
                               "gdas": {"tau_start": 10.0, "tau_end": 0.1}})
    algo = make_algorithm(cfg)
    net = SearchNetwork(job["C"], 10, job["layers"], fs=fs, fast=job["impl"] == "ours",
                        ratios=ratios, **algo.network_options())
    algo.attach(net)
    if job["compile"] and job["impl"] == "ours":
        net.forward = torch.compile(net.forward)
    upper = net.arch_parameters() + net.offset_parameters()
    ids = {id(p) for p in upper}
    return net, upper, [p for p in net.parameters() if id(p) not in ids]


def worker(job: dict) -> dict:
    """Run one row in this process: setup, warmup, timed steps; timings and peak memory."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.func import functional_call

    torch.set_num_threads(job["threads"])
    net, upper, lower = _build(job)
    net.train()
    names = {id(p): n for n, p in net.named_parameters()}
    lower_names = [names[id(p)] for p in lower]
    g = torch.Generator().manual_seed(1)
    n, s = job["batch"], job["size"]
    xt, xv = torch.randn(n, 3, s, s, generator=g), torch.randn(n, 3, s, s, generator=g)
    yt, yv = torch.randint(0, 10, (n,), generator=g), torch.randint(0, 10, (n,), generator=g)
    w_opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(upper, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    xi, wd, mom = 0.025, 3e-4, 0.9

    stats = [k for k, _ in net.named_buffers() if k.rsplit(".", 1)[-1].startswith(("running_", "num_"))]

    def floss(ws, x, y):
        # Functional loss at weights `ws`; cloned statistics keep the live BN ones intact.
        tensors = dict(zip(lower_names, ws, strict=True))
        buffers = dict(net.named_buffers())
        tensors.update({k: buffers[k].clone() for k in stats})
        return F.cross_entropy(functional_call(net, tensors, (x,)), y)

    def grads(loss, inputs):
        return torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)

    def arch_grad_unrolled():
        w = [p.detach() for p in lower]
        gw = grads(floss(lower, xt, yt), lower)
        w1 = []
        for p, gp in zip(lower, gw, strict=True):
            buf = w_opt.state.get(p, {}).get("momentum_buffer")
            step = gp + wd * p.detach() + (mom * buf if buf is not None else 0.0)
            w1.append((p.detach() - xi * step).requires_grad_(True))
        gv = grads(floss(w1, xv, yv), [*upper, *w1])
        d_up, d_w = gv[: len(upper)], gv[len(upper):]
        eps = 0.01 / torch.sqrt(sum((t * t).sum() for t in d_w)).item()
        gp = grads(floss([a + eps * b for a, b in zip(w, d_w, strict=True)], xt, yt), upper)
        gm = grads(floss([a - eps * b for a, b in zip(w, d_w, strict=True)], xt, yt), upper)
        return [d - xi * (p_ - m_) / (2 * eps) for d, p_, m_ in zip(d_up, gp, gm, strict=True)]

    arch_step = weight_step = None
    if job["impl"] == "ours":  # the search loop's own architect and weight step
        from common.runtime import grad_scaler
        from common.weight_step import WeightStep
        from search.architect import Architect

        ours = Architect(net, upper, lower, w_opt, order={1: "first", 2: "second"}[job["order"]])
        cpu = torch.device("cpu")
        ours_w = WeightStep(w_opt, grad_scaler(cpu, False), cpu, False,
                            clipped=lower, clip=5.0, frozen=upper)

        def arch_step():
            ours.step(xt, yt, xv, yv, xi)

        def weight_step():
            ours_w(lambda x, y: (F.cross_entropy(logits := net(x), y), logits), xt, yt)
    elif job["impl"] == "reference":  # quark0/darts's own architect, as train_search.py calls it
        args = argparse.Namespace(momentum=mom, weight_decay=wd, arch_learning_rate=3e-4,
                                  arch_weight_decay=1e-3)
        theirs = _load_reference(job["reference"], "architect").Architect(net, args)

        def arch_step():
            theirs.step(xt, yt, xv, yv, xi, w_opt, unrolled=job["order"] == 2)

    def step():
        if arch_step is not None:
            arch_step()
        else:
            if job["order"] == 1:
                ga = grads(F.cross_entropy(net(xv), yv), upper)
            else:
                ga = arch_grad_unrolled()
            for p, gp in zip(upper, ga, strict=True):
                p.grad = gp
            a_opt.step()
        if weight_step is not None:
            weight_step()
            return
        w_opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(xt), yt).backward()
        for p in upper:
            p.grad = None
        nn.utils.clip_grad_norm_(lower, 5.0)
        w_opt.step()

    rss0 = _status_kb("VmRSS")
    for _ in range(job["warmup"]):
        step()
    times = []
    for _ in range(job["steps"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"times": times, "peak_kb": _status_kb("VmHWM") - rss0}


def _run_job(job: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"bench worker failed for {job}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds of all rows")
    ap.add_argument("--order", choices=list(ORDERS), default="both")
    ap.add_argument("--fs", choices=list(FS_MODES), default="all")
    ap.add_argument("--algo", choices=["darts", "pc-darts", "gdas", "all"], default="darts",
                    help="search algorithm(s) of the `ours` rows")
    ap.add_argument("--reference", help="a quark0/darts checkout's cnn/ directory")
    ap.add_argument("--pc-reference", help="a yuhuixu1993/PC-DARTS checkout (its top folder)")
    ap.add_argument("--compile", action="store_true", help="torch.compile our forward")
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.reference and not (Path(args.reference) / "model_search.py").is_file():
        raise SystemExit(f"--reference {args.reference}: no model_search.py there; pass the "
                         "cnn/ directory of a quark0/darts checkout")
    common = {k: getattr(args, k) for k in ("steps", "warmup", "threads", "C", "layers", "batch",
                                            "size", "compile")}
    algos = ["darts", "pc-darts", "gdas"] if args.algo == "all" else [args.algo]
    jobs = []
    for order in ORDERS[args.order]:
        for fs in FS_MODES[args.fs]:
            impls = ["ours", "naive"] + (["reference", "ref-lean"] if args.reference and fs == "off" else [])
            jobs += [{**common, "impl": i, "fs": fs, "order": order, "algo": "darts",
                      "reference": args.reference}
                     for i in impls if "darts" in algos or i != "ours"]
            for a in algos:
                if a == "darts" or (a == "gdas" and order == 2):
                    continue
                jobs.append({**common, "impl": "ours", "fs": fs, "order": order, "algo": a})
                if a == "pc-darts" and args.pc_reference and fs == "off":
                    jobs.append({**common, "impl": "reference", "fs": fs, "order": order,
                                 "algo": a, "reference": args.pc_reference})
    results: dict[int, dict] = {i: {"times": [], "peak_kb": 0} for i in range(len(jobs))}
    for r in range(args.repeat):
        for i, job in enumerate(jobs):
            print(f"[round {r + 1}/{args.repeat}] {job['impl']} {job['algo']} fs={job['fs']} "
                  f"order={job['order']} ...", file=sys.stderr, flush=True)
            res = _run_job(job)
            results[i]["times"] += res["times"]
            results[i]["peak_kb"] = max(results[i]["peak_kb"], res["peak_kb"])
    print(f"\nC={args.C}, {args.layers} cells, batch {args.batch}, {args.size}x{args.size}, "
          f"10 classes, {args.threads} threads, {args.steps} steps x {args.repeat} rounds "
          f"(median){', torch.compile' if args.compile else ''}\n")
    print("| impl | algo | fs | order | ms/step | images/s | peak MiB | vs naive | vs reference "
          "| vs ref-lean | time / darts | memory / darts |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    med = {i: statistics.median(results[i]["times"]) for i in results}
    key = {(j["impl"], j["algo"], j["fs"], j["order"]): i for i, j in enumerate(jobs)}

    def speedup(base: int | None, i: int) -> str:
        return f"{med[base] / med[i]:.2f}x" if base is not None else ""

    for i, job in enumerate(jobs):
        vs = [speedup(key.get(b), i) for b in (("naive", "darts", job["fs"], job["order"]),
                                               ("reference", job["algo"], "off", job["order"]),
                                               ("ref-lean", job["algo"], "off", job["order"]))]
        darts = key.get(("ours", "darts", job["fs"], job["order"])) if job["impl"] == "ours" else None
        vs += ["", ""] if darts is None else [
            f"{med[i] / med[darts]:.2f}x",
            f"{results[i]['peak_kb'] / max(1, results[darts]['peak_kb']):.2f}x"]
        print(f"| {job['impl']} | {job['algo']} | {job['fs']} | {job['order']} | {med[i] * 1e3:.0f} | "
              f"{args.batch / med[i]:.1f} | {results[i]['peak_kb'] / 1024:.0f} | {' | '.join(vs)} |")
    off = {o: key.get(("ours", "darts", "off", o)) for o in ORDERS[args.order]}
    for i, job in enumerate(jobs):
        if (job["impl"] == "ours" and job["algo"] == "darts" and job["fs"] != "off"
                and off.get(job["order"]) is not None):
            print(f"\n{job['fs'].upper()} vs FS off (ours, order {job['order']}): "
                  f"{med[i] / med[off[job['order']]]:.2f}x the time", end="")
    dfs = {o: key.get(("ours", "darts", "dfs", o)) for o in ORDERS[args.order]}
    for i, job in enumerate(jobs):
        if (job["impl"] == "ours" and job["algo"] == "darts" and job["fs"] == "ratios"
                and dfs.get(job["order"]) is not None):
            print(f"\nratio search vs DFS (ours, order {job['order']}): "
                  f"{med[i] / med[dfs[job['order']]]:.2f}x the time (target <= 1.3x)", end="")
    print()
    print("\nimages/s: training-batch images per full search step (arch step + weight step).")


if __name__ == "__main__":
    main()
