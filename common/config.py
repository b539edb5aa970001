"""YAML presets with separate `search` and `retrain` sections, and command-line overrides.

A preset is a name (a YAML file packaged in common/presets/, see common.preset_files) or any
YAML file path, validated against the schema (common.config_schema). Overrides are
`key.sub=value` strings; values are parsed as YAML scalars/lists and typed by the schema, and
unknown keys are rejected so that a typo never silently does nothing.
"""

from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from common import schema
from common.checks import check_fs_ratio as check_fs_ratio  # study.fields' and the tests'
from common.config_schema import SECTIONS
from common.errors import UserError, listing
from common.files import atomic_write_text
from common.preset_files import available_presets, packaged_preset
from common.schema import Key, as_dict

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: What a --help line says instead of an empty list (an install without its package data).
NO_PRESETS = "none installed: reinstall dfsnet-darts"


def preset_choices() -> str:
    """The preset names for a message or a --help line; never an empty list."""
    return listing(available_presets(), NO_PRESETS)


def _read_yaml(path: Path | Traversable) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML ({str(e).splitlines()[0]}); fix it") from None
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a YAML mapping with 'search'/'retrain' sections")
    return data


def _preset_path(preset: str) -> Path | Traversable:
    path = Path(preset)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    packaged = packaged_preset(preset)
    if packaged is None:
        names = available_presets()
        what = (f"choose one of {', '.join(names)} or give" if names else
                "this installation has no named presets (its package data is missing: reinstall "
                "dfsnet-darts), so give")
        raise UserError(f"unknown preset {preset!r}; {what} a path to a YAML file")
    return packaged


def load_preset(preset: str, section: str) -> dict[str, Any]:
    """The `section` of a preset given by name (common/presets/<name>.yaml) or by a YAML file path.

    A preset may name a `base` preset whose section it updates key by key, or whose section
    it takes whole when it has none of its own."""
    path = _preset_path(preset)
    data = _read_yaml(path)
    base = data.get("base")
    if section not in data and not base:
        raise UserError(f"config {path} has no {section!r} section; add one")
    cfg = data.get(section) or {}
    if base:
        merged = load_preset(base, section)
        deep_update(merged, cfg)
        cfg = merged
    return cfg


def preset_with_section(preset: str, section: str, _depth: int = 0) -> str | None:
    """The preset whose `section` applies for `preset`: itself when it has one; for a run's
    config.yaml (which records the preset it ran with) that preset; else its `base`. None
    when there is none (e.g. a search-only YAML file)."""
    try:
        data = _read_yaml(_preset_path(preset))
    except UserError:
        return None
    if section in data:
        return preset
    for key in ("preset", "base"):
        if isinstance(data.get(key), str) and _depth < 8:
            found = preset_with_section(data[key], section, _depth + 1)
            if found:
                return found
    return None


def deep_update(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Update `dst` in place with `src`, recursing into nested mappings."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_update(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_value(raw: str, key: Key | None) -> Any:
    """The value of `--set KEY=RAW` as YAML reads it, typed by the schema's `key`: 3e-3 is a
    number (YAML 1.1 reads it as text), and a text key keeps the text as typed (YAML reads
    off/on/no as booleans)."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value) if _FLOAT.fullmatch(value.strip()) else value
    if key is not None and key.kind is str and value is not None and not isinstance(value, str):
        value = raw.strip()
    return value


def apply_override(cfg: Any, item: str) -> None:
    """Apply one `a.b.c=value` override to a config in place; unknown keys are an error."""
    if "=" not in item:
        raise UserError(f"override {item!r} must look like key=value (e.g. search.epochs=10)")
    name, raw = (s.strip() for s in item.split("=", 1))
    k, inner = schema.find(type(cfg), name)
    if inner:  # a key inside an overlay is typed as the section's own key
        k, _ = schema.find(type(cfg), inner)
    schema.set_key(cfg, name, parse_value(raw, k))


def build_section(section: str, data: Any, where: str = "") -> Any:
    """The typed config of `section` ("search" or "retrain") from YAML data."""
    return schema.build(SECTIONS[section], data, where)


def resolve_config(section: str, preset: str, overrides: list[str] | None = None) -> Any:
    """The preset's section, validated against the schema, with the overrides applied in
    order."""
    cfg = build_section(section, load_preset(preset, section), f" in preset {preset}")
    for item in overrides or []:
        apply_override(cfg, item)
    return cfg


def save_config(cfg: dict[str, Any], path: Path) -> None:
    """Write the resolved config (atomically) so a run records exactly what it did."""
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False))


#: The preset a run's config.yaml names as its `base`.
RUN_BASE = "paper"


def save_run_config(path: Path, section: str, cfg: Any, record: dict[str, Any]) -> None:
    """A run's config.yaml: `base: paper`, what the run ran on (`record`: dataset, preset,
    command, ...) and the resolved `section`. It is itself a preset (`--preset RUN/config.yaml`
    repeats the run, `--resume` reads it as one); keys a later version adds take their
    defaults (the schema's, which its base repeats), so that old runs stay resumable."""
    save_config({"base": RUN_BASE, **record, section: as_dict(cfg)}, path)


def load_config_file(path: Path) -> dict[str, Any]:
    return _read_yaml(path)
