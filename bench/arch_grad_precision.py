"""Float32 architecture and weight gradients of the search network against float64 (figures,
not a test): every term of the DARTS architecture step, on the shapes a search runs.

    .venv/bin/python bench/arch_grad_precision.py [--fs off|fs|dfs] [--size 32] [--batch 4]
        [--C 8] [--layers 5] [--paths naive,fast] [--threads 2] [--data PATH] [--seed 0]
    .venv/bin/python bench/arch_grad_precision.py --seeds 0-7 [--reference PATH/TO/darts/cnn]

One network is built and seeded, then copied to float64 (the truth) and to float32 with the
same weights; both are stepped by search/architect.py's Architect on the same real images
(a class-balanced draw from ../shared/data/cifar10-subset, or Gaussian noise when the folder
is missing). Each float32 term is printed as its relative error ||a32 - a64|| / ||a64||:

* `w' - w`: the virtual SGD step of the unrolled weights (relative to the step itself),
* `dLval(w')/da`: the validation gradient at the unrolled weights (normal, reduce),
* `dLval/dw'`: the vector v of the Hessian-vector product,
* `g+`, `g-`: dL_train(w +- eps*v)/dalpha, and `hvp`: (g+ - g-) / (2 eps),
* `2nd order da`, `1st order da`: the architecture gradients the search uses,
* `dLtrain/dw (worst)`: the largest relative error over the weight tensors.

`hvp@f64 v` recomputes the float32 Hessian-vector product with float64's v (cast), separating
the error the finite difference makes itself from the error it inherits from v.

With --seeds (several network initialisations, the same images) it prints one line per draw,
for our fast and naive paths: the relative error of the first-order architecture gradient
(the larger of normal and reduce; then the median tensor, DFS offset logits included), of
the second order, and of the worst and the median weight tensor; and the median and the
largest of each over the draws. With --reference pointing at a quark0/darts checkout's cnn/
directory (FS off only; imported at run time, never copied), it adds the first and second
order of the reference's own Architect given the same weights and images, against its own
float64 run (its networks are built in the default dtype, which is set to float64 for that
run). A draw where a ReLU input lies within float32 rounding of its kink is off by 1e-4..1e-2
in the tensors downstream of it, in every implementation (docs/benchmarks.md); the medians
over draws show the systematic error.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genotypes import FSSpec  # noqa: E402
from search.architect import Architect  # noqa: E402
from space.darts.supernet import SearchNetwork  # noqa: E402

SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"


def real_batches(path: Path, size: int, batch: int, count: int) -> list[torch.Tensor]:
    """`count` batches of `batch` normalised real images (one per class in turn), float64."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(size), transforms.ToTensor(),
                             transforms.Normalize((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))])
    ds = datasets.ImageFolder(str(path / "train"), tf)
    first = {}
    for i, (_, y) in enumerate(ds.samples):
        first.setdefault(y, []).append(i)
    picks = [first[c % len(first)][c // len(first)] for c in range(batch * count)]
    xs = torch.stack([ds[i][0] for i in picks]).double()
    ys = torch.tensor([ds.samples[i][1] for i in picks])
    return [(xs[k * batch:(k + 1) * batch], ys[k * batch:(k + 1) * batch]) for k in range(count)]


def make_architect(net: SearchNetwork, order: str) -> Architect:
    upper = net.arch_parameters() + net.offset_parameters()
    ids = {id(p) for p in upper}
    lower = [p for p in net.parameters() if id(p) not in ids]
    opt = torch.optim.SGD(lower, lr=0.025, momentum=0.9, weight_decay=3e-4)
    return Architect(net, upper, lower, opt, order=order)


def terms(net: SearchNetwork, data, xi: float, v64: list[torch.Tensor] | None = None) -> dict:
    """Every term of the first- and second-order steps, in the network's dtype."""
    dtype = next(net.parameters()).dtype
    (xt, yt), (xv, yv) = [(x.to(dtype), y) for x, y in data]
    arch = make_architect(net, "second")
    w = [p.detach() for p in arch.lower]
    out = {}
    train_loss = arch._loss(arch.lower, arch.upper, xt, yt)
    out["dLtrain/dw"] = arch._grads(train_loss, arch.lower)
    w_prime = arch.unrolled_weights(xt, yt, xi)
    out["w' - w"] = [a.detach() - b for a, b in zip(w_prime, w, strict=True)]
    loss = arch._loss(w_prime, arch.upper, xv, yv)
    grads = arch._grads(loss, [*arch.upper, *w_prime])
    n = len(arch.upper)
    out["dLval(w')/da"], v = grads[:n], grads[n:]
    out["dLval/dw'"] = v
    norm = torch.sqrt(sum((t.double() ** 2).sum() for t in v)).item()
    eps = arch.fd_eps / norm
    out["g+"] = arch._grads(arch._loss([p + eps * t for p, t in zip(w, v, strict=True)],
                                       arch.upper, xt, yt), arch.upper)
    out["g-"] = arch._grads(arch._loss([p - eps * t for p, t in zip(w, v, strict=True)],
                                       arch.upper, xt, yt), arch.upper)
    out["hvp"] = arch.hessian_vector_product(v, xt, yt)
    if v64 is not None:
        out["hvp@f64 v"] = arch.hessian_vector_product([t.to(dtype) for t in v64], xt, yt)
    out["2nd order da"] = [a - xi * h for a, h in zip(out["dLval(w')/da"], out["hvp"], strict=True)]
    first = make_architect(net, "first")
    out["1st order da"] = first.gradient(xt, yt, xv, yv, xi)[0]
    out["_v"] = v
    return out


def reference_gradients(ref_dir: str, base: SearchNetwork, data, xi: float,
                        dtype: torch.dtype) -> dict[str, list[torch.Tensor]]:
    """quark0/darts's first- and second-order dalpha for `base`'s weights, in `dtype`."""
    import argparse as ap

    import torch.nn as nn

    from bench.search_step import _load_reference

    model_search = _load_reference(ref_dir, "model_search")
    architect = _load_reference(ref_dir, "architect")
    (xt, yt), (xv, yv) = [(x.to(dtype), y) for x, y in data]
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # Network.new() builds the unrolled copy in the default dtype
    try:
        net = model_search.Network(base._C, 10, base._layers, nn.CrossEntropyLoss())
        state = {k: v for k, v in base.state_dict().items() if not k.startswith("alphas")}
        net.load_state_dict(state)
        with torch.no_grad():
            for a, b in zip(net.arch_parameters(), base.arch_parameters(), strict=True):
                a.copy_(b)
        args = ap.Namespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4,
                            arch_weight_decay=1e-3)
        arch = architect.Architect(net, args)
        opt = torch.optim.SGD(net.parameters(), xi, momentum=0.9, weight_decay=3e-4)
        out = {}
        for name, unrolled in (("1st order da", False), ("2nd order da", True)):
            for a in net.arch_parameters():
                a.grad = None
            if unrolled:
                arch._backward_step_unrolled(xt, yt, xv, yv, xi, opt)
            else:
                arch._backward_step(xv, yv)
            out[name] = [a.grad.detach().clone() for a in net.arch_parameters()]
        return out
    finally:
        torch.set_default_dtype(old)


#: The figures of a draw, per implementation (see `draws`).
DRAW_FIGURES = ("1st", "1st med", "2nd", "w worst", "w med")


def _draw_figures(t32: dict, t64: dict) -> tuple[float, ...]:
    """A draw's errors: the first-order alphas (the larger of normal and reduce), the median
    tensor of the whole first-order architecture gradient (DFS offset logits included), the
    second-order alphas, and the worst and the median weight tensor of dLtrain/dw (medians
    over the tensors with a nonzero float64 gradient, as tests/test_arch_precision.py takes
    them)."""
    def errs(key: str) -> list[float]:
        return sorted(rel(a, b) for a, b in zip(t32[key], t64[key], strict=True) if b.norm() > 0)

    first = [rel(a, b) for a, b in zip(t32["1st order da"][:2], t64["1st order da"][:2],
                                       strict=True)]
    second = [rel(a, b) for a, b in zip(t32["2nd order da"][:2], t64["2nd order da"][:2],
                                        strict=True)]
    w = errs("dLtrain/dw")
    return (max(first), statistics.median(errs("1st order da")), max(second), w[-1],
            statistics.median(w))


def draws(args, fs, data) -> None:
    """One line per seed: the errors of each implementation against float64 (DRAW_FIGURES;
    the reference gives its first and second order only)."""
    seeds = _seed_list(args.seeds)
    cols = ["fast", "naive"] + (["reference"] if args.reference else [])
    print("per implementation: " + " / ".join(DRAW_FIGURES) + " (see _draw_figures)")
    print(f"{'seed':>6}" + "".join(f"{c:>50}" for c in cols))
    table: dict[str, list[tuple[float, ...]]] = {c: [] for c in cols}
    nan = float("nan")
    for seed in seeds:
        torch.manual_seed(seed)
        base = SearchNetwork(args.C, 10, args.layers, fs=fs)
        truth = copy.deepcopy(base).double()
        truth.fast = False
        t64 = terms(truth, data, args.xi)
        row = {}
        for c in ("fast", "naive"):
            net = copy.deepcopy(base).float()
            net.fast = c == "fast"
            row[c] = _draw_figures(terms(net, data, args.xi), t64)
        if args.reference:
            r64 = reference_gradients(args.reference, base, data, args.xi, torch.float64)
            r32 = reference_gradients(args.reference, base, data, args.xi, torch.float32)
            first, second = (max(rel(a, b) for a, b in zip(r32[k], r64[k], strict=True))
                             for k in ("1st order da", "2nd order da"))
            row["reference"] = (first, nan, second, nan, nan)
            agree = max(rel(a, b) for a, b in zip(r64["2nd order da"], t64["2nd order da"][:2],
                                                   strict=True))
        line = f"{seed:>6}" + "".join(f"{_figures(row[c]):>50}" for c in cols)
        if args.reference:
            line += f"   (float64: ours vs reference {agree:.0e})"
        print(line, flush=True)
        for c in cols:
            table[c].append(row[c])
    for label, pick in (("median", statistics.median), ("max", max)):
        print(f"{label:>6}" + "".join(
            f"{_figures(tuple(pick(r[i] for r in table[c]) for i in range(5))):>50}"
            for c in cols))
    for c in cols:
        n = sum(r[2] > 1e-2 for r in table[c])
        w = sum(r[3] > 1e-4 for r in table[c])
        print(f"{c}: second order off by more than 1e-2 on {n} of {len(seeds)} draws"
              + (f"; worst weight tensor over 1e-4 on {w}" if c != "reference" else ""))


def _figures(values: tuple[float, ...]) -> str:
    return " / ".join("-" if v != v else f"{v:.1e}" for v in values)


def _seed_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fs", default="off", choices=["off", "fs", "dfs"])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--paths", default="naive,fast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--xi", type=float, default=0.025)
    ap.add_argument("--data", default=str(SUBSET))
    ap.add_argument("--seeds", help="several draws, e.g. 0-7: one summary line each")
    ap.add_argument("--reference", help="with --seeds: a quark0/darts checkout's cnn/ directory")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if Path(args.data, "train").is_dir():
        data = real_batches(Path(args.data), args.size, args.batch, 2)
        src = f"real images from {args.data}"
    else:
        data = [(torch.randn(args.batch, 3, args.size, args.size, dtype=torch.float64),
                 torch.randint(0, 10, (args.batch,))) for _ in range(2)]
        src = "Gaussian noise (no real data found)"
    fs = {"off": None, "fs": FSSpec(2.0, False, 4), "dfs": FSSpec(2.0, True, 4)}[args.fs]
    print(f"fs={args.fs} C={args.C} layers={args.layers} batch={args.batch} {args.size}x{args.size}, "
          f"{src}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.seeds:
        if args.reference and fs is not None:
            raise SystemExit("--reference compares FS off only (the reference has no FS layers)")
        draws(args, fs, data)
        return
    base = SearchNetwork(args.C, 10, args.layers, fs=fs)
    results = {}
    for path in args.paths.split(","):
        net64 = copy.deepcopy(base).double()
        net64.fast = path == "fast"
        t64 = terms(net64, data, args.xi)
        net32 = copy.deepcopy(base).float()
        net32.fast = path == "fast"
        t32 = terms(net32, data, args.xi, v64=t64["_v"])
        results[path] = (t32, t64)
    names = [k for k in results[args.paths.split(",")[0]][0] if not k.startswith("_")]
    print(f"{'term':<22}" + "".join(f"{p + ' (normal / reduce)':>34}" for p in results))
    for name in names:
        row = f"{name:<22}"
        for t32, t64 in results.values():
            ref = t64["hvp"] if name == "hvp@f64 v" else t64[name]
            errs = [rel(a, b) for a, b in zip(t32[name], ref, strict=True)]
            if name.startswith(("dLtrain", "dLval/dw", "w'")):
                flat = rel(torch.cat([a.flatten() for a in t32[name]]),
                           torch.cat([b.flatten() for b in ref]))
                row += f"{f'{flat:.1e} (worst tensor {max(errs):.1e})':>34}"
            else:
                row += f"{' / '.join(f'{e:.1e}' for e in errs[:2]):>34}"
        print(row, flush=True)
    if len(results) == 2:
        (a32, a64), (b32, b64) = results.values()
        d = max(rel(x, y) for x, y in zip(a64["2nd order da"], b64["2nd order da"], strict=True))
        print(f"float64 fast vs naive, 2nd order da: {d:.1e}")


if __name__ == "__main__":
    main()
