"""Eval inference on a batch: the exported (hardened) FS network against the same genotype
with --fs off (figures, not a test).

    .venv/bin/python bench/inference.py [--genotype DARTS_V2] [--init-channels 16] [--layers 8]
        [--batch-size 128] [--ratio 2] [--threads 2] [--repeats 20] [--device cpu]

Both networks are loaded back from their exported files (model.pt, and model-wq.pt for FS:
dequantised at load, so it runs at the float speed) and run in eval mode under no_grad, as
`python -m retrain.evaluate` does; FS layers then reuse their cached gathered filters. Runs
are round-robin with medians compared. Target: FS within 5% of --fs off.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.retrain_step import add_common, round_robin, size_table, variants  # noqa: E402
from retrain.export import load_exported, save_exported  # noqa: E402

TARGET = 1.05


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(ap, batch=128)
    ap.set_defaults(repeats=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = {"name": "bench", "num_classes": 10, "input_size": [args.size] * 2,
            "mean": [0.0] * 3, "std": [1.0] * 3}
    models, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (spec, m) in variants(args, auxiliary=False).items():
            if name == "DFS":
                continue
            files = [Path(tmp) / f"{name}.pt", Path(tmp) / f"{name}-wq.pt"]
            sizes[name] = tuple(save_exported(m.cpu().eval(), spec, data, f, wq=i == 1)
                                for i, f in enumerate(files))
            models[name] = load_exported(files[0])
            if name == "FS":
                models["FS-WQ"] = load_exported(files[1])
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=args.device)
    if not args.no_channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fns = {}
    for name, m in models.items():
        m = m.to(args.device).eval()
        if not args.no_channels_last:
            m = m.to(memory_format=torch.channels_last)

        def fwd(m=m) -> None:
            with torch.no_grad():
                m(x)
        fns[name] = fwd
    times = round_robin(fns, args.repeats, 3, args.device)
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads; {args.genotype} "
          f"C={args.init_channels} x {args.layers} cells, eval batch {args.batch_size}, "
          f"{args.size}px, ratio {args.ratio:g}; median of {args.repeats} round-robin batches")
    print(f"{'variant':<8} {'eval ms':>9} {'min ms':>9} {'vs off':>7} {'min vs off':>10}  "
          "target (on the median)")
    for n in ("off", "FS", "FS-WQ"):
        r = med[n] / med["off"]
        verdict = "" if n == "off" else f"<= {TARGET:.2f}x {'PASS' if r <= TARGET else 'MISS'}"
        rmin = min(times[n]) / min(times["off"])
        print(f"{n:<8} {med[n]:9.1f} {min(times[n]):9.1f} {r:7.3f} {rmin:10.3f}  {verdict}")
    print("\n".join(size_table(sizes)))


if __name__ == "__main__":
    main()
