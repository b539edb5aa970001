"""What a deployer would measure: latency at batch 1 and throughput at batch 64 of the exported
FS and FS-WQ networks against the same genotype with --fs off, in PyTorch eager,
torch.compile and onnxruntime (CPU), and the files' sizes on disk and gzip-compressed
(figures, not a test).

    .venv/bin/python bench/inference.py [--genotype DARTS_V2] [--init-channels 16] [--layers 8]
        [--ratio 2] [--threads 1] [--repeats 20] [--runtimes eager,compile,onnxruntime]

Every network is loaded back from its exported files (model.pt / model-wq.pt, dequantised
at load: PyTorch runs it at the float speed; model.onnx / model-wq.onnx, see
retrain.onnx_export) and run in eval mode under no_grad (FS layers then reuse their cached
gathered filters); BatchNorm tensors are randomised as training leaves them
(`_trained_like`). torch.compile compiles the deploy form, every FS layer the plain conv
of its gathered filters (retrain.onnx_export.plain_network), as the ONNX graph holds it;
where it fails on this machine its rows say so. Runs are round-robin, medians compared.
Target: FS and FS-WQ within 5% of --fs off in every runtime (same MACs), at about 0.5x /
0.14x its file size.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.retrain_step import add_common, round_robin, variants  # noqa: E402
from retrain.export import load_exported, save_exported  # noqa: E402
from retrain.onnx_export import export_onnx, inference_session, plain_network  # noqa: E402

TARGET = 1.05
VARIANTS = ("off", "FS", "FS-WQ")


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with seeded random BatchNorm statistics and affine parameters, as training
    leaves them: a fresh network's identical BN tensors (ones, zeros) would be shared by the
    ONNX optimiser and make the .onnx files smaller than a trained network's."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                for t in (m.running_mean, m.weight, m.bias):
                    if t is not None:
                        t.copy_(torch.randn(t.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def _files(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, Path]]:
    """{variant: {format: path}} of the exported files (no WQ files for --fs off)."""
    data = {"name": "bench", "num_classes": 10, "input_size": [args.size] * 2,
            "mean": [0.0] * 3, "std": [1.0] * 3}
    out: dict[str, dict[str, Path]] = {}
    for name, (spec, m) in variants(args, auxiliary=False).items():
        if name == "DFS":
            continue
        m = _trained_like(m.cpu().eval().to(memory_format=torch.contiguous_format))
        for wq in (False, True) if name == "FS" else (False,):
            key = "FS-WQ" if wq else name
            pt, ox = tmp / f"{key}.pt", tmp / f"{key}.onnx"
            save_exported(m, spec, data, pt, wq=wq)
            export_onnx(m, spec, data, ox, wq=wq)
            out[key] = {"pt": pt, "onnx": ox}
    return out


def _runners(files: dict[str, dict[str, Path]], runtimes: list[str], threads: int,
             x: torch.Tensor) -> tuple[dict, dict[str, str]]:
    """({(variant, runtime): fn}, {runtime: why it is missing}) for input x."""
    fns, missing = {}, {}
    for name, f in files.items():
        model = load_exported(f["pt"])
        if "eager" in runtimes:
            fns[(name, "eager")] = lambda m=model: m(x)
        if "compile" in runtimes and "compile" not in missing:
            try:
                # The deploy form: FS layers as the plain convs of their gathered filters
                # (their eval caches check tensor versions, which dynamo guards on per call).
                compiled = torch.compile(plain_network(model))
                with torch.no_grad():
                    compiled(x)
                fns[(name, "compile")] = lambda m=compiled: m(x)
            except Exception as e:  # no C++ compiler, unsupported op: a column says so
                missing["compile"] = f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"
        if "onnxruntime" in runtimes:
            sess, feed = inference_session(f["onnx"], threads), {"input": x.numpy()}
            fns[(name, "onnxruntime")] = lambda s=sess, feed=feed: s.run(None, feed)
    return fns, missing


def _measure(files, runtimes, args, batch: int) -> tuple[dict, dict[str, str]]:
    x = torch.randn(batch, 3, args.size, args.size)
    fns, missing = _runners(files, runtimes, args.threads, x)

    def no_grad(fn):
        def run() -> None:
            with torch.no_grad():
                fn()
        return run

    times = round_robin({k: no_grad(f) for k, f in fns.items()}, args.repeats, 3, "cpu")
    return {k: statistics.median(t) for k, t in times.items()}, missing


def _speed_table(med1: dict, med64: dict, runtimes: list[str]) -> list[str]:
    lines = [f"{'runtime':<12} {'variant':<6} {'batch 1 ms/img':>14} {'vs off':>7} "
             f"{'batch 64 img/s':>14} {'vs off':>7}  target <= {TARGET:.2f}x (both)"]
    for rt in runtimes:
        for v in VARIANTS:
            if (v, rt) not in med1:
                continue
            r1 = med1[(v, rt)] / med1[("off", rt)]
            r64 = med64[(v, rt)] / med64[("off", rt)]
            verdict = "" if v == "off" else ("PASS" if max(r1, r64) <= TARGET else "MISS")
            lines.append(f"{rt:<12} {v:<6} {med1[(v, rt)]:14.2f} {r1:7.3f} "
                         f"{64e3 / med64[(v, rt)]:14.0f} {r64:7.3f}  {verdict}")
    return lines


def _size_table(files: dict[str, dict[str, Path]]) -> list[str]:
    lines = [f"{'file':<22} {'bytes':>12} {'vs off':>7} {'gzip -9':>12} {'vs off':>7}"]
    for fmt, suffix in (("pt", ".pt"), ("onnx", ".onnx")):
        base = files["off"][fmt].stat().st_size
        base_gz = len(gzip.compress(files["off"][fmt].read_bytes(), 9))
        for v in VARIANTS:
            p = files[v][fmt]
            n, gz = p.stat().st_size, len(gzip.compress(p.read_bytes(), 9))
            name = {"off": "model", "FS": "model", "FS-WQ": "model-wq"}[v] + suffix
            lines.append(f"{v + ' ' + name:<22} {n:12,} {n / base:7.3f} {gz:12,} {gz / base_gz:7.3f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(ap, batch=64)
    ap.set_defaults(repeats=20, threads=1, no_channels_last=True)
    ap.add_argument("--runtimes", default="eager,compile,onnxruntime",
                    help="comma-separated: eager, compile, onnxruntime")
    args = ap.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    torch.set_num_threads(args.threads)
    # Each cell's forward is one code object seen at several shapes: one compile per shape.
    torch._dynamo.config.recompile_limit = 64
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(args, Path(tmp))
        med1, missing = _measure(files, runtimes, args, 1)
        med64, missing64 = _measure(files, runtimes, args, 64)
        print(f"torch {torch.__version__}, CPU, {args.threads} thread(s); {args.genotype} "
              f"C={args.init_channels} x {args.layers} cells, {args.size}px, ratio "
              f"{args.ratio:g}; median of {args.repeats} round-robin runs")
        print("\n".join(_speed_table(med1, med64, [r for r in runtimes
                                                   if any(k[1] == r for k in med1)])))
        for rt, why in {**missing, **missing64}.items():
            print(f"{rt}: not measured ({why})")
        print()
        print("\n".join(_size_table(files)))


if __name__ == "__main__":
    main()
