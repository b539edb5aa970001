"""One retrain run end to end, from a resolved job (retrain.setup.Job): devices and ranks, run
directory, the epoch loop, export and metrics.json. Called by retrain.cli."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from common.checkpoint import check_resume_device, load_resume_checkpoint
from common.cpu import busy_note, cpu_budget
from common.distributed import barrier, cleanup, init_distributed, local_device
from common.runlog import interrupt_advice, make_run_dir, say
from common.runtime import (
    deterministic_pooling,
    precision,
    resolve_device,
    set_determinism,
    set_threads,
)
from common.shapes import KNOWN
from retrain import data as rdata
from retrain import setup
from retrain.outputs import (
    BEST,
    CKPT_KIND,
    LATEST,
    RunOutputs,
    epoch_line,
    epoch_record,
    export,
    run_genotype_lines,
    write_run_files,
)
from retrain.trainer import Trainer


def _run_dir(out: str | Path | None, tag: str, overwrite: bool, main: bool) -> Path:
    """rank 0 creates the directory; the others learn its name (the default has a timestamp)."""
    path = [str(make_run_dir(out, "retrain", tag, overwrite)) if main else None]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(path, src=0)
    return Path(path[0])


def _tag(dataset: str) -> str:
    return Path(dataset).name.lower() if dataset.lower() not in KNOWN else dataset.lower()


def run_training(job: setup.Job, out: str | Path | None, resume: bool,
                 overwrite: bool = False) -> int:
    """Train (or continue) the job's run; rank 0 writes every file. Returns the exit status."""
    started = time.perf_counter()
    cfg, run = job.cfg, job.run
    set_threads(cfg.runtime.threads)
    device = resolve_device(str(cfg.runtime.device))
    dist = init_distributed(device)
    device = local_device(device, dist)
    main = dist.is_main
    try:
        train, test, info = job.data
        # Recorded in config.yaml as chosen: --resume and --preset RUN/config.yaml keep them.
        budget = cpu_budget(cfg.runtime.threads, cfg.data.workers, device.type,
                            min(info.input_size))
        cfg.runtime.threads, cfg.data.workers = budget.threads, budget.workers
        set_threads(budget.threads)
        spec = job.spec
        if resume:
            run_dir = Path(out)
        else:
            run_dir = _run_dir(out, _tag(run["dataset"]), overwrite, main)
            if main:
                with interrupt_advice(run_dir, LATEST):  # a full disk: what is kept
                    write_run_files(run_dir, cfg, run)
        d = cfg.data
        train_ds = rdata.train_set(train, test, info, d.max_images, cfg.cutout)
        test_ds = rdata.test_set(train, test, info, d.max_test_images)
        deterministic = bool(cfg.runtime.deterministic)
        set_determinism(deterministic)
        if deterministic and device.type == "cuda":
            deterministic_pooling(job.network)
        trainer = Trainer(cfg, spec, job.network, dist, device, train_ds, test_ds)
        outputs = RunOutputs(run_dir, main, cfg.log.tensorboard)
        with interrupt_advice(run_dir, LATEST, main):
            if resume and (run_dir / LATEST).is_file():
                state = load_resume_checkpoint(run_dir, LATEST, CKPT_KIND, older=BEST)
                check_resume_device(state, run_dir, device, precision(device, trainer.amp))
                trainer.resume(state)
                if main:  # epochs logged after this checkpoint run again
                    outputs.log.truncate(trainer.start_epoch)
                if trainer.start_epoch >= trainer.epochs:
                    say(f"{run_dir} is trained ({trainer.epochs} epochs); exporting again", main)
                else:
                    say(f"resuming {run_dir} at epoch {trainer.start_epoch + 1}/{trainer.epochs} "
                        f"on {device} with {budget.describe()}", main)
            else:
                if resume and main:  # no checkpoint yet: a logged first epoch runs again
                    outputs.log.truncate(0)
                net = (f"{spec.stem} network C={spec.init_channels} x {spec.layers} cells"
                       if spec.is_darts else f"{spec.model} network")
                say(f"retraining into {run_dir}: {len(train_ds)} train / {len(test_ds)} test "
                    f"images, {net}; {trainer.epochs} epoch(s) on {device} with "
                    f"{budget.describe()}", main)
            for line in run_genotype_lines(job.genotype, spec, trainer.harden_at, trainer.epochs,
                                           trainer.model):
                say(line, main)
            note = busy_note(budget) if main else None
            if note:
                say(note)
            train_epochs(trainer, outputs)
            outputs.tensorboard.close()
            # Every rank: rank 0 writes the files, all evaluate them, each on its shard.
            export(trainer, run, run_dir, info, test_ds, started)
        barrier()
    finally:
        cleanup()
    return 0


def train_epochs(trainer: Trainer, outputs: RunOutputs) -> dict[str, Any]:
    """Train from `trainer.start_epoch` to the end, logging and checkpointing every epoch, then
    harden (the exported model always is); returns the last epoch's record."""
    main, fs = outputs.enabled, trainer.spec.has_fs
    record: dict[str, Any] = {}
    for epoch in range(trainer.start_epoch, trainer.epochs):
        trainer.start_epoch_settings(epoch)
        lr = trainer.lr
        t0 = time.perf_counter()
        tr = trainer.train_epoch(epoch)
        train_s = time.perf_counter() - t0
        trainer.step_schedule(tr)
        te = trainer.test()
        if not math.isfinite(te["test_loss"]):  # a weight that went NaN/inf shows up here
            raise trainer.diverged(epoch, None, f"test loss is {te['test_loss']}")
        seconds = time.perf_counter() - t0
        best = trainer.note_test(te["test_acc"], epoch, seconds)
        record = epoch_record(epoch, tr, te, lr, trainer, seconds, train_s)
        outputs.epoch_done(record, trainer.state_dict(epoch + 1), best)
        say(epoch_line(record, trainer.epochs, fs), main)
    trainer.harden()
    return record
