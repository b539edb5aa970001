"""The NetSpec a retrain config describes: a registered network (`model.*`, its convs'
conversion from the `fs` section, the width `fs.max_ratio` narrows it to, a pruning target's
checks) or the DARTS network of a genotype (its FS settings and the width its budget fit
scaled)."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from common.config_schema import RetrainConfig
from common.errors import UserError
from common.fs_settings import DEFAULT_OFFSETS, DEFAULT_RATIO, fs_spec
from genotypes import FSSpec, Genotype
from retrain.model import NetSpec, pick_stem
from space.darts.width_fit import scaled_width
from space.layers.channel_prune import check_target
from space.layers.convert import Conversion


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


def stem_for(cfg: RetrainConfig, input_size: tuple[int, int]) -> str:
    return pick_stem(input_size) if cfg.stem == "auto" else cfg.stem


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
