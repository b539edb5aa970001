"""The machinery of the typed config: a key's metadata on a dataclass field, and a validator
that builds a config from YAML data and sets one key at a time.

A config is a tree of dataclasses (common.config_schema). Each leaf field is declared with
`key(default, help, ...)`: its type comes from the annotation (int, float, bool, str, a list,
a mapping, each optionally `| None`), its allowed values from `choices`, `lo` / `hi` or a
`check` function, and `resumable` says whether `--resume` may change it. Every bad value is
one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from common.errors import UserError

#: Where every key is described (generated from the schema by common.config_docs).
DOCS = "docs/configuration.md"


def key(default: Any, help: str, *, choices: tuple[str, ...] = (), lo: float | None = None,
        hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
        resumable: bool = False, check: Callable[[str, Any], Any] | None = None,
        overlay: bool = False) -> Any:
    """A config key. `check(key, value)` validates (and may normalise) what the type and
    bounds let through; `overlay`: a mapping of keys of the same section, applied later."""
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open,
            "hi_open": hi_open, "resumable": resumable, "check": check, "overlay": overlay}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, help: str = "") -> Any:
    """A nested section of keys (a dataclass)."""
    return field(default_factory=cls, metadata={"help": help, "section": True})


@dataclass(frozen=True)
class Key:
    """One leaf key of a schema, as the validator and the docs see it."""

    name: str       # dotted
    kind: type      # int, float, bool, str, list or dict
    optional: bool  # null allowed
    default: Any
    meta: dict[str, Any]

    @property
    def help(self) -> str:
        return self.meta["help"]

    @property
    def resumable(self) -> bool:
        return self.meta["resumable"]


def _kind(tp: Any) -> tuple[type, bool]:
    args = typing.get_args(tp)
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)] if args and optional else [tp]
    return typing.get_origin(inner[0]) or inner[0], optional


def _key(f: dataclasses.Field, hint: Any, prefix: str) -> Key:
    kind, optional = _kind(hint)
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return Key(prefix + f.name, kind, optional, default, dict(f.metadata))


def keys(cls: type, prefix: str = "") -> Iterator[Key | str]:
    """The schema's keys in order: a section as its dotted name (str), a leaf as a Key."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("section"):
            yield prefix + f.name
            yield from keys(hints[f.name], prefix + f.name + ".")
        else:
            yield _key(f, hints[f.name], prefix)


def leaf_keys(cls: type) -> dict[str, Key]:
    return {k.name: k for k in keys(cls) if isinstance(k, Key)}


def resumable_keys(cls: type) -> tuple[str, ...]:
    """The keys `--resume` may change (where and how fast a run computes, never what)."""
    return tuple(k.name for k in leaf_keys(cls).values() if k.resumable)


def unknown_key(cls: type, name: str, where: str = "", overlay: str = "") -> UserError:
    """The one-line error of a key the schema lacks, with the closest known keys (those of
    the section for a key inside the overlay key `overlay`)."""
    names = [k if isinstance(k, str) else k.name for k in keys(cls)]
    inner = name[len(overlay) + 1:] if overlay else name
    close = difflib.get_close_matches(inner, names, n=3)
    close = [f"{overlay}.{c}" for c in close] if overlay else close
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see {DOCS} for the keys"
    return UserError(f"unknown config key {name!r}{where}{hint}")


def _number(k: Key, v: Any) -> Any:
    m = k.meta
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    if k.kind is int:
        ok = ok and float(v).is_integer()
    if ok:
        v = k.kind(v)
        lo, hi = m["lo"], m["hi"]
        ok = ((lo is None or (v > lo if m["lo_open"] else v >= lo))
              and (hi is None or (v < hi if m["hi_open"] else v <= hi)))
    if not ok:
        what = "an integer" if k.kind is int else "a number"
        bound = "" if m["lo"] is None else f" {'>' if m['lo_open'] else '>='} {m['lo']:g}"
        bound += "" if m["hi"] is None else f" and {'<' if m['hi_open'] else '<='} {m['hi']:g}"
        none = " (or null)" if k.optional else ""
        raise UserError(f"config {k.name}={v!r} is invalid: it must be {what}{bound}{none}")
    return v


def validate(k: Key, v: Any) -> Any:
    """`v` checked against `k` and normalised (YAML's 1 and 1.0 mean the same number)."""
    if v is None and k.optional:
        return None
    if k.kind is str and isinstance(v, bool):
        v = "on" if v else "off"  # YAML reads a bare off/on as a boolean
    check = k.meta["check"]
    if k.meta["choices"] and v not in k.meta["choices"]:
        raise UserError(f"config {k.name}={v!r} is invalid: choose one of "
                        f"{', '.join(k.meta['choices'])}")
    if k.kind is bool and not isinstance(v, bool):
        raise UserError(f"config {k.name}={v!r} is invalid: use true or false")
    bounded = k.meta["lo"] is not None or k.meta["hi"] is not None
    if k.kind in (int, float) and (check is None or bounded):
        v = _number(k, v)
    elif k.kind is str and not isinstance(v, str):
        raise UserError(f"config {k.name}={v!r} is invalid: give text")
    elif k.kind is dict and not isinstance(v, dict):
        raise UserError(f"config {k.name}={v!r} is invalid: give a mapping of keys (or null)")
    return v if check is None else check(k.name, v)


def build(cls: type, data: Any, where: str = "", prefix: str = "", root: type | None = None) -> Any:
    """An instance of the schema `cls` from YAML `data` (missing keys take their defaults);
    unknown keys and bad values are one-line errors (`where`: e.g. " in FILE")."""
    root = root or cls
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"config {prefix.rstrip('.') or 'section'}{where} must be a mapping of "
                        f"keys, not {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            raise unknown_key(root, prefix + str(name), where)
    values = {}
    for name in data:
        f = fields[name]
        if f.metadata.get("section"):
            values[name] = build(hints[name], data[name], where, prefix + name + ".", root)
            continue
        k = _key(f, hints[name], prefix)
        v = validate(k, data[name])
        if k.meta["overlay"] and v is not None:
            given, v = v, copy.deepcopy(k.default) or {}
            for inner, value in flatten(given):
                _overlay_set(root, k.name, v, inner, value, where)
        values[name] = v
    return cls(**values)


def _overlay_set(root: type, name: str, mapping: dict[str, Any], inner: str, value: Any,
                 where: str = "") -> None:
    """Set `inner` (a key of the section `root`) in the overlay mapping of key `name`."""
    own, _ = find(root, inner)
    if own is None or own.meta["overlay"]:
        raise unknown_key(root, f"{name}.{inner}", where, overlay=name)
    own = dataclasses.replace(own, name=f"{name}.{inner}")  # as the error names it
    *up, leaf = inner.split(".")
    for part in up:
        if not isinstance(mapping.get(part), dict):
            mapping[part] = {}
        mapping = mapping[part]
    mapping[leaf] = validate(own, value)


def find(cls: type, name: str) -> tuple[Key | None, str]:
    """(the leaf Key at dotted `name` or None, `name` relative to an overlay key's mapping
    when it reaches into one, else "")."""
    leaves = leaf_keys(cls)
    if name in leaves:
        return leaves[name], ""
    for k in leaves.values():
        if k.meta["overlay"] and name.startswith(k.name + "."):
            return k, name[len(k.name) + 1:]
    return None, ""


def set_key(cfg: Any, name: str, value: Any) -> None:
    """Set dotted `name` of the config `cfg` to `value`, validated. A key inside an overlay
    (e.g. imagenet.epochs) is validated as the section's own key of that name."""
    cls = type(cfg)
    k, inner = find(cls, name)
    if k is None:
        if name in {s for s in keys(cls) if isinstance(s, str)}:
            raise UserError(f"config key {name!r} is a section; set one of its keys instead")
        raise unknown_key(cls, name)
    *parents, last = k.name.split(".")
    node = cfg
    for part in parents:
        node = getattr(node, part)
    if not inner:
        setattr(node, last, validate(k, value))
        return
    if getattr(node, last) is None:
        setattr(node, last, {})
    _overlay_set(cls, k.name, getattr(node, last), inner, value)


def flatten(mapping: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of each leaf of a nested mapping."""
    for k, v in mapping.items():
        if isinstance(v, dict):
            yield from flatten(v, f"{prefix}{k}.")
        else:
            yield prefix + k, v


def as_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-ready data, in the schema's order."""
    return dataclasses.asdict(cfg)
