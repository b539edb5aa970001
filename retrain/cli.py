"""`python -m retrain`: retrain a genotype from scratch, print its summary, or resume a run.

    python -m retrain --genotype DARTS_V2 --summary [--json] [--fs off] [--ratio 4]
    python -m retrain --genotype runs/search-x --dataset cifar10 [--preset paper] [--set k=v]
    python -m retrain --arch DARTS_V2 --dataset cifar10 --print-config   # DARTS's --arch
    python -m retrain --resume runs/retrain-cifar10-20250101-120000
    torchrun --nproc_per_node 4 -m retrain --genotype G --dataset imagenet --device cuda

A run directory holds config.yaml, genotype.json, log.jsonl, latest.pt / best.pt (resumable
checkpoints), model.pt / model-wq.pt (exports, see retrain.export; no model-wq.pt for --fs
off), model.onnx (retrain.onnx_export), metrics.json, and with --tensorboard tensorboard/.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from common.cli_flags import (
    SHORTHANDS,
    Parser,
    fixed_on_resume,
    flag_overrides,
    override_key,
    ratio_arg,
)
from common.config import load_config_file, preset_choices, resolve_config
from common.config_schema import RetrainConfig
from common.cpu import cpu_budget
from common.distributed import DistInfo, cleanup, init_distributed, rank0_first
from common.errors import UserError, cli_entry
from common.fs_settings import DEFAULT_RATIO, fs_spec
from common.runlock import hold_run_dir, release_run_dirs
from common.runlog import check_run_dir, command_line, remove_temp_files
from common.runtime import resolve_device, set_threads
from common.schema import as_dict, leaf_keys
from genotypes import Genotype, to_dict
from retrain import netspec, setup
from retrain.model import NetSpec, build_network
from retrain.run import run_training
from retrain.summary import summarize
from retrain.summary_table import format_json, format_table
from space.models import list_models, model_entry

#: The shorthand flags of this CLI: the shared ones, and the registered network's.
FLAGS = {**SHORTHANDS, "model": "model.name", "fs_policy": "fs.policy"}
FS_POLICIES = leaf_keys(RetrainConfig)["fs.policy"].meta["choices"]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m retrain", description="Retrain a DARTS genotype with FS/DFS 1x1 convs "
        "(CIFAR or ImageNet network), export it compressed, or print its summary.",
        epilog="Network: inputs below 128 px get the DARTS CIFAR network (3x3 stem, default "
        "C=36, 20 cells), larger ones the DARTS ImageNet network (two stride-2 stems, C=48, 14 "
        "cells, and the preset's `imagenet` settings); override with --set stem=cifar|imagenet. "
        "Both end in global average pooling, so any input size and class count works. "
        "Config: the preset's `retrain` section, then --set, then the flags below.")
    p.add_argument("--model", help="a registered network instead of a genotype's (resnet20, "
                   "resnet56, resnet18, vgg16, densenet100, tv:<torchvision name>, ...); "
                   "`--model list` prints them with their parameter counts")
    p.add_argument("--genotype", "--arch", dest="genotype", help="genotype file (.json/.yaml/"
                   ".txt), search run dir, DARTS repr or zoo name (DARTS_V1, DARTS_V2, PC_DARTS, "
                   "PDARTS); --arch is DARTS's name for it")
    p.add_argument("--dataset", help="cifar10, cifar100, imagenet or an ImageFolder directory "
                   "(DIR/train, DIR/test or DIR/val); optional with --summary (CIFAR-10 shape)")
    p.add_argument("--summary", action="store_true", help="print the per-cell parameter / "
                   "compression / MACs / size table and exit without training")
    p.add_argument("--json", action="store_true", help="with --summary: print JSON")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved retrain config (YAML) and exit")
    p.add_argument("--preset", help=f"config preset ({preset_choices()}) or a YAML file "
                   "(default: cnn with --model, paper otherwise)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optimizer.lr=0.05 (repeatable)")
    p.add_argument("--epochs", type=int, help="training epochs (paper: 600 CIFAR, 250 ImageNet)")
    p.add_argument("--batch-size", type=int, help="batch size per process")
    p.add_argument("--seed", type=int, help="seed of initial weights, data order, augmentation")
    p.add_argument("--fs", choices=setup.FS_MODES, help="the FS layers: off (plain network), "
                   "fs (fixed offsets), dfs (learned, then hardened; default), genotype (the "
                   "genotype's own) or fs3d (3D FS; --model networks)")
    p.add_argument("--fs-policy", choices=FS_POLICIES, help="--model networks: ratio (every conv "
                   "at --ratio) or paper (3D FS: the FSNet paper's K3 per filter count, 1x1 "
                   "convs at ratio 8)")
    p.add_argument("--ratio", type=ratio_arg, help="FS compression ratio of every FS layer "
                   "(default: the genotype's, its per-op ratios included, else "
                   f"{DEFAULT_RATIO:g})")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (AMP on CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the cores left "
                   "after the loader workers; 1 on a machine another job keeps busy)")
    p.add_argument("--workers", type=int, help="DataLoader workers (default: 0 on CPU for "
                   "images below 128 px, else a few)")
    p.add_argument("--data-root", help="where named datasets live")
    p.add_argument("--no-download", action="store_true", help="never download a dataset")
    p.add_argument("--tensorboard", action="store_true", default=None, help="write TensorBoard "
                   "event files to RUN_DIR/tensorboard (config log.tensorboard)")
    p.add_argument("--out", help="run directory (default runs/retrain-<dataset>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    return p


def _resolve(args: argparse.Namespace, need_files: bool, dist: DistInfo | None = None
             ) -> tuple[RetrainConfig, tuple[int, tuple[int, int]], tuple | None]:
    """(config, (classes, input size), opened dataset or None). The dataset is opened, as
    its own step (rank 0 first under torchrun), when training needs its files or its shape
    is not known without them (a folder); its input size decides whether the preset's
    `imagenet` settings apply."""
    overrides = args.overrides + flag_overrides(args, FLAGS)
    trial = setup.trial_config(args.preset, overrides)
    shape = None if need_files else setup.dataset_shape(args.dataset, trial)
    opened = None
    if shape is None:
        opened = setup.open_data_ranked(args.dataset, trial, dist or DistInfo())
        shape = (opened[2].num_classes, opened[2].input_size)
    cfg = setup.resolve(args.preset, overrides, setup.imagenet_like(shape[1]))
    return cfg, shape, opened


def _data_record(dataset: str | None, cfg: RetrainConfig, opened: tuple | None):
    """(the dataset record an export of this run holds (setup.data_meta), the opened dataset),
    or (None, None) when the dataset cannot be read cheaply (no --dataset; ImageNet; not on
    disk)."""
    if opened is None and dataset and dataset.lower() in ("cifar10", "cifar100"):
        try:
            opened = setup.open_data(dataset, cfg, may_download=False)
        except UserError:
            return None, None
    return (None, None) if opened is None else (setup.data_meta(opened[2]), opened)


def _list_models() -> int:
    """`--model list`: each registered network, its parameters on CIFAR-10's shape, what it is."""
    rows = []
    for name in list_models():
        entry = model_entry(name)
        # ImageNet-only layouts (e.g. ShaRDNet's sl-resnet34) refuse 32x32: counted at 224.
        large = entry.inputs == "imagenet"
        net = None if name == "darts" else entry.build(10, 3, (224, 224) if large else (32, 32))
        count = "-" if net is None else f"{sum(p.numel() for p in net.parameters()):,}"
        rows.append((name, count, ("(at 224x224) " if large else "") + entry.description))
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'model':<{w0}}  {'params':>{w1}}  description (parameters at 10 classes, 32x32)")
    for name, count, text in rows:
        print(f"{name:<{w0}}  {count:>{w1}}  {text}")
    print(f"{'tv:<name>':<{w0}}  {'':>{w1}}  any torchvision classification model, e.g. "
          "tv:resnet50, tv:mobilenet_v3_small (random weights)")
    return 0


def _network_choice(args: argparse.Namespace) -> Genotype | None:
    """The genotype of --genotype, or None with --model (exactly one of the two)."""
    if args.model and args.genotype:
        raise UserError("give --genotype G (the DARTS network) or --model NAME, not both")
    if args.model:
        setup.check_model(args.model)
        return None
    return setup.read_genotype(args.genotype)


def _summary(args: argparse.Namespace) -> int:
    genotype = _network_choice(args)
    cfg, (classes, size), opened = _resolve(args, need_files=False)
    set_threads(cpu_budget(cfg.runtime.threads, 0, "cpu", min(size)).threads)
    spec, network = _spec(cfg, genotype, classes, size)
    # With the dataset's record and the run's meta, the predicted file sizes are those of the
    # files this configuration exports (see retrain.export.exported_size).
    record, opened = _data_record(args.dataset, cfg, opened)
    meta = steps = None
    if record is not None:
        meta = setup.export_meta(cfg, setup.dataset_spec(args.dataset))
        steps = setup.train_steps(cfg, opened)
    report = summarize(spec, network, data=record, meta=meta, train_steps=steps)
    print(format_json(report) if args.json else format_table(report))
    if cfg.prune.params is not None and not args.json:
        from retrain.schedule import prune_epoch

        print(f"pruned to at most {cfg.prune.params:,} parameters at the start of epoch "
              f"{prune_epoch(cfg) + 1} of {cfg.epochs} (Torch-Pruning; which channels go depends "
              "on the trained weights): the table is the network before pruning")
    return 0


def _print_config(args: argparse.Namespace) -> int:
    """The resolved `retrain` config as YAML (as config.yaml will record it, but with null
    threads/workers: they are chosen at start-up)."""
    cfg, _, _ = _resolve(args, need_files=False)
    print(yaml.safe_dump(as_dict(cfg), sort_keys=False), end="")
    return 0


def _spec(cfg: RetrainConfig, genotype: Genotype | None, classes: int,
          size: tuple[int, int]) -> tuple[NetSpec, nn.Module]:
    """The summary's NetSpec and network, built here so that geometry errors (e.g. a ratio
    above a layer's filter count) are one clear line."""
    try:
        spec = netspec.make_spec(cfg, genotype, classes, size)
        network = build_network(spec)
        netspec.check_pruning(cfg, spec, network)
        return spec, network
    except ValueError as e:
        raise UserError(f"cannot build the network: {e}") from None


def _resume_config(args: argparse.Namespace) -> tuple[RetrainConfig, dict[str, Any]]:
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such folder; give the directory of the run to "
                        "continue")
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a retrain run directory (no config.yaml); give the "
                        "directory of the run to continue")
    # What may change is common.cli_flags.RESUMABLE (--set of those keys included): where
    # and how fast the run computes, never its arithmetic (augmentation is seeded per image).
    items = args.overrides + flag_overrides(args, FLAGS)
    fixed = set(fixed_on_resume(items))
    other = [k for k, v in vars(args).items() if v and k not in FLAGS
             and k not in ("resume", "preset", "overrides", "no_download")]
    flags = (["--set"] * any(override_key(s) in fixed for s in args.overrides)
             + [f"--{k.replace('_', '-')}" for k, key in FLAGS.items()
                if getattr(args, k) is not None and key in fixed]
             + [f"--{k.replace('_', '-')}" for k in other])
    if flags or args.preset != "paper":
        raise UserError(f"--resume continues the run exactly as configured in {run_dir}/config.yaml; "
                        f"drop {', '.join(flags) or '--preset'} (only --device, --threads, "
                        "--workers, --data-root, --no-download, --tensorboard may change)")
    data = load_config_file(run_dir / "config.yaml")
    if not all(k in data for k in ("retrain", "dataset")) or not ("genotype" in data
                                                                 or "network" in data):
        raise UserError(f"{run_dir}/config.yaml is not a retrain run's config; give a retrain run")
    # As a preset: its `base` fills in keys a later version adds (see common.config).
    cfg = resolve_config("retrain", str(run_dir / "config.yaml"), items)
    run = {k: v for k, v in data.items() if k not in ("retrain", "base")}
    return cfg, run


@cli_entry
def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        release_run_dirs()  # the run directory's lock (common.runlock), however it ended


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.preset = args.preset or setup.default_preset(args.model)
    if args.print_config:
        if args.resume:
            raise UserError(f"--print-config shows a preset's config; {args.resume}/config.yaml "
                            "holds the run's")
        return _print_config(args)
    if args.model == "list":
        return _list_models()
    if args.summary:
        if not args.genotype and not args.model:
            raise UserError("--summary needs --genotype G or --model NAME")
        return _summary(args)
    if args.resume:
        cfg, run = _resume_config(args)
        # Held until the retrain ends: nothing below reads a file another run is writing.
        if hold_run_dir(args.resume, f"--resume {args.resume} again"):  # rank 0 alone cleans up
            remove_temp_files(args.resume)  # a kill's half-written checkpoint or export
        with _process_group(cfg) as dist:
            job = setup.make_job(cfg, run, setup.open_data_ranked(run["dataset"], cfg, dist))
            return run_training(job, Path(args.resume), resume=True)
    if not (args.genotype or args.model) or not args.dataset:
        raise UserError("training needs --genotype G or --model NAME, and --dataset D (or "
                        "--resume RUN_DIR, or --summary)")
    genotype = _network_choice(args)
    trial = setup.trial_config(args.preset, args.overrides + flag_overrides(args, FLAGS))
    with _process_group(trial) as dist:
        cfg, _, opened = _resolve(args, need_files=True, dist=dist)
        no_fs = (cfg.fs.mode == "off" if genotype is None
                 else fs_spec(cfg.fs, genotype.fs) is None)
        if no_fs and args.ratio is not None:
            raise UserError("--ratio has no effect without FS layers; drop it or use --fs dfs/fs")
        network = ({"network": cfg.model.name} if genotype is None
                   else {"genotype": to_dict(genotype)})
        run = {"dataset": setup.dataset_spec(args.dataset), "preset": args.preset, **network,
               "command": shlex.join(command_line("retrain", argv))}
        job = setup.make_job(cfg, run, opened)
        # Before any training: a wrong --out costs one line. Rank 0 alone checks (and later
        # creates) it; its error stops every rank.
        rank0_first(dist, lambda first: check_run_dir(args.out, args.overwrite) if first else None)
        return run_training(job, args.out, resume=False, overwrite=args.overwrite)


@contextlib.contextmanager
def _process_group(cfg: RetrainConfig) -> Iterator[DistInfo]:
    """Join torchrun's process group (no-op in a single process) before the dataset is
    opened, so that rank 0 opens (and downloads) it first; left by run_training, or here
    when set-up fails before it."""
    dist = init_distributed(resolve_device(str(cfg.runtime.device)))
    try:
        yield dist
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
