"""`python -m search DATASET [options]` (./run_search.sh): parse, check, set up, search.

Everything that can be wrong with the input (preset, keys, values, dataset, run directory)
is checked before the run directory is created or replaced, so a mistake costs one line
(exit status 2) and never an earlier run.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from common.checkpoint import check_resume_device, load_resume_checkpoint
from common.cli_flags import (
    SHORTHANDS,
    Parser,
    fixed_on_resume,
    flag_overrides,
    override_key,
    ratio_arg,
)
from common.config import load_config_file, preset_choices, resolve_config
from common.cpu import busy_note
from common.data import open_dataset
from common.distributed import cleanup, init_distributed, local_device
from common.errors import UserError, cli_entry
from common.runlock import hold_run_dir, release_run_dirs
from common.runlog import (
    JsonlLog,
    check_run_dir,
    command_line,
    interrupt_advice,
    make_run_dir,
    remove_temp_files,
    say,
    start_again,
)
from common.runtime import precision, resolve_device, seed_everything, set_threads
from common.schema import as_dict, resumable_keys
from genotypes import describe_fs
from search.algorithms import ALGORITHMS
from search.data import build_search_data
from search.ddp import rank0_first
from search.outputs import CHECKPOINT, CONFIG, LOG, save_run_config
from search.resolve import SearchSettings, resolve_search, settle
from search.run import run_search
from search.settings import SearchConfig, checked_algorithm

EPILOG = """\
examples:
  ./run_search.sh cifar10                                   # the DARTS setting (preset paper)
  ./run_search.sh ../shared/data/cifar10-subset --preset smoke  # minutes on a laptop CPU
  ./run_search.sh cifar10 --order second --fs fs --ratio 4 --set arch.warmup_epochs=10
  ./run_search.sh cifar10 --budget 1.5M --ratios 1,2,4,8     # each op's ratio searched under a budget
  ./run_search.sh cifar10 --threads 1      # on a machine where another job is running
  ./run_search.sh /data/flowers --set data.input_size=64 --set data.max_images=2000
  ./run_search.sh --resume runs/search-cifar10-20250101-120000
  torchrun --nproc_per_node 4 -m search cifar10             # DDP, first order; batch per process

DATASET is cifar10, cifar100 (downloaded into --data-root), imagenet (DATA_ROOT/imagenet/
{train,val}) or a folder with train/<class>/<image> (and optionally test/ or val/).
Every key of the `search:` section of a preset (configs/) can be set with --set KEY=VALUE
(see --print-config); the shorthand flags below are applied after the --set items.
Threads and loader workers not set are chosen to fit the cores (shown at start-up).
"""

# Shorthand flag -> config key: the shared ones and search's own.
SEARCH_SHORTHANDS = {**SHORTHANDS, "algo": "algorithm", "partial_channels": "partial_channels",
                     "order": "arch.order", "max_images": "data.max_images",
                     "budget": "budget.params", "ratios": "fs.ratios"}
# What --resume may change: the schema's resumable keys (where and how it runs, and the
# drawing and plotting settings), never what it computes.
SEARCH_RESUMABLE = resumable_keys(SearchConfig)


def _ratio_list(text: str) -> str:
    """--ratios 1,2,4,8 as the YAML list the override takes."""
    parts = [t.strip() for t in text.replace("[", "").replace("]", "").split(",") if t.strip()]
    return "[" + ",".join(parts) + "]"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="run_search.sh", description="DARTS search over FS/DFS convolutions.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", nargs="?", help="cifar10 | cifar100 | imagenet | PATH (ImageFolder)")
    p.add_argument("--preset", default="paper",
                   help=f"a preset ({preset_choices()}) or a YAML path (default: paper)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set weights.lr=0.05 (repeatable)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per process under torchrun")
    p.add_argument("--seed", type=int)
    p.add_argument("--fs", choices=["off", "fs", "dfs"], help="1x1 convs: plain, FS, or DFS")
    p.add_argument("--ratio", type=ratio_arg, help="FS compression ratio (>= 1)")
    p.add_argument("--ratios", type=_ratio_list, metavar="R1,R2,...",
                   help="search each op's FS ratio among these, e.g. 1,2,4,8 (fs.ratios)")
    p.add_argument("--budget", metavar="PARAMS",
                   help="effective parameters of the retrain network (paper width: C=36, 20 "
                   "cells; budget.init_channels/layers), e.g. 1.5M, 800k, 1200000")
    p.add_argument("--algo", choices=list(ALGORITHMS),
                   help="search algorithm (default darts; see also --preset pc-darts)")
    p.add_argument("--partial-channels", type=int, metavar="K",
                   help="pc-darts: mix each edge's ops on 1/K of its channels (default 4)")
    p.add_argument("--order", choices=["first", "second"], help="DARTS approximation order")
    p.add_argument("--unrolled", action="store_true",
                   help="DARTS's name for --order second (the unrolled step)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the cores left "
                   "after the loader workers; 1 on a machine another job keeps busy)")
    p.add_argument("--workers", type=int, help="DataLoader workers (default: 0 on CPU for "
                   "images below 128 px, else a few)")
    p.add_argument("--max-images", type=int, help="cap the training images (stratified)")
    p.add_argument("--data-root", help="where cifar10/100 and imagenet live (default ./data)")
    p.add_argument("--no-download", action="store_true", help="never download a dataset")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="write TensorBoard event files to RUN_DIR/tensorboard (log.tensorboard)")
    p.add_argument("--out", help="run directory (default runs/search-DATASET-TIME)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def _overrides(args: argparse.Namespace) -> list[str]:
    if args.unrolled:  # DARTS's train_search.py flag
        if args.order == "first":
            raise UserError("--unrolled is DARTS's name for --order second; drop --order first "
                            "or --unrolled")
        args.order = "second"
    items = [re.sub(r"^search\.", "", s.strip()) for s in args.overrides]
    return items + flag_overrides(args, SEARCH_SHORTHANDS)


def _tag(dataset: str) -> str:
    name = Path(dataset.rstrip("/")).name or "data"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _prepare_resume(args: argparse.Namespace, items: list[str]):
    """(config, dataset, preset, checkpoint state) of the run to continue."""
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such folder; give the run directory to continue")
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"{run_dir} is not a search run directory (no {CONFIG}); check the path")
    if args.out or args.overwrite:
        raise UserError("--resume continues a run in place; drop --out/--overwrite")
    # Held until the search ends: nothing below reads a file another run is writing.
    if hold_run_dir(run_dir, f"--resume {run_dir} again"):  # rank 0 alone cleans up
        remove_temp_files(run_dir)  # a kill's half-written checkpoint or config
    fixed = fixed_on_resume(items, SEARCH_RESUMABLE)
    if fixed or args.preset != "paper":
        what = fixed[0] if fixed else "--preset"
        raise UserError(f"--resume continues {run_dir} with its saved config, so {what} cannot "
                        f"change (only {', '.join(SEARCH_RESUMABLE)} can)")
    saved = load_config_file(run_dir / CONFIG)
    if "search" not in saved or "dataset" not in saved:
        raise UserError(f"{run_dir / CONFIG} has no search section or dataset; was it written by a search?")
    preset_file = run_dir / CONFIG
    cfg = resolve_config("search", str(preset_file), items)
    if not (run_dir / CHECKPOINT).is_file():
        raise UserError(f"{run_dir} has no {CHECKPOINT} yet (it stopped during its first epoch); "
                        f"{start_again(run_dir)}")
    state = load_resume_checkpoint(run_dir, CHECKPOINT, "search")
    return run_dir, cfg, args.dataset or saved["dataset"], saved.get("preset", "paper"), state


@cli_entry
def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    finally:
        release_run_dirs()  # the run directory's lock (common.runlock), however it ended


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    items = _overrides(args)
    state, given = None, None
    if args.resume:  # its config.yaml records every choice: nothing to settle
        run_dir, cfg, dataset, preset, state = _prepare_resume(args, items)
    else:
        run_dir, dataset, preset = None, args.dataset, args.preset
        cfg = resolve_config("search", preset, items)
        given = {override_key(s) for s in items}
    settled = settle(cfg, given)  # what --print-config shows; the dataset decides the rest
    algorithm = checked_algorithm(settled)  # the search's one algorithm
    if args.print_config:
        print(yaml.safe_dump(as_dict(settled), sort_keys=False), end="")
        return
    if not dataset:
        raise UserError("give a DATASET (cifar10, cifar100, imagenet or an ImageFolder path), "
                        "or --resume RUN_DIR; see --help")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and cfg.arch.order == "second":
        raise UserError("second-order search is single-process only (its unrolled step would "
                        "need DDP inside the architect); use --order first with torchrun")
    if state is None:
        check_run_dir(args.out, args.overwrite)
    device = resolve_device(cfg.runtime.device)
    if state is not None:  # before the resume touches config.yaml or log.jsonl
        check_resume_device(state, run_dir, device, precision(device, bool(cfg.runtime.amp)))
    dist_info = init_distributed(device)
    try:
        device = local_device(device, dist_info)
        set_threads(cfg.runtime.threads)
        seed_everything(int(cfg.seed))
        data = cfg.data
        # Rank 0 first: it alone may download, and its error is the one reported.
        train_set, _, info = rank0_first(dist_info, lambda first: open_dataset(
            dataset, data.root, bool(data.download) and first, data.input_size))
        # The search's settings, resolved once: what config.yaml records and the rest reads.
        settings = resolve_search(cfg, info, device.type, given, algorithm)
        set_threads(settings.cpu.threads)
        _say_choices(settings, cfg, dist_info.is_main)
        cfg = settings.cfg  # the resolved config: nothing changes it from here on
        command = command_line("search", argv)
        # The two halves and their batches (too few images for one is one line) before the
        # run directory is made.
        sd = build_search_data(train_set, info, cfg, dist_info, pin_memory=device.type == "cuda")
        if state is None:
            # Created (or replaced) only now that the config and the dataset are known good.
            run_dir = Path(rank0_first(dist_info, lambda first: str(make_run_dir(
                args.out, "search", _tag(dataset), args.overwrite)), share=True))
            if dist_info.is_main:
                with interrupt_advice(run_dir, CHECKPOINT):  # a full disk: what is kept
                    save_run_config(run_dir, cfg, dataset, preset, command)
        elif dist_info.is_main:
            with interrupt_advice(run_dir, CHECKPOINT):
                JsonlLog(run_dir / LOG).truncate(int(state["epoch"]))
                saved = load_config_file(run_dir / CONFIG)
                save_run_config(run_dir, cfg, dataset, preset,
                                shlex.split(saved.get("command", "")),
                                list(saved.get("resumed") or []) + [shlex.join(command)])
        with interrupt_advice(run_dir, CHECKPOINT, dist_info.is_main):
            _start(settings, sd, info, run_dir, dataset, preset, device, dist_info, state)
    finally:
        cleanup()


def _say_choices(settings: SearchSettings, cfg: SearchConfig, main: bool) -> None:
    """The budget's choices (`cfg`: the config before them)."""
    if settings.chose_ratios:
        say("budget: each op's FS ratio is searched among "
            f"{', '.join(f'{r:g}' for r in settings.ratios or ())} (--ratios to choose others, "
            "--ratio R to fix one)", main)
    if settings.width < 1.0:
        say(f"budget: width rule: the network the budget counts is narrowed to "
            f"init_channels {settings.counted.init_channels} of {cfg.budget.init_channels} "
            f"(FS ratios up to budget.max_ratio {cfg.budget.max_ratio:g} cannot reach "
            f"{cfg.budget.params:,} at full width; budget.rule ratios: ratios alone)", main)
    chosen = settings.preprocess_ratio
    if chosen is not None:
        say(f"budget: the cell preprocessing takes FS ratio {chosen:g} (not fs.ratio "
            f"{cfg.fs.ratio:g}): the smallest candidate at which a sep_conv_3x3 cell "
            "at that ratio fits the budget", main)


def _algo_text(settings: SearchSettings) -> str:
    cfg = settings.cfg
    return f"algo={cfg.algorithm}{settings.algorithm.describe()} order={cfg.arch.order}"


def _start(settings: SearchSettings, sd, info, run_dir: Path, dataset: str, preset: str,
           device, dist_info, state: dict[str, Any] | None) -> None:
    cfg, budget = settings.cfg, settings.cpu
    fs_text = describe_fs(settings.fs)
    if settings.ratios is not None:
        fs_text += f"; each op's ratio searched among {', '.join(f'{r:g}' for r in settings.ratios)}"
    if cfg.budget.params is not None:
        fs_text += f"; budget {cfg.budget.params:,} parameters"
    where = f"resuming {run_dir} at epoch {int(state['epoch']) + 1}" if state else f"run dir {run_dir}"
    procs = f" x {dist_info.world_size} processes" if dist_info.enabled else ""
    is_main = dist_info.is_main
    say(f"search on {dataset}: {info.num_classes} classes, {info.input_size[0]}x{info.input_size[1]}, "
        f"{sd.num_train} + {sd.num_valid} images; C={cfg.init_channels} layers={cfg.layers} "
        f"{_algo_text(settings)}; fs: {fs_text}; {cfg.epochs} epoch(s) on "
        f"{device}{procs} with {budget.describe()}; {where}", is_main)
    note = busy_note(budget) if is_main else None
    if note:
        say(note)
    if state is not None and int(state.get("world_size", 1)) != dist_info.world_size:
        say(f"note: {run_dir} ran with {state['world_size']} process(es), this resume with "
            f"{dist_info.world_size}: the batches differ from an uninterrupted run", is_main)
    run_search(settings, sd, run_dir, dataset, device, dist_info, resume_state=state,
               preset=preset)
