"""What a retrain leaves in its run directory, and what it tells the user.

    RUN_DIR/config.yaml     dataset, preset, genotype, command line and the resolved `retrain`
                            section (usable as a --preset)
    RUN_DIR/genotype.json   the genotype trained
    RUN_DIR/log.jsonl       one record per epoch
    RUN_DIR/latest.pt       the last completed epoch (--resume); best.pt the best one's
    RUN_DIR/model.pt, model-wq.pt, metrics.json   the exports and their figures (see `export`;
                            no model-wq.pt for a --fs off network: nothing to quantise)
    RUN_DIR/model.onnx      the float network as ONNX (retrain.onnx_export; export.onnx: false
                            skips it)
    RUN_DIR/tensorboard/    event files, with log.tensorboard (common.tensorboard)

Only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.checkpoint import save_checkpoint
from common.config import save_run_config
from common.config_schema import RetrainConfig
from common.data import DatasetInfo
from common.distributed import rank0_first
from common.evaluate import evaluate
from common.files import atomic_write_text
from common.runlog import JsonlLog, say
from common.tensorboard import TensorBoardLog
from common.threads import thread_figures
from genotypes import Genotype, describe_op_ratios, from_dict, genotype_lines, save_genotype
from retrain import setup
from retrain.describe import describe_conversion, describe_network
from retrain.evaluate import evaluate_exported
from retrain.export import load_exported_full, save_exported
from retrain.model import NetSpec
from retrain.onnx_export import OnnxModule, export_onnx, inference_session
from retrain.summary import summarize
from retrain.trainer import Trainer
from space.layers.convert import fitted_ratio

CKPT_KIND = "retrain"
LATEST, BEST = "latest.pt", "best.pt"  # the last completed epoch's checkpoint; the best one's


def write_run_files(run_dir: Path, cfg: RetrainConfig, run: dict[str, Any]) -> None:
    """config.yaml (dataset, preset, genotype, command line and the resolved `retrain`
    section: usable as a --preset) and genotype.json."""
    save_run_config(run_dir / "config.yaml", "retrain", cfg, run)
    if run.get("genotype") is not None:  # a registered network has none
        save_genotype(from_dict(run["genotype"]), run_dir / "genotype.json")


class RunOutputs:
    """The log and checkpoints of one retrain run (inactive on ranks other than 0)."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = False) -> None:
        self.dir, self.enabled = Path(run_dir), enabled
        self.log = JsonlLog(self.dir / "log.jsonl")
        self.tensorboard = TensorBoardLog(self.dir, enabled and tensorboard)

    def epoch_done(self, record: dict[str, Any], state: dict[str, Any], best: bool) -> None:
        """The log line first, then latest.pt (and best.pt): a kill in between leaves a log
        line the resumed run truncates and repeats, never a missing one."""
        if not self.enabled:
            return
        self.log.write(record)
        self.tensorboard.write(record)
        save_checkpoint(state, self.dir / LATEST, CKPT_KIND)
        if best:
            save_checkpoint(state, self.dir / BEST, CKPT_KIND)


def epoch_record(epoch: int, train: dict[str, float], test: dict[str, float], lr: float,
                 trainer: Trainer, seconds: float, train_seconds: float) -> dict[str, Any]:
    """The log.jsonl record of one epoch."""
    return {"epoch": epoch, "train_loss": train["train_loss"], "train_acc": train["train_acc"],
            **test, "lr": lr,
            "drop_path_prob": getattr(trainer.model, "drop_path_prob", None),
            "hardened": trainer.hardened, "offset_entropy": trainer.offset_entropy(),
            "seconds": round(seconds, 3),
            "images_per_s": round(train["images"] / max(train_seconds, 1e-9), 2),
            **thread_figures(train)}


def epoch_line(record: dict[str, Any], epochs: int, fs: bool) -> str:
    """The line an epoch prints."""
    r = record
    return (f"epoch {r['epoch'] + 1}/{epochs}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_acc']:.2f}  test loss {r['test_loss']:.4f} acc "
            f"{r['test_acc']:.2f} top5 {r['test_top5']:.2f}  lr {r['lr']:.5f}  "
            f"{'hardened ' if r['hardened'] and fs else ''}{r['seconds']:.1f}s "
            f"({r['images_per_s']:.0f} img/s)")


def run_genotype_lines(genotype: Genotype | None, spec: NetSpec, harden_at: int,
                       epochs: int, model: nn.Module | None = None) -> list[str]:
    """The genotype as DARTS prints it, and the FS settings of the network being trained
    (which --fs/--ratio may have changed from the genotype's); for a registered network its
    name, settings and FS conversion (with `model`, the ratio a parameter target fitted)."""
    if not spec.is_darts:
        fitted = fitted_ratio(model) if model is not None else None
        line = (f"network: {describe_network(spec.model, spec.settings, spec.extra)}; convs: "
                f"{describe_conversion(spec.conversion, fitted)}")
        if spec.has_dfs:
            line += f" (offsets fixed {_when(harden_at, epochs)})"
        return [line]
    lines = genotype_lines(dataclasses.replace(genotype, fs=spec.fs))
    if spec.fs is not None and spec.fs.dfs:
        when = _when(harden_at, epochs)
        # The note follows the offsets it is about, before any per-op ratio lists.
        per_op = describe_op_ratios(spec.fs)
        head = lines[-1].removesuffix(f"; {per_op}") if per_op else lines[-1]
        lines[-1] = f"{head} (offsets fixed {when})" + (f"; {per_op}" if per_op else "")
    if "genotype_width_ignored" in spec.extra:
        lines.append(f"width: init_channels {spec.init_channels}; the genotype's fs.width "
                     f"{spec.extra['genotype_width_ignored']:.4g} (its budget fit) is not applied: "
                     "--ratio / --fs off set the network by hand, so it may be over that budget")
    if "genotype_width" in spec.extra:
        lines.append(f"width: init_channels {spec.init_channels}, the genotype's fs.width "
                     f"{spec.extra['genotype_width']:.4g} of the configured width (the budget "
                     "fit narrowed it)")
    return lines


def _when(harden_at: int, epochs: int) -> str:
    return f"from epoch {harden_at + 1}" if harden_at < epochs else "at export"


def export(trainer: Trainer, run: dict[str, Any], run_dir: Path, info: DatasetInfo, test_ds,
           started: float | None = None) -> dict[str, Any] | None:
    """Write model.pt and model-wq.pt (not for a --fs off network: without FS vectors it
    would be model.pt again), reload each from disk and evaluate it, write model.onnx (unless
    export.onnx is false) and evaluate it in onnxruntime, write metrics.json. Accuracies are
    those of the reloaded files, i.e. what retrain.evaluate reports, in fp32 as every test
    figure of the run (Trainer.test).

    Called on every rank: rank 0 writes the files (the others wait only for that), then each
    rank evaluates its shard of the test set (common.evaluate), so no rank waits in a
    collective for a whole evaluation (NCCL's default timeout is 10 minutes). Rank 0 alone
    then writes and checks model.onnx (onnxruntime on the CPU) and metrics.json and returns
    its figures; the other ranks return None.

    Times: train_seconds / train_minutes sum the completed epochs (train + test), over every
    session of a resumed run, never time lost in an interrupted epoch; wall_minutes is the
    wall-clock time of this session (`started`: time.perf_counter() at its start), data
    loading and export included."""
    cfg, model = trainer.cfg, trainer.model
    model.eval()
    meta = setup.export_meta(cfg, run["dataset"])
    dmeta = setup.data_meta(info)
    t0 = time.perf_counter()
    wq_too = trainer.spec.has_fs
    names = (("model.pt", False), ("model-wq.pt", True))[:1 + wq_too]

    def save(first: bool) -> dict[str, int]:
        return {name: save_exported(model, trainer.spec, dmeta, run_dir / name, wq=wq, meta=meta)
                for name, wq in names} if first else {}

    files = rank0_first(trainer.dist, save, share=True)
    results, specs = {}, {}
    for name, _ in names:
        loaded, specs[name], _ = load_exported_full(run_dir / name)
        results[name] = evaluate_exported(loaded, meta, test_ds, trainer.device, dist=trainer.dist)
    if not trainer.dist.is_main:
        return None
    if cfg.export.onnx:
        files["model.onnx"] = export_onnx(model, trainer.spec, dmeta, run_dir / "model.onnx",
                                          meta=meta)
        session = inference_session(run_dir / "model.onnx", torch.get_num_threads())
        results["model.onnx"] = evaluate(OnnxModule(session), test_ds, int(meta["batch_size"]),
                                         torch.device("cpu"))
    # Counts of the trained network (auxiliary head reported apart), described as exported.
    report = summarize(specs["model.pt"], model)
    f, q, o = (results.get(k, {}) for k in ("model.pt", "model-wq.pt", "model.onnx"))
    metrics = {
        "test_acc": f["top1"], "test_top5": f["top5"], "test_loss": f["loss"],
        "test_acc_wq": q.get("top1"), "test_top5_wq": q.get("top5"),
        "test_acc_onnx": o.get("top1"), "test_images": f["count"],
        "best_test_acc": trainer.best_acc, "best_epoch": trainer.best_epoch,
        "epochs": trainer.epochs, "train_seconds": round(trainer.elapsed, 1),
        "train_minutes": round(trainer.elapsed / 60, 2),
        "wall_minutes": round((time.perf_counter() - (started or t0)) / 60, 2),
        "file_bytes": files,
        "counts": {k: v for k, v in report["totals"].items() if not k.startswith("file_bytes")},
        "auxiliary_head_params": (report["auxiliary_head"] or {}).get("params"),
        "network": report["network"], "dataset": run["dataset"],
        "export_seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    others = [f"{name} ({files[name]:,} bytes, top-1 {results[name]['top1']:.2f}%"
              + (" in onnxruntime)" if name.endswith(".onnx") else ")")
              for name in ("model-wq.pt", "model.onnx") if name in files]
    say(f"exported {run_dir / 'model.pt'} ({files['model.pt']:,} bytes, top-1 {f['top1']:.2f}%)"
        + "".join(f", {x}" for x in others) + "; "
        f"{report['totals']['effective']:,} effective parameters, compression "
        f"{report['totals']['compression']:.2f}x{_unnarrowed(report)}; training "
        f"{trainer.elapsed / 60:.1f} min, "
        f"{metrics['wall_minutes']:.1f} min wall clock")
    return metrics


def _unnarrowed(report: dict[str, Any]) -> str:
    """' (3.85x against resnet20 at width 16)' for a network fs.max_ratio narrowed, else ''."""
    t, net = report["totals"], report["network"]
    if "compression_unnarrowed" not in t:
        return ""
    return (f" ({t['compression_unnarrowed']:.2f}x against {net['model']} at width "
            f"{net['extra']['width_from']})")
