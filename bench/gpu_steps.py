"""CUDA figures for the first GPU run (figures, not tests; bench/device_check.sh runs them).

    python bench/gpu_steps.py SECTION --out DIR [--device cuda] [--steps 10] [--warmup 3]
        [--C 16] [--layers 8] [--batch 64] [--reference PATH/TO/darts/cnn]

Sections, each writing DIR/SECTION.json:

* `search`: the search step as search/trainer.py takes it (Architect, then WeightStep), at the
  paper's search size (C=16, 8 cells, batch 64, 32 px): first/second order x FS off/DFS x
  fp32/AMP: ms/step, images/s (training images per step), peak memory. And the architecture
  step alone in both layouts (channels_last on/off), fp32.
* `precision`: the second-order gradient in float32 against float64 on the device, with the
  architect's TF32-off step and with TF32 left on (the Hessian-vector product's error).
* `retrain`: the retrain step (DARTS_V2, C=36, 20 cells, auxiliary head, batch 96) fp32 and
  AMP, FS off and DFS, and the 600-epoch training time it implies (steps only).
* `determinism`: three search steps repeated from one seed, with runtime.deterministic off and
  on: are the weights bit-identical, and which warnings did torch give.
* `reference`: quark0/darts's own Network and Architect (from --reference, never copied) at
  the same size, first and second order, fp32: ms/step and peak memory.

bench/device_epoch.py times a whole search epoch and writes the Markdown report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from common.runtime import (  # noqa: E402
    amp_dtype,
    deterministic_pooling,
    grad_scaler,
    set_determinism,
    to_memory_format,
)
from common.runtime import channels_last as to_channels_last  # noqa: E402
from common.weight_step import WeightStep  # noqa: E402
from genotypes import FSSpec, load_genotype  # noqa: E402
from retrain.model import NetSpec, build_network  # noqa: E402
from search import architect as architect_module  # noqa: E402
from search.architect import Architect  # noqa: E402
from space.darts.supernet import SearchNetwork  # noqa: E402

DFS = FSSpec(2.0, True, 4)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, warmup: int, steps: int) -> dict:
    """Median seconds of `step()` and the peak memory (MiB) from the first call on."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"s": statistics.median(times), "peak_mib": peak}


def _batch(args, device, n=None, classes=10):
    g = torch.Generator().manual_seed(1)
    n = n or args.batch
    x = torch.randn(n, 3, args.size, args.size, generator=g).to(device)
    return x, torch.randint(0, classes, (n,), generator=g).to(device)


def _search_setup(args, device, fs, order, amp, cl, dtype=torch.float32):
    torch.manual_seed(0)
    net = SearchNetwork(args.C, 10, args.layers, fs=fs).to(device, dtype)
    net = to_channels_last(net, cl)
    upper = list(net.arch_parameters()) + list(net.offset_parameters())
    ids = {id(p) for p in upper}
    lower = [p for p in net.parameters() if id(p) not in ids]
    w_opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9, weight_decay=3e-4)
    arch = Architect(net, upper, lower, w_opt, order=order)
    ws = WeightStep(w_opt, grad_scaler(device, amp), device, amp, clipped=lower, clip=5.0,
                    frozen=upper)
    (xt, yt), (xv, yv) = _batch(args, device), _batch(args, device, classes=10)
    xt, xv = to_memory_format(xt.to(dtype), cl), to_memory_format(xv.to(dtype), cl)
    return net, arch, ws, (xt, yt, xv, yv)


def section_search(args, device) -> dict:
    set_determinism(False)
    rows = []
    for order in ("first", "second"):
        for fs_name, fs in (("off", None), ("dfs", DFS)):
            for amp in (False, True):
                net, arch, ws, (xt, yt, xv, yv) = _search_setup(args, device, fs, order, amp, True)

                def step(net=net, arch=arch, ws=ws, xt=xt, yt=yt, xv=xv, yv=yv):
                    arch.step(xt, yt, xv, yv, 0.025)
                    ws(lambda x, y: (F.cross_entropy(logits := net(x), y), logits), xt, yt)

                r = _timed(step, device, args.warmup, args.steps)
                rows.append({"order": order, "fs": fs_name, "amp": amp, "ms": 1e3 * r["s"],
                             "images_per_s": args.batch / r["s"], "peak_mib": r["peak_mib"]})
                print(rows[-1], flush=True)
                del net, arch, ws
    layouts = []
    for order in ("first", "second"):
        for cl in (True, False):
            net, arch, _, (xt, yt, xv, yv) = _search_setup(args, device, DFS, order, False, cl)
            r = _timed(lambda a=arch, b=(xt, yt, xv, yv): a.step(*b, 0.025), device,
                       args.warmup, args.steps)
            layouts.append({"order": order, "channels_last": cl, "arch_ms": 1e3 * r["s"]})
            print(layouts[-1], flush=True)
    return {"size": _size(args), "amp_dtype": str(amp_dtype()) if device.type == "cuda" else None,
            "rows": rows, "arch_step_layouts": layouts}


def _size(args) -> str:
    return f"C={args.C}, {args.layers} cells, batch {args.batch}, {args.size}x{args.size}"


def section_precision(args, device) -> dict:
    """float32 second-order pieces against float64 on the same device, FS off and DFS."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    x, y = _batch(args, device, n=32)
    xv, yv = _batch(args, device, n=32)
    rows = []
    for fs_name, fs in (("off", None), ("dfs", DFS)):
        arch = {}
        for dtype in (torch.float64, torch.float32):
            torch.manual_seed(0)
            net = SearchNetwork(8, 10, 5, fs=fs).to(device, dtype)
            upper = list(net.arch_parameters()) + list(net.offset_parameters())
            lower = [p for p in net.parameters() if id(p) not in {id(q) for q in upper}]
            opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9, weight_decay=3e-4)
            arch[dtype] = Architect(net, upper, lower, opt, order="second")
        a64, a32 = arch[torch.float64], arch[torch.float32]
        with architect_module.full_fp32():
            g64, _ = a64.gradient(x.double(), y, xv.double(), yv, 0.025)
            v64 = [torch.randn_like(p) for p in a64.lower]
            h64 = a64.hessian_vector_product(v64, x.double(), y)
        for mode in ("tf32_off", "tf32_on"):
            ctx = architect_module.full_fp32 if mode == "tf32_off" else contextlib.nullcontext
            with ctx():
                g32, _ = a32.gradient(x, y, xv, yv, 0.025)
                h32 = a32.hessian_vector_product([v.float() for v in v64], x, y)
            rows.append({"fs": fs_name, "tf32": mode == "tf32_on", "grad_rel_err": _rel(g32, g64),
                         "hvp_rel_err": _rel(h32, h64)})
            print(rows[-1], flush=True)
    return {"size": "C=8, 5 cells, batch 32; second order, float32 vs float64", "rows": rows}


def _rel(a, b) -> float:
    a = torch.cat([t.double().flatten() for t in a])
    b = torch.cat([t.double().flatten() for t in b])
    return float((a - b).norm() / b.norm())


def section_retrain(args, device) -> dict:
    set_determinism(False)
    rows, batch, steps_per_epoch = [], 96, -(-50_000 // 96)
    for fs_name, fs in (("off", None), ("dfs", DFS)):
        for amp in (False, True):
            torch.manual_seed(0)
            net = build_network(NetSpec(load_genotype("DARTS_V2"), 36, 20, 10, (32, 32),
                                        auxiliary=True, fs=fs)).to(device)
            net = to_channels_last(net, True)
            net.drop_path_prob = 0.1
            opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
            ws = WeightStep(opt, grad_scaler(device, amp), device, amp,
                            clipped=list(net.parameters()), clip=5.0)
            x, y = _batch(args, device, n=batch)
            x = to_memory_format(x, True)

            def loss(x, y, net=net):
                logits, aux = net(x)
                return F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y), logits

            net.train()
            r = _timed(lambda ws=ws, loss=loss, x=x, y=y: ws(loss, x, y), device,
                       args.warmup, args.steps)
            rows.append({"fs": fs_name, "amp": amp, "ms": 1e3 * r["s"],
                         "images_per_s": batch / r["s"], "peak_mib": r["peak_mib"],
                         "gpu_hours_600_epochs": 600 * steps_per_epoch * r["s"] / 3600})
            print(rows[-1], flush=True)
            del net, opt, ws
    for fs_name in ("off", "dfs"):
        fp32, amp = (next(r for r in rows if r["fs"] == fs_name and r["amp"] == a)
                     for a in (False, True))
        amp["amp_speedup"] = fp32["ms"] / amp["ms"]
    return {"size": "DARTS_V2, C=36, 20 cells, auxiliary, batch 96, 32x32", "rows": rows}


def section_determinism(args, device) -> dict:
    out = {}
    for deterministic in (False, True):
        set_determinism(deterministic)
        runs, seen = [], set()
        for _ in range(2):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                net, arch, ws, (xt, yt, xv, yv) = _search_setup(
                    argparse.Namespace(**{**vars(args), "C": 8, "layers": 5, "batch": 32}),
                    device, DFS, "first", False, True)
                if deterministic:
                    deterministic_pooling(net)
                for _ in range(3):
                    arch.step(xt, yt, xv, yv, 0.025)
                    ws(lambda x, y, net=net: (F.cross_entropy(logits := net(x), y), logits), xt, yt)
            seen |= {str(w.message).splitlines()[0][:160] for w in caught}
            runs.append([p.detach().clone() for p in net.parameters()])
        diff = max(float((a - b).abs().max()) for a, b in zip(*runs, strict=True))
        out["on" if deterministic else "off"] = {"bit_identical": diff == 0.0,
                                                 "max_abs_diff": diff, "warnings": sorted(seen)}
        print(deterministic, out["on" if deterministic else "off"], flush=True)
    set_determinism(False)
    return {"size": "C=8, 5 cells, DFS, batch 32, 3 search steps (first order)", **out}


def section_reference(args, device) -> dict:
    if not args.reference or not (Path(args.reference) / "model_search.py").is_file():
        return {"skipped": f"no quark0/darts cnn/ directory at {args.reference!r}"}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from search_step import _load_reference

    model_search = _load_reference(args.reference, "model_search", cpu=False)
    architect = _load_reference(args.reference, "architect", cpu=False)
    rows = []
    for order in ("first", "second"):
        try:
            torch.manual_seed(0)
            net = model_search.Network(args.C, 10, args.layers, torch.nn.CrossEntropyLoss()).to(device)
            w_opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
            hp = argparse.Namespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4,
                                    arch_weight_decay=1e-3)
            arch = architect.Architect(net, hp)
            xt, yt = _batch(args, device)
            xv, yv = _batch(args, device)

            def step(net=net, arch=arch, w_opt=w_opt, xt=xt, yt=yt, xv=xv, yv=yv, order=order):
                arch.step(xt, yt, xv, yv, 0.025, w_opt, unrolled=order == "second")
                w_opt.zero_grad()
                net._loss(xt, yt).backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                w_opt.step()

            r = _timed(step, device, args.warmup, args.steps)
            rows.append({"order": order, "ms": 1e3 * r["s"], "images_per_s": args.batch / r["s"],
                         "peak_mib": r["peak_mib"]})
        except Exception as e:  # its 2018 code may not run on this torch: say so, go on
            rows.append({"order": order, "error": f"{type(e).__name__}: {str(e)[:200]}"})
        print(rows[-1], flush=True)
    return {"size": _size(args), "rows": rows}


SECTIONS = {"search": section_search, "precision": section_precision,
            "retrain": section_retrain, "determinism": section_determinism,
            "reference": section_reference}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("section", choices=list(SECTIONS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--reference", help="a quark0/darts checkout's cnn/ directory")
    args = ap.parse_args()
    device = torch.device(args.device)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = SECTIONS[args.section](args, device)
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    Path(args.out, f"{args.section}.json").write_text(json.dumps({**meta, **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
