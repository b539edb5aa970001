"""From command-line choices to a resolved config, a NetSpec (retrain.netspec) and the datasets
of a retrain run.

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

from common.config import apply_override, build_section, load_preset
from common.config_schema import RetrainConfig
from common.data import DatasetInfo, open_dataset
from common.distributed import DistInfo, rank0_first
from common.errors import UserError
from common.runtime import seed_everything
from common.schema import flatten, leaf_keys, set_key
from common.shapes import KNOWN_SHAPES
from genotypes import Genotype, GenotypeError, from_dict, load_genotype
from retrain.data import train_set
from retrain.model import NetSpec, build_network
from retrain.netspec import check_pruning, make_spec, stem_for
from space.layers.fs_model import set_grad_reduce
from space.models import model_entry

FS_MODES = leaf_keys(RetrainConfig)["fs.mode"].meta["choices"]  # --fs, and study.spec's


def read_genotype(spec: str) -> Genotype:
    """load_genotype with its error as a one-line UserError."""
    try:
        return load_genotype(spec)
    except GenotypeError as e:
        raise UserError(f"bad genotype: {e}") from None


def _split(preset: str, overrides: list[str]) -> tuple[RetrainConfig, list[str]]:
    """(the preset's config with the `imagenet.*` overrides applied, the other overrides).
    Keys a user's own YAML leaves out take the schema's defaults (the paper preset's)."""
    base = build_section("retrain", load_preset(preset, "retrain"), f" in preset {preset}")
    ima_items = [o for o in overrides if o.strip().startswith("imagenet.")]
    for item in ima_items:
        apply_override(base, item)
    return base, [o for o in overrides if o not in ima_items]


def trial_config(preset: str, overrides: list[str]) -> RetrainConfig:
    """The config before its `imagenet` sub-section is applied (that needs the dataset's
    input size, which this config's data.root / data.input_size decide)."""
    return _trial(*_split(preset, overrides))


def _trial(base: RetrainConfig, other: list[str]) -> RetrainConfig:
    trial = copy.deepcopy(base)
    trial.imagenet = None
    for item in other:
        apply_override(trial, item)
    return trial


def resolve(preset: str, overrides: list[str],
            imagenet_like: Callable[[RetrainConfig], bool]) -> RetrainConfig:
    """The resolved retrain config; `imagenet_like(cfg)` says whether the ImageNet
    sub-section applies, given the config with the overrides but without that section
    (`trial_config`)."""
    base, other = _split(preset, overrides)
    trial = _trial(base, other)
    ima = base.imagenet
    if not imagenet_like(trial) or not ima:
        return trial
    cfg = copy.deepcopy(base)
    cfg.imagenet = None
    for key, value in flatten(ima):
        set_key(cfg, key, value)
    for item in other:
        apply_override(cfg, item)
    return cfg


def imagenet_like(input_size: tuple[int, int]) -> Callable[[RetrainConfig], bool]:
    """The `imagenet_like` of `resolve` for a dataset of `input_size`: does the network get
    the ImageNet stems (by the config's `stem`)?"""
    return lambda cfg: stem_for(cfg, input_size) == "imagenet"


@dataclass
class Job:
    """One retrain run, resolved before anything runs: the config, the record config.yaml
    keeps besides it (`run`: dataset, preset, genotype, command), the genotype, the opened
    dataset (train, test or None, info), the network's spec and the network itself, built once
    here with the run's seed (so that geometry errors are one line before anything runs)."""

    cfg: RetrainConfig
    run: dict[str, Any]
    genotype: Genotype | None
    data: tuple[Any, Any, DatasetInfo]
    spec: NetSpec
    network: nn.Module


def make_job(cfg: RetrainConfig, run: dict[str, Any], data: tuple[Any, Any, DatasetInfo]) -> Job:
    """The Job of `run` (its genotype as a dict, or none for a registered network) on the
    opened dataset `data`."""
    genotype = from_dict(run["genotype"]) if run.get("genotype") is not None else None
    info = data[2]
    try:
        spec = make_spec(cfg, genotype, info.num_classes, info.input_size)
        seed_everything(int(cfg.seed))  # the initial weights depend on the seed only
        network = build_network(spec)
        set_grad_reduce(network, cfg.fs.grad_reduce)
        check_pruning(cfg, spec, network)
    except ValueError as e:  # e.g. a ratio above a layer's filter count
        raise UserError(f"cannot build the network: {e}") from None
    return Job(cfg, run, genotype, data, spec, network)


def dataset_shape(spec: str | None, cfg: RetrainConfig) -> tuple[int, tuple[int, int]] | None:
    """(classes, input size) of a named dataset without opening it (None for folders)."""
    key = (spec or "cifar10").lower()
    if key not in KNOWN_SHAPES:
        return None
    classes, size = KNOWN_SHAPES[key]
    size = cfg.data.input_size or size
    return classes, (int(size), int(size))


def default_preset(model: str | None) -> str:
    """The preset a run without --preset takes: `cnn` (the CIFAR ResNet schedule) for a
    registered network, `paper` (DARTS's) for the network of a genotype."""
    return "cnn" if model else "paper"


def check_model(name: str) -> None:
    """A one-line UserError unless `name` is a registered network (or tv:<name>)."""
    try:
        model_entry(name)
    except ValueError as e:
        raise UserError(str(e)) from None


def open_data(spec: str, cfg: RetrainConfig, may_download: bool = True):
    """(train, test or None, info) of the configured dataset (one clear line if missing).
    `may_download=False`: never download (the ranks after the first under torchrun)."""
    d = cfg.data
    return open_dataset(spec, d.root, bool(d.download) and may_download, d.input_size)


def open_data_ranked(spec: str, cfg: RetrainConfig, dist: DistInfo):
    """`open_data` on rank 0 first (it alone may download), then on the other ranks, as the
    search does (common.distributed.rank0_first): ranks never race on one folder."""
    return rank0_first(dist, lambda first: open_data(spec, cfg, may_download=first))


def dataset_spec(dataset: str) -> str:
    """The dataset as a run records it: a folder as its absolute path (the run can be resumed
    or evaluated from elsewhere), a named dataset as its name."""
    if Path(dataset).expanduser().is_dir() and dataset.lower() not in KNOWN_SHAPES:
        return str(Path(dataset).expanduser().resolve())
    return dataset


def export_meta(cfg: RetrainConfig, dataset: str) -> dict[str, Any]:
    """What an export records about its run (retrain.evaluate repeats the run's evaluation
    from it); the summary predicts file sizes from the same dict."""
    return {"dataset": dataset, "batch_size": int(cfg.batch_size),
            "test_limit": cfg.data.max_test_images, "epochs": int(cfg.epochs),
            "seed": cfg.seed, "channels_last": bool(cfg.runtime.channels_last)}


def train_steps(cfg: RetrainConfig, opened: tuple) -> int:
    """Optimizer steps of a single-process run on the opened dataset (every batch, the last
    partial one included, every epoch)."""
    train, test, info = opened
    n = len(train_set(train, test, info, cfg.data.max_images, 0))
    return int(cfg.epochs) * math.ceil(n / int(cfg.batch_size))


def data_meta(info: DatasetInfo) -> dict[str, Any]:
    """What an export records about its dataset (normalisation, size, class names)."""
    return {"name": info.name, "num_classes": info.num_classes,
            "input_size": list(info.input_size), "mean": list(info.mean),
            "std": list(info.std), "classes": list(info.classes)}


def info_from_meta(meta: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(meta["name"], int(meta["num_classes"]), tuple(meta["input_size"]),
                       tuple(meta["mean"]), tuple(meta["std"]), list(meta.get("classes", [])))
