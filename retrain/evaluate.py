"""The command that evaluates an exported model on its own (the evaluation itself is
common.evaluate, the one both pipelines run).

    python -m retrain.evaluate runs/retrain-.../model.pt --dataset cifar10 [--data-root DIR]
    python -m retrain.evaluate runs/retrain-.../model-wq.pt --dataset PATH --json
    python -m retrain.evaluate runs/retrain-.../model.onnx --dataset PATH   # onnxruntime, CPU
    python -m retrain.evaluate RUN/model.pt --dataset D --prune-blend 0,10,50,90  # retrain.prune

The network is rebuilt from what the file holds (genotype, widths, FS settings, weights) and
the test split is normalised with the statistics recorded at training time. An ONNX file
(retrain.onnx_export) runs in onnxruntime's CPU execution provider, on the same test split
normalised with the statistics in its metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # python -m retrain.evaluate: before torch loads OpenMP
    from common.cpu import choose_openmp_wait_policy

    choose_openmp_wait_policy()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from common.cli_flags import Parser
from common.cpu import cpu_budget  # noqa: E402
from common.data import open_dataset  # noqa: E402
from common.distributed import DistInfo  # noqa: E402
from common.errors import UserError, cli_entry  # noqa: E402
from common.evaluate import evaluate  # noqa: E402
from common.runtime import channels_last as to_channels_last  # noqa: E402
from common.runtime import resolve_device, set_threads  # noqa: E402
from retrain.data import test_set  # noqa: E402
from retrain.export import load_exported_full  # noqa: E402
from retrain.prune import blend_zeros, check_blends, format_rows, parse_percents, plot_rows, prune_blend  # noqa: E402
from retrain.setup import info_from_meta  # noqa: E402


def evaluate_exported(model: nn.Module, meta: dict[str, Any], dataset, device: torch.device,
                      batch_size: int | None = None,
                      dist: DistInfo | None = None) -> dict[str, float]:
    """`evaluate` in fp32 with the batch size and memory format the training run used
    (recorded in the export), so the figures equal those of the run's own evaluation
    (retrain.trainer.Trainer.test). With a distributed `dist`, each rank takes its shard."""
    cl = bool(meta.get("channels_last", False))
    model = to_channels_last(model.to(device), cl)
    bs = batch_size or int(meta.get("batch_size", 96))
    return evaluate(model, dataset, bs, device, dist, channels_last=cl)


def load_test_split(dataset: str, data_root: str, download: bool, data: dict[str, Any],
               test_limit: int | None = None):
    """The test split of `dataset` as the retrain run that wrote `data` (the export's dataset
    record: classes, input size, normalisation) saw it."""
    size = int(data["input_size"][0]) if data else None
    train, test, info = open_dataset(dataset, data_root, download, size)
    if data:
        if info.num_classes != int(data["num_classes"]):
            raise UserError(f"dataset {dataset} has {info.num_classes} classes but the model was "
                            f"trained on {data['num_classes']} ({data['name']}); give its dataset")
        info = info_from_meta(data)
    return test_set(train, test, info, test_limit)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
        prog="python -m retrain.evaluate",
        description="Evaluate an exported model (model.pt or model-wq.pt) on a test set.")
    p.add_argument("model", help="exported model file written by a retrain run (model.pt, "
                   "model-wq.pt, or an .onnx file from python -m retrain.export)")
    p.add_argument("--dataset", required=True, help="cifar10, cifar100, imagenet or a folder")
    p.add_argument("--data-root", default="data", help="where named datasets live (default data)")
    p.add_argument("--no-download", action="store_true", help="never download a dataset")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the training batch size recorded in the file")
    p.add_argument("--test-limit", type=int, default=None,
                   help="evaluate a class-balanced subset of this many test images, drawn "
                   "with a fixed seed (the same images on every call, and those the run's "
                   "data.test_limit took); default: the limit the file records, else all")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: this process's share of the cores)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--prune-blend", default=None, metavar="P,P,...",
                   help="ShaRDNet SL networks: evaluate with each percentage of the smallest "
                   "blend weights zeroed (no retraining); a table and a plot")
    p.add_argument("--plot", default=None,
                   help="--prune-blend: the plot's path (default: prune-blend.png beside the "
                   "model file)")
    return p.parse_args(argv)


def _load_onnx(path: str, device: str, threads: int | None):
    """(module running the ONNX file in onnxruntime, its NetSpec, its data/meta/weights)."""
    from retrain.model import NetSpec
    from retrain.onnx_export import OnnxModule, inference_session, read_metadata

    if device not in ("auto", "cpu"):
        raise UserError("an ONNX file is evaluated in onnxruntime on the CPU; drop --device")
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist; give an .onnx file written by "
                        "python -m retrain.export")
    try:
        md = read_metadata(path)
        spec = NetSpec.from_dict(md["net"])
    except Exception as e:
        raise UserError(f"{path} is not an ONNX file written by python -m retrain.export "
                        f"({type(e).__name__}); export it again") from None
    budget = cpu_budget(threads, 0, "cpu", min(spec.input_size)).threads
    info = {"data": md["data"], "meta": md["meta"], "weights": f"ONNX {md['weights']}"}
    return OnnxModule(inference_session(path, budget)), spec, info


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    onnx = str(args.model).endswith(".onnx")
    if onnx and args.prune_blend is not None:
        raise UserError("--prune-blend prunes a PyTorch export; give the run's model.pt")
    if args.prune_blend is not None:
        parse_percents(args.prune_blend)  # bad percentages: one line before anything loads
    if onnx:
        model, spec, info = _load_onnx(args.model, args.device, args.threads)
        device = torch.device("cpu")
    else:
        device = resolve_device(args.device)
        model, spec, info = load_exported_full(args.model)
        if args.prune_blend is not None:  # before the dataset loads
            check_blends(model, f"{args.model} ({spec.model})")
        # Evaluation loads in this process (no workers): every core computes.
        set_threads(cpu_budget(args.threads, 0, device.type, min(spec.input_size)).threads)
    meta = info["meta"]
    limit = args.test_limit if args.test_limit is not None else meta.get("test_limit")
    ds = load_test_split(args.dataset, args.data_root, not args.no_download, info["data"], limit)
    if args.prune_blend is not None:
        return _prune(args, model, meta, ds, device)
    if onnx:
        r = evaluate(model, ds, args.batch_size or int(meta.get("batch_size", 96)), device)
    else:
        r = evaluate_exported(model, meta, ds, device, args.batch_size)
    out = {"model": str(args.model), "weights": info["weights"], "dataset": args.dataset,
           "images": r["count"], "top1": r["top1"], "top5": r["top5"], "loss": r["loss"]}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.model} ({info['weights']} weights) on {args.dataset}: top-1 "
              f"{r['top1']:.2f}%  top-5 {r['top5']:.2f}%  loss {r['loss']:.4f}  "
              f"({r['count']} images)")
    return 0


def _prune(args: argparse.Namespace, model: nn.Module, meta: dict[str, Any], ds,
           device: torch.device) -> int:
    """Accuracy against the percentage of blend weights pruned: a table (or JSON) and a plot."""
    rows = []
    for percent in parse_percents(args.prune_blend):
        pruned = prune_blend(model, percent)
        r = evaluate_exported(pruned, meta, ds, device, args.batch_size)
        rows.append({"percent": percent, "zeros": blend_zeros(pruned), "top1": r["top1"],
                     "top5": r["top5"], "loss": r["loss"], "images": r["count"]})
    plot = Path(args.plot) if args.plot else Path(args.model).with_name("prune-blend.png")
    name = Path(args.model)
    plot_rows(rows, plot, f"{name.parent.name}/{name.name}: blend pruning, "
              f"{rows[0]['images']} test images")
    if args.json:
        print(json.dumps({"model": str(args.model), "dataset": args.dataset, "rows": rows,
                          "plot": str(plot)}))
    else:
        print(f"{args.model} on {args.dataset} ({rows[0]['images']} images), blend weights "
              "pruned by magnitude, no retraining:")
        print(format_rows(rows))
        print(f"plot: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
