"""One retrain run end to end: devices and ranks, run directory, data, training, export and
metrics.json. Called by retrain.cli with a resolved config."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from common.checkpoint import atomic_write_text
from common.distributed import barrier, cleanup, init_distributed, local_device
from common.runlog import make_run_dir, say
from common.runtime import resolve_device, set_threads
from genotypes import from_dict
from retrain import data as rdata
from retrain import setup


def _run_dir(out: str | Path | None, tag: str, overwrite: bool, main: bool) -> Path:
    """rank 0 creates the directory; the others learn its name (the default has a timestamp)."""
    path = [str(make_run_dir(out, "retrain", tag, overwrite)) if main else None]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(path, src=0)
    return Path(path[0])


def _tag(dataset: str) -> str:
    return Path(dataset).name.lower() if dataset.lower() not in setup.KNOWN_SHAPES else dataset.lower()


def run_training(cfg: dict[str, Any], run: dict[str, Any], out: str | Path | None, resume: bool,
                 overwrite: bool = False, opened: tuple | None = None) -> int:
    """Train (or continue) the run; rank 0 writes every file. Returns the exit status."""
    from retrain.cli import write_run_files
    from retrain.trainer import Trainer

    set_threads(cfg["runtime"]["threads"])
    device = resolve_device(str(cfg["runtime"]["device"]))
    dist = init_distributed(device)
    device = local_device(device, dist)
    main = dist.is_main
    try:
        genotype = from_dict(run["genotype"])
        train, test, info = opened or setup.open_data(run["dataset"], cfg)
        spec = setup.make_spec(cfg, genotype, info.num_classes, info.input_size)
        if resume:
            run_dir = Path(out)
        else:
            run_dir = _run_dir(out, _tag(run["dataset"]), overwrite, main)
            if main:
                write_run_files(run_dir, cfg, run)
        d = cfg["data"]
        train_ds = rdata.train_set(train, test, info, d.get("max_images"), cfg["cutout"])
        test_ds = rdata.test_set(train, test, info, d.get("max_test_images"))
        trainer = Trainer(cfg, spec, run_dir, dist, device, train_ds, test_ds)
        latest = run_dir / "latest.pt"
        if resume and latest.is_file():
            trainer.resume(latest)
            if trainer.start_epoch >= trainer.epochs:
                say(f"{run_dir} is trained ({trainer.epochs} epochs); exporting again", main)
            else:
                say(f"resuming {run_dir} at epoch {trainer.start_epoch + 1}/{trainer.epochs}", main)
        else:
            say(f"retraining into {run_dir}: {len(train_ds)} train / {len(test_ds)} test images, "
                f"{spec.stem} network C={spec.init_channels} x {spec.layers} cells, FS "
                f"{'off' if spec.fs is None else spec.fs}", main)
        trainer.fit()
        if main:
            export(trainer, run, run_dir, info, test_ds)
        barrier()
    finally:
        cleanup()
    return 0


def export(trainer, run: dict[str, Any], run_dir: Path, info, test_ds) -> dict[str, Any]:
    """Write model.pt and model-wq.pt, reload each from disk and evaluate it, write
    metrics.json. Accuracies are those of the reloaded files, i.e. what evaluate reports."""
    from retrain.evaluate import evaluate_exported
    from retrain.export import load_exported_full, save_exported
    from retrain.summary import summarize

    cfg, model = trainer.cfg, trainer.model
    model.eval()
    meta = {"dataset": run["dataset"], "batch_size": int(cfg["batch_size"]),
            "test_limit": cfg["data"].get("max_test_images"), "epochs": trainer.epochs,
            "seed": cfg["seed"], "channels_last": bool(cfg["runtime"]["channels_last"])}
    dmeta = setup.data_meta(info)
    t0 = time.perf_counter()
    files, results, specs = {}, {}, {}
    for name, wq in (("model.pt", False), ("model-wq.pt", True)):
        files[name] = save_exported(model, trainer.spec, dmeta, run_dir / name, wq=wq, meta=meta)
        loaded, specs[name], _ = load_exported_full(run_dir / name)
        results[name] = evaluate_exported(loaded, meta, test_ds, trainer.device)
    # Counts of the trained network (auxiliary head reported apart), described as exported.
    report = summarize(specs["model.pt"], model)
    f, q = results["model.pt"], results["model-wq.pt"]
    metrics = {
        "test_acc": f["top1"], "test_top5": f["top5"], "test_loss": f["loss"],
        "test_acc_wq": q["top1"], "test_top5_wq": q["top5"], "test_images": f["count"],
        "best_test_acc": trainer.best_acc, "best_epoch": trainer.best_epoch,
        "epochs": trainer.epochs, "train_seconds": round(trainer.elapsed, 1),
        "train_minutes": round(trainer.elapsed / 60, 2),
        "file_bytes": files,
        "counts": {k: v for k, v in report["totals"].items() if not k.startswith("file_bytes")},
        "auxiliary_head_params": (report["auxiliary_head"] or {}).get("params"),
        "network": report["network"], "dataset": run["dataset"],
        "export_seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    say(f"exported {run_dir / 'model.pt'} ({files['model.pt']:,} bytes, top-1 {f['top1']:.2f}%) "
        f"and model-wq.pt ({files['model-wq.pt']:,} bytes, top-1 {q['top1']:.2f}%); "
        f"{report['totals']['effective']:,} effective parameters, compression "
        f"{report['totals']['compression']:.2f}x; {trainer.elapsed / 60:.1f} min")
    return metrics
