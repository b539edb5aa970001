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
import dataclasses
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
from common.fs_settings import DEFAULT_OFFSETS, DEFAULT_RATIO, fs_spec
from common.runtime import seed_everything
from common.schema import flatten, leaf_keys, set_key
from common.shapes import KNOWN_SHAPES
from genotypes import FSSpec, Genotype, GenotypeError, from_dict, load_genotype
from retrain.data import train_set
from retrain.model import NetSpec, build_network, pick_stem
from space.darts.width_fit import scaled_width
from space.layers.channel_prune import check_target
from space.layers.convert import Conversion
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


def check_pruning(cfg: RetrainConfig, spec: NetSpec, network: nn.Module) -> None:
    """Before training (and for --summary): `prune.params` needs an epoch on each side of the
    pruning and a target that pruning can reach (a ValueError, one line)."""
    p = cfg.prune
    if p.params is None:
        return
    if int(cfg.epochs) < 2:
        raise ValueError("prune.params prunes between two epochs: give --epochs 2 or more")
    check_target(network, int(p.params), spec.in_channels, spec.input_size, spec.num_classes,
                 int(p.norm), bool(p.global_ranking))


def dataset_shape(spec: str | None, cfg: RetrainConfig) -> tuple[int, tuple[int, int]] | None:
    """(classes, input size) of a named dataset without opening it (None for folders)."""
    key = (spec or "cifar10").lower()
    if key not in KNOWN_SHAPES:
        return None
    classes, size = KNOWN_SHAPES[key]
    size = cfg.data.input_size or size
    return classes, (int(size), int(size))


def stem_for(cfg: RetrainConfig, input_size: tuple[int, int]) -> str:
    return pick_stem(input_size) if cfg.stem == "auto" else cfg.stem


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


def model_settings(cfg: RetrainConfig) -> dict[str, Any]:
    """The `model.*` settings that are set (a registered network's keyword arguments)."""
    return {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model)
            if f.name != "name" and getattr(cfg.model, f.name) is not None}


def conversion(cfg: RetrainConfig) -> dict[str, Any] | None:
    """The space.layers.convert Conversion (as a dict) of a registered network's convs, from the
    `fs` section: None for `off`; a null ratio is DEFAULT_RATIO unless the paper policy or a
    parameter target sets the layers."""
    f = cfg.fs
    if f.max_ratio is not None and (f.params is None or f.mode not in ("fs", "dfs")):
        raise UserError("fs.max_ratio caps the ratio that fs.params fits (--fs fs or dfs); add "
                        "fs.params or drop fs.max_ratio")
    if f.mode == "off":
        return None
    if f.ratio is not None and f.params is not None:
        raise UserError(f"fs.ratio {f.ratio:g} and fs.params both set the ratio; give one (a "
                        "ratio, or a parameter target the ratio is fitted to)")
    if f.mode == "genotype":
        raise UserError("fs.mode genotype takes a genotype's FS settings; a --model network "
                        "takes --fs off, fs, dfs or fs3d")
    ratio = f.ratio
    if ratio is None and f.policy == "ratio" and f.params is None:
        ratio = DEFAULT_RATIO
    try:
        return Conversion(mode=f.mode, ratio=ratio, policy=f.policy, params=f.params,
                          num_offsets=int(f.num_offsets or DEFAULT_OFFSETS),
                          grad_reduce=f.grad_reduce).to_dict()
    except ValueError as e:
        raise UserError(f"bad FS settings: {e}") from None


RGB = 3  # NetSpec.in_channels: the datasets here are read as RGB


def narrowed_settings(cfg: RetrainConfig, num_classes: int, input_size: tuple[int, int]
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A --model network's settings, with `model.width` narrowed where `fs.params` needs a
    ratio above `fs.max_ratio` (space.models.width_fit); and the note NetSpec.extra keeps of it
    (the width it was narrowed from and the cap), empty otherwise."""
    settings, f = model_settings(cfg), cfg.fs
    if f.params is None or f.max_ratio is None or f.mode not in ("fs", "dfs"):
        return settings, {}
    from space.models.width_fit import narrowed_width, start_width

    name = str(cfg.model.name)
    width = narrowed_width(name, int(f.params), float(f.max_ratio), num_classes,
                           RGB, input_size, settings)
    if width is None:
        return settings, {}
    return ({**settings, "width": width},
            {"width_from": start_width(name, settings), "max_ratio": float(f.max_ratio)})


def make_spec(cfg: RetrainConfig, genotype: Genotype | None, num_classes: int,
              input_size: tuple[int, int]) -> NetSpec:
    """The NetSpec of a registered network (`model.name` set) or of the genotype's."""
    if cfg.prune.params is not None and (not cfg.model.name or cfg.fs.mode != "off"):
        raise UserError("prune.params prunes the channels of a plain --model network; give "
                        "--model NAME --fs off, or drop prune.params")
    if cfg.model.name:
        convs = conversion(cfg)  # its one-line refusals before the narrowing's builds
        settings, note = narrowed_settings(cfg, int(num_classes), input_size)
        return NetSpec(genotype=None, init_channels=0, layers=0, num_classes=int(num_classes),
                       input_size=input_size, model=str(cfg.model.name),
                       settings=settings, conversion=convs, extra=note)
    if genotype is None:
        raise UserError("no network: give --genotype G (the DARTS network) or --model NAME")
    if model_settings(cfg):
        raise UserError(f"{', '.join('model.' + k for k in model_settings(cfg))} applies to a "
                        "--model network, not to the DARTS network of --genotype; drop it")
    if (cfg.fs.mode == "fs3d" or cfg.fs.policy != "ratio" or cfg.fs.params is not None
            or cfg.fs.max_ratio is not None):
        raise UserError("3D FS, fs.policy, fs.params and fs.max_ratio convert a --model network's "
                        "convs (a DARTS budget's cap is the search's budget.max_ratio); the "
                        "DARTS network's 1x1 convs take --fs off, fs, dfs or genotype and --ratio")
    fs = fs_spec(cfg.fs, genotype.fs)
    note = width_note(cfg, genotype, fs)
    # The fitted ratios and width go together: the width applies where the ratios do.
    width = int(cfg.init_channels)
    if "genotype_width" in note:
        width = scaled_width(width, float(note["genotype_width"]))
    return NetSpec(genotype=genotype, init_channels=width, layers=int(cfg.layers),
                   num_classes=int(num_classes), input_size=input_size,
                   auxiliary=bool(cfg.auxiliary), fs=fs, stem=stem_for(cfg, input_size),
                   extra=note)


def width_note(cfg: RetrainConfig, genotype: Genotype, fs: FSSpec | None) -> dict[str, Any]:
    """The genotype's fs.width as the run takes it (NetSpec.extra, which the start-up lines
    show): applied to init_channels where the run takes the genotype's ratios (FS layers, no
    --ratio), else left out because --ratio or --fs off set the network by hand."""
    g = genotype.fs
    if g is None or g.width == 1.0:
        return {}
    applied = fs is not None and cfg.fs.ratio is None
    return {"genotype_width" if applied else "genotype_width_ignored": g.width}


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
