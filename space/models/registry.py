"""The network registry: every network is built by name, as torchvision's `get_model` and
timm's `register_model` do it. Importing a network's module registers it (space/models/
__init__.py imports them all), so adding a network is one module and one import line.

A builder is a function ``build(num_classes, in_channels, input_size, **args)`` returning an
``nn.Module`` whose forward maps (N, in_channels, H, W) images to (N, num_classes) logits
(the DARTS networks also return their auxiliary logits, as a pair). Its keyword arguments are
the network's settings (width, blocks, ...); `get_model` passes only those the builder
declares and refuses the others in one line. `tv:<name>` builds torchvision's own model of
that name (random weights: nothing is downloaded).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["ModelEntry", "register_model", "get_model", "model_entry", "list_models",
           "TORCHVISION_PREFIX"]

TORCHVISION_PREFIX = "tv:"


@dataclass(frozen=True)
class ModelEntry:
    """A registered network: its builder, a line of description, and the input it is laid out
    for ('cifar': 32x32-like inputs at full resolution; 'imagenet': large inputs with a
    downsampling stem; 'any')."""

    name: str
    build: Callable[..., nn.Module]
    description: str
    inputs: str = "any"
    min_input: int = 1  # the smallest image side the network's downsampling is laid out for
    small_hint: str = ""  # what to use instead on smaller images
    width_step: int = 1  # model.width must be a multiple of this

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings (keyword arguments) the builder takes besides the data's shape."""
        params = list(inspect.signature(self.build).parameters.values())[3:]
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, description: str, inputs: str = "any", min_input: int = 1,
                   small_hint: str = "", width_step: int = 1):
    """Decorator: register `build` under `name` (each name once). `min_input`: images with a
    smaller side are refused in one line (with `small_hint`, what to use instead);
    `width_step`: model.width is a multiple of it (what a narrowing searches over)."""
    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, build, description, inputs, min_input, small_hint,
                                     width_step)
        return build
    return wrap


def list_models() -> list[str]:
    """The registered names, in registration order."""
    return list(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The entry of `name` (a ValueError, one line, for an unknown name)."""
    if name.startswith(TORCHVISION_PREFIX):
        return _torchvision_entry(name[len(TORCHVISION_PREFIX):])
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; `--model list` shows the "
                         f"{len(_REGISTRY)} registered networks ({', '.join(_REGISTRY)}), "
                         "or give tv:<name> for a torchvision model")
    return _REGISTRY[name]


def get_model(name: str, num_classes: int = 10, in_channels: int = 3,
              input_size: tuple[int, int] = (32, 32), **settings: Any) -> nn.Module:
    """Build the network `name` for this data shape; `settings` left as None take the
    network's own defaults."""
    entry = model_entry(name)
    if min(input_size) < entry.min_input:
        raise ValueError(f"{name} ({entry.description.split(':')[0]}) takes images of at least "
                         f"{entry.min_input} px, not {input_size[0]}x{input_size[1]}"
                         + (f"; {entry.small_hint}" if entry.small_hint else ""))
    given = {k: v for k, v in settings.items() if v is not None}
    wrong = sorted(set(given) - set(entry.settings))
    if wrong:
        takes = ", ".join(f"model.{s}" for s in entry.settings) or "no settings"
        raise ValueError(f"{', '.join('model.' + w for w in wrong)} does not apply to {name} "
                         f"(it takes {takes}); drop it")
    return entry.build(int(num_classes), int(in_channels), tuple(input_size), **given)


def _torchvision_entry(tv_name: str) -> ModelEntry:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if tv_name not in known:
        raise ValueError(f"unknown torchvision model {tv_name!r}; choose one of "
                         f"torchvision.models.list_models() (e.g. resnet18, mobilenet_v2)")

    def build(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> nn.Module:
        if in_channels != 3:
            raise ValueError(f"tv:{tv_name} takes 3-channel images, not {in_channels}")
        # weights=None: random initial weights, nothing downloaded.
        return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes)

    return ModelEntry(TORCHVISION_PREFIX + tv_name, build,
                      f"torchvision's {tv_name} (ImageNet layout)", "imagenet")
