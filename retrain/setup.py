"""From command-line choices to a resolved config, a NetSpec and the datasets of a retrain run.

Config order (later wins): the preset's `retrain` section; its `imagenet` sub-section when the
network gets the ImageNet stems (dataset `imagenet`, or any dataset whose images are at least
128 px, see retrain.model.pick_stem); `--set key=value` overrides; the dedicated flags
(--epochs, --batch-size, --seed, --fs, --ratio, --device, --threads, --workers, --data-root,
--no-download). The resolved config is what config.yaml records, with `imagenet: null`
meaning "already applied".
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from common.checks import (
    check_bool,
    check_choice,
    check_even_channels,
    check_number,
    normalise_fs_mode,
)
from common.config import apply_override, check_fs_ratio, deep_update, load_preset
from common.data import DatasetInfo, open_dataset
from common.distributed import DistInfo, rank0_first
from common.errors import UserError
from common.fs_settings import fs_spec
from common.runtime import seed_everything
from common.shapes import KNOWN_SHAPES
from genotypes import Genotype, GenotypeError, from_dict, load_genotype
from retrain.data import train_set
from retrain.model import NetSpec, build_network, pick_stem
from space.fs_model import set_grad_reduce

FS_MODES = ("off", "fs", "dfs", "genotype")


def read_genotype(spec: str) -> Genotype:
    """load_genotype with its error as a one-line UserError."""
    try:
        return load_genotype(spec)
    except GenotypeError as e:
        raise UserError(f"bad genotype: {e}") from None


def _base_config(preset: str) -> dict[str, Any]:
    # Fill keys a user's own YAML leaves out from the paper preset, so partial files work.
    cfg = load_preset("paper", "retrain")
    if preset != "paper":
        deep_update(cfg, load_preset(preset, "retrain"))
    return cfg


def _split(preset: str, overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(the base config with the `imagenet.*` overrides applied, the other overrides)."""
    base = _base_config(preset)
    ima_items = [o for o in overrides if o.strip().startswith("imagenet.")]
    for item in ima_items:
        apply_override(base, item)
    return base, [o for o in overrides if o not in ima_items]


def trial_config(preset: str, overrides: list[str]) -> dict[str, Any]:
    """The config before its `imagenet` sub-section is applied (that needs the dataset's
    input size, which this config's data.root / data.input_size decide)."""
    return _trial(*_split(preset, overrides))


def _trial(base: dict[str, Any], other: list[str]) -> dict[str, Any]:
    trial = copy.deepcopy(base)
    trial["imagenet"] = None
    for item in other:
        apply_override(trial, item)
    return trial


def resolve(preset: str, overrides: list[str],
            imagenet_like: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The resolved retrain config; `imagenet_like(cfg)` says whether the ImageNet
    sub-section applies, given the config with the overrides but without that section
    (`trial_config`)."""
    base, other = _split(preset, overrides)
    trial = _trial(base, other)
    ima = base.get("imagenet")
    if not imagenet_like(trial) or not ima:
        cfg = trial
    else:
        cfg = copy.deepcopy(base)
        cfg["imagenet"] = None
        deep_update(cfg, ima)
        for item in other:
            apply_override(cfg, item)
    check(cfg)
    return cfg


def imagenet_like(input_size: tuple[int, int]) -> Callable[[dict[str, Any]], bool]:
    """The `imagenet_like` of `resolve` for a dataset of `input_size`: does the network get
    the ImageNet stems (by the config's `stem`)?"""
    return lambda cfg: stem_for(cfg, input_size) == "imagenet"


@dataclass
class Job:
    """One retrain run, resolved before anything runs: the config, the record config.yaml
    keeps besides it (`run`: dataset, preset, genotype, command), the genotype, the opened
    dataset (train, test or None, info), the network's spec and the network itself, built once
    here with the run's seed (so that geometry errors are one line before anything runs)."""

    cfg: dict[str, Any]
    run: dict[str, Any]
    genotype: Genotype
    data: tuple[Any, Any, DatasetInfo]
    spec: NetSpec
    network: nn.Module


def make_job(cfg: dict[str, Any], run: dict[str, Any], data: tuple[Any, Any, DatasetInfo]) -> Job:
    """The Job of `run` (its genotype as a dict) on the opened dataset `data`."""
    genotype = from_dict(run["genotype"])
    info = data[2]
    try:
        spec = make_spec(cfg, genotype, info.num_classes, info.input_size)
        seed_everything(int(cfg["seed"]))  # the initial weights depend on the seed only
        network = build_network(spec)
        set_grad_reduce(network, cfg["fs"]["grad_reduce"])
    except ValueError as e:  # e.g. a ratio above a layer's filter count
        raise UserError(f"cannot build the network: {e}") from None
    return Job(cfg, run, genotype, data, spec, network)


def check(cfg: dict[str, Any]) -> None:
    """Reject values that would only fail later (or silently do something else), worded as
    the search's checks (common.checks); learning rates and the regularisers included."""
    normalise_fs_mode(cfg)
    check_choice(cfg, "fs.mode", FS_MODES)
    check_choice(cfg, "fs.grad_reduce", ("mean", "sum"))
    check_number(cfg, "fs.offset_lr_scale", float, 0.0, lo_open=True)
    check_choice(cfg, "optimizer.schedule", ("cosine", "step"))
    check_choice(cfg, "stem", ("auto", "cifar", "imagenet"))
    for key in ("epochs", "batch_size", "layers"):
        check_number(cfg, key, int, 1)
    check_number(cfg, "seed", int, 0)
    check_number(cfg, "init_channels", int, 2)
    check_even_channels(cfg)
    if cfg["fs"]["ratio"] is not None:  # null: the genotype's
        check_fs_ratio(cfg["fs"]["ratio"])  # worded as the search words it
    check_number(cfg, "fs.num_offsets", int, 1, optional=True)  # null: the genotype's
    check_number(cfg, "fs.harden_epoch", int, 0, optional=True)  # null: half of training
    for key in ("fs.temperature.start", "fs.temperature.end"):
        check_number(cfg, key, float, 0.0, lo_open=True)
    for key in ("optimizer.lr", "optimizer.lr_min", "optimizer.momentum",
                "optimizer.weight_decay", "auxiliary_weight"):
        check_number(cfg, key, float, 0.0)
    check_number(cfg, "optimizer.grad_clip", float, 0.0, optional=True)  # 0 or null: no clipping
    check_number(cfg, "optimizer.decay", float, 0.0, lo_open=True)
    for key in ("label_smoothing", "drop_path_prob"):
        check_number(cfg, key, float, 0.0, 1.0, hi_open=True)
    check_number(cfg, "cutout", int, 0, optional=True)
    check_number(cfg, "data.workers", int, 0, optional=True)  # null: chosen (common.cpu)
    check_number(cfg, "runtime.threads", int, 1, optional=True)
    for key in ("data.max_images", "data.max_test_images"):
        check_number(cfg, key, int, 1, optional=True)
    check_number(cfg, "data.input_size", int, 8, optional=True)
    for key in ("auxiliary", "data.download", "runtime.amp", "runtime.channels_last",
                "runtime.deterministic", "runtime.adapt_threads"):
        check_bool(cfg, key)


def dataset_shape(spec: str | None, cfg: dict[str, Any]) -> tuple[int, tuple[int, int]] | None:
    """(classes, input size) of a named dataset without opening it (None for folders)."""
    key = (spec or "cifar10").lower()
    if key not in KNOWN_SHAPES:
        return None
    classes, size = KNOWN_SHAPES[key]
    size = cfg["data"]["input_size"] or size
    return classes, (int(size), int(size))


def stem_for(cfg: dict[str, Any], input_size: tuple[int, int]) -> str:
    return pick_stem(input_size) if cfg.get("stem", "auto") == "auto" else cfg["stem"]


def make_spec(cfg: dict[str, Any], genotype: Genotype, num_classes: int,
              input_size: tuple[int, int]) -> NetSpec:
    return NetSpec(genotype=genotype, init_channels=int(cfg["init_channels"]),
                   layers=int(cfg["layers"]), num_classes=int(num_classes),
                   input_size=input_size, auxiliary=bool(cfg["auxiliary"]),
                   fs=fs_spec(cfg["fs"], genotype.fs), stem=stem_for(cfg, input_size))


def open_data(spec: str, cfg: dict[str, Any], may_download: bool = True):
    """(train, test or None, info) of the configured dataset (one clear line if missing).
    `may_download=False`: never download (the ranks after the first under torchrun)."""
    d = cfg["data"]
    return open_dataset(spec, d["root"], bool(d["download"]) and may_download, d["input_size"])


def open_data_ranked(spec: str, cfg: dict[str, Any], dist: DistInfo):
    """`open_data` on rank 0 first (it alone may download), then on the other ranks, as the
    search does (common.distributed.rank0_first): ranks never race on one folder."""
    return rank0_first(dist, lambda first: open_data(spec, cfg, may_download=first))


def dataset_spec(dataset: str) -> str:
    """The dataset as a run records it: a folder as its absolute path (the run can be resumed
    or evaluated from elsewhere), a named dataset as its name."""
    if Path(dataset).expanduser().is_dir() and dataset.lower() not in KNOWN_SHAPES:
        return str(Path(dataset).expanduser().resolve())
    return dataset


def export_meta(cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    """What an export records about its run (retrain.evaluate repeats the run's evaluation
    from it); the summary predicts file sizes from the same dict."""
    return {"dataset": dataset, "batch_size": int(cfg["batch_size"]),
            "test_limit": cfg["data"].get("max_test_images"), "epochs": int(cfg["epochs"]),
            "seed": cfg["seed"], "channels_last": bool(cfg["runtime"]["channels_last"])}


def train_steps(cfg: dict[str, Any], opened: tuple) -> int:
    """Optimizer steps of a single-process run on the opened dataset (every batch, the last
    partial one included, every epoch)."""
    train, test, info = opened
    n = len(train_set(train, test, info, cfg["data"].get("max_images"), 0))
    return int(cfg["epochs"]) * math.ceil(n / int(cfg["batch_size"]))


def data_meta(info: DatasetInfo) -> dict[str, Any]:
    """What an export records about its dataset (normalisation, size, class names)."""
    return {"name": info.name, "num_classes": info.num_classes,
            "input_size": list(info.input_size), "mean": list(info.mean),
            "std": list(info.std), "classes": list(info.classes)}


def info_from_meta(meta: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(meta["name"], int(meta["num_classes"]), tuple(meta["input_size"]),
                       tuple(meta["mean"]), tuple(meta["std"]), list(meta.get("classes", [])))
