"""`python -m retrain.export`: write a retrained network as a standard ONNX file.

    python -m retrain.export runs/retrain-x --onnx                 # -> runs/retrain-x/model.onnx
    python -m retrain.export runs/retrain-x/model.pt --onnx --wq   # -> model-wq.onnx (8-bit FS)
    python -m retrain.export runs/retrain-x --onnx --wq --layout conv --out net.onnx

The file is checked by onnx.checker and run in onnxruntime (CPU) on a random batch against
PyTorch before the command reports success; see retrain.onnx_export for what it holds.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from common.cli_flags import Parser
from common.errors import UserError, cli_entry
from retrain.export import load_exported_full
from retrain.onnx_export import LAYOUTS, OPSET, export_onnx, inference_session
from space.layers.fs_model import fs_layers
from space.layers.wq import quantize_model_


def resolve_model_file(given: str | Path) -> Path:
    """model.pt of a run directory, or the exported file given."""
    path = Path(given)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise UserError(f"{given} is neither a retrain run directory with a model.pt nor an "
                        "exported model file; give one of them")
    return path


def max_relative_difference(model: torch.nn.Module, onnx_path: Path, shape: tuple[int, ...],
                            seed: int = 0) -> float:
    """max |ort - torch| / max |torch| of the logits on a seeded random batch."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x)[0].double()
    out = inference_session(onnx_path).run(None, {"input": x.numpy()})[0]
    return float((torch.from_numpy(out).double() - ref).abs().max() / ref.abs().max().clamp(min=1e-30))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
        prog="python -m retrain.export",
        description="Export a retrained network (run directory, model.pt or model-wq.pt) to ONNX.")
    p.add_argument("model", help="retrain run directory (its model.pt) or an exported .pt file")
    p.add_argument("--onnx", action="store_true", help="write an ONNX file (the format this "
                   "command writes)")
    p.add_argument("--wq", action="store_true", help="8-bit FS vectors, dequantised in the "
                   "graph (implied for model-wq.pt)")
    p.add_argument("--layout", choices=LAYOUTS, default="fs", help="with --wq: fs (the FS "
                   "vector's codes, gathered in the graph; default) or conv (the gathered codes)")
    p.add_argument("--out", help="output file (default: model.onnx / model-wq.onnx beside the "
                   "model file)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.onnx:
        raise UserError("say which format to write: --onnx (the only one this command writes)")
    src = resolve_model_file(args.model)
    model, spec, info = load_exported_full(src)
    wq = args.wq or info["weights"] == "wq8"
    if wq and not fs_layers(model):
        raise UserError(f"{src} has no FS layers (a --fs off network): nothing to quantise; "
                        "export it without --wq")
    out = Path(args.out) if args.out else src.with_name("model-wq.onnx" if wq else "model.onnx")
    size = export_onnx(model, spec, info["data"], out, wq=wq, layout=args.layout, meta=info["meta"])
    # What the ONNX graph computes: model-wq.pt's levels for --wq.
    reference = quantize_model_(copy.deepcopy(model)) if wq else model
    diff = max_relative_difference(reference, out, (2, spec.in_channels, *spec.input_size))
    result = {"model": str(src), "onnx": str(out), "bytes": size, "weights": "wq8" if wq else "float",
              "layout": args.layout if wq else None, "opset": OPSET, "max_rel_diff": diff}
    if args.json:
        print(json.dumps(result))
    else:
        what = f"8-bit FS vectors, layout {args.layout}" if wq else "float weights"
        print(f"wrote {out} ({size:,} bytes, {what}, opset {OPSET}); onnx.checker passed; "
              f"onnxruntime logits within {diff:.1e} (relative) of PyTorch's on a random batch")
    return 0
