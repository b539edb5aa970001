"""One retrain run end to end: devices and ranks, run directory, data, training, export and
metrics.json. Called by retrain.cli with a resolved config."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from common.checkpoint import atomic_write_text, load_resume_checkpoint
from common.cpu import busy_note, cpu_budget
from common.distributed import barrier, cleanup, init_distributed, local_device
from common.runlog import interrupt_advice, make_run_dir, say
from common.runtime import resolve_device, set_threads
from genotypes import Genotype, from_dict, genotype_lines
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
    from retrain.trainer import BEST, CKPT_KIND, LATEST, Trainer

    started = time.perf_counter()
    set_threads(cfg["runtime"]["threads"])
    device = resolve_device(str(cfg["runtime"]["device"]))
    dist = init_distributed(device)
    device = local_device(device, dist)
    main = dist.is_main
    try:
        genotype = from_dict(run["genotype"])
        train, test, info = opened or setup.open_data(run["dataset"], cfg)
        # Recorded in config.yaml as chosen: --resume and --preset RUN/config.yaml keep them.
        budget = cpu_budget(cfg["runtime"]["threads"], cfg["data"]["workers"], device.type,
                            min(info.input_size))
        cfg["runtime"]["threads"], cfg["data"]["workers"] = budget.threads, budget.workers
        set_threads(budget.threads)
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
        with interrupt_advice(run_dir, LATEST, main):
            if resume and (run_dir / LATEST).is_file():
                trainer.resume(load_resume_checkpoint(run_dir, LATEST, CKPT_KIND, older=BEST))
                if trainer.start_epoch >= trainer.epochs:
                    say(f"{run_dir} is trained ({trainer.epochs} epochs); exporting again", main)
                else:
                    say(f"resuming {run_dir} at epoch {trainer.start_epoch + 1}/{trainer.epochs} "
                        f"on {device} with {budget.describe()}", main)
            else:
                say(f"retraining into {run_dir}: {len(train_ds)} train / {len(test_ds)} test "
                    f"images, {spec.stem} network C={spec.init_channels} x {spec.layers} cells; "
                    f"{trainer.epochs} epoch(s) on {device} with {budget.describe()}", main)
            for line in _genotype_lines(genotype, spec, trainer):
                say(line, main)
            note = busy_note(budget) if main else None
            if note:
                say(note)
            trainer.fit()
            if main:
                export(trainer, run, run_dir, info, test_ds, started)
        barrier()
    finally:
        cleanup()
    return 0


def _genotype_lines(genotype: Genotype, spec, trainer) -> list[str]:
    """The genotype as DARTS prints it, and the FS settings of the network being trained
    (which --fs/--ratio may have changed from the genotype's)."""
    lines = genotype_lines(dataclasses.replace(genotype, fs=spec.fs))
    if spec.fs is not None and spec.fs.dfs:
        when = (f"from epoch {trainer.harden_at + 1}" if trainer.harden_at < trainer.epochs
                else "at export")
        lines[-1] += f" (offsets fixed {when})"
    return lines


def export(trainer, run: dict[str, Any], run_dir: Path, info, test_ds,
           started: float | None = None) -> dict[str, Any]:
    """Write model.pt and model-wq.pt, reload each from disk and evaluate it, write
    metrics.json. Accuracies are those of the reloaded files, i.e. what evaluate reports.

    Times: train_seconds / train_minutes sum the completed epochs (train + test), over every
    session of a resumed run, never time lost in an interrupted epoch; wall_minutes is the
    wall-clock time of this session (`started`: time.perf_counter() at its start), data
    loading and export included."""
    from retrain.evaluate import evaluate_exported
    from retrain.export import load_exported_full, save_exported
    from retrain.summary import summarize

    cfg, model = trainer.cfg, trainer.model
    model.eval()
    meta = setup.export_meta(cfg, run["dataset"])
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
        "wall_minutes": round((time.perf_counter() - (started or t0)) / 60, 2),
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
        f"{report['totals']['compression']:.2f}x; training {trainer.elapsed / 60:.1f} min, "
        f"{metrics['wall_minutes']:.1f} min wall clock")
    return metrics
