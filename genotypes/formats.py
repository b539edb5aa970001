"""Genotype file formats: JSON (canonical), YAML and the DARTS repr, plus save/load.

The repr parser never evaluates its input: it walks the syntax tree and accepts only
`Genotype(key=<literal>, ...)` where a concat may also be `range(int, int)` and fs may be
`FSSpec(...)` with literal keyword arguments (the per-op ratio lists as tuple or list
literals of numbers and None), a dict literal or None.

(About 310 lines: the three formats share the canonical dict form and `save`/`load` pick
among them by suffix, so they stay in one module.)
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from genotypes.genotype import (
    CELLS,
    FIELDS,
    FS_FIELDS,
    OP_RATIO_FIELDS,
    FSSpec,
    Genotype,
    GenotypeError,
    from_dict,
    fs_to_dict,
    to_dict,
    validate,
)
from genotypes.zoo import ZOO, lookup

#: Longest repr/JSON/YAML text accepted (a genotype is ~600 characters).
MAX_TEXT = 20_000
GENOTYPE_FILE = "genotype.json"


def _check_size(s: str, what: str) -> str:
    if not isinstance(s, str):
        raise GenotypeError(f"{what} input must be text, got {type(s).__name__}")
    if len(s) > MAX_TEXT:
        raise GenotypeError(f"{what} text is {len(s)} characters, over the {MAX_TEXT} limit; "
                            "pass a single genotype")
    return s


# --- JSON -----------------------------------------------------------------------------------

def to_json(g: Genotype) -> str:
    """Canonical JSON: one top-level key per line, each cell on one line."""
    d = to_dict(g)
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(d[k])}" for k in FIELDS if k in d)
    return "{\n" + body + "\n}\n"


def from_json(s: str) -> Genotype:
    """Parse and validate canonical JSON."""
    try:
        d = json.loads(_check_size(s, "JSON"))
    except json.JSONDecodeError as e:
        raise GenotypeError(f"genotype JSON is malformed ({e}); write it with to_json") from None
    return from_dict(d)


# --- YAML -----------------------------------------------------------------------------------

def to_yaml(g: Genotype) -> str:
    """YAML with the JSON structure; edges as inline [op, input] pairs."""
    return yaml.safe_dump(to_dict(g), sort_keys=False, default_flow_style=None, width=100)


def from_yaml(s: str) -> Genotype:
    """Parse (yaml.safe_load, no object tags) and validate."""
    try:
        d = yaml.safe_load(_check_size(s, "YAML"))
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise GenotypeError(f"genotype YAML is malformed ({msg}); write it with to_yaml") from None
    return from_dict(d)


# --- DARTS repr -----------------------------------------------------------------------------

def _concat_repr(c: tuple[int, ...]) -> str:
    return repr(list(c))


def _darts_parts(g: Genotype) -> list[str]:
    return [
        f"normal={[tuple(e) for e in g.normal]!r}",
        f"normal_concat={_concat_repr(g.normal_concat)}",
        f"reduce={[tuple(e) for e in g.reduce]!r}",
        f"reduce_concat={_concat_repr(g.reduce_concat)}",
    ]


def to_darts_repr(g: Genotype) -> str:
    """The cells alone as DARTS prints them, `Genotype(normal=[...], normal_concat=[...],
    reduce=[...], reduce_concat=[...])`: accepted by DARTS's own namedtuple `Genotype` (its
    code pastes it); the FS spec, which DARTS has no field for, is left out."""
    return f"Genotype({', '.join(_darts_parts(g))})"


def describe_op_ratios(fs: FSSpec | None) -> str:
    """The per-op ratios in words, `per op: normal [2, 4, -, ...], reduce [...]` (one entry
    per edge in edge order, `-` for an op without FS layers, which takes the global ratio
    if it has any), or "" when `fs` has none."""
    if fs is None or not fs.per_op:
        return ""
    parts = []
    for cell, name in zip(CELLS, OP_RATIO_FIELDS, strict=True):
        ratios = getattr(fs, name) or ()
        parts.append(f"{cell} [{', '.join('-' if r is None else f'{r:g}' for r in ratios)}]")
    return "per op: " + ", ".join(parts)


def describe_fs(fs: FSSpec | None) -> str:
    """The FS spec in words, e.g. `ratio 2, DFS, 4 offsets`, and with per-op ratios
    `ratio 2, DFS, 4 offsets; per op: normal [2, 4, -, ...], reduce [...]` (the global ratio
    is then that of the cell inputs' 1x1 convs)."""
    if fs is None:
        return "off (plain DARTS 1x1 convolutions)"
    text = f"ratio {fs.ratio:g}, {'DFS' if fs.dfs else 'FS'}"
    text += f", {fs.num_offsets} offsets" if fs.dfs else ""
    text += f", width x{fs.width:.4g} (a budget fit narrowed it)" if fs.width != 1.0 else ""
    per_op = describe_op_ratios(fs)
    return f"{text}; {per_op}" if per_op else text


def genotype_lines(g: Genotype) -> list[str]:
    """What search and retrain print for a genotype: the DARTS line (pasteable into DARTS
    code) and, on its own line, the FS spec."""
    return [f"genotype: {to_darts_repr(g)}", f"fs: {describe_fs(g.fs)}"]


def to_repr(g: Genotype) -> str:
    """The DARTS `Genotype(normal=[...], normal_concat=[...], ...)` line; `fs=FSSpec(...)` is
    appended only when fs is set, so plain-DARTS genotypes print exactly as DARTS does. This
    is the round-trip form (.txt files, `genotypes show`); to paste into DARTS code, use
    `to_darts_repr`."""
    parts = _darts_parts(g)
    f = fs_to_dict(g.fs)
    if f is not None:
        # Keyword order is FS_FIELDS's; the per-op lists only when set (as in the JSON).
        args = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v!r}" for k, v in f.items())
        parts.append(f"fs=FSSpec({args})")
    return f"Genotype({', '.join(parts)})"


def _reject(what: str) -> GenotypeError:
    return GenotypeError(f"genotype repr rejected: {what}; only Genotype(normal=[...], "
                         "normal_concat=[...] or range(a, b), reduce=..., reduce_concat=...) "
                         "with literal values is accepted")


def _literal(node: ast.AST, key: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise _reject(f"{key}= is not a literal ({type(node).__name__})") from None


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    return None


def _range(node: ast.Call, key: str) -> range:
    args = [_literal(a, key) for a in node.args]
    if node.keywords or not 1 <= len(args) <= 3 or not all(type(a) is int for a in args):
        raise _reject(f"{key}=range(...) must have 1 to 3 integer arguments")
    r = range(*args)
    if len(r) > 64:
        raise _reject(f"{key}=range(...) is too long")
    return r


def _value(node: ast.AST, key: str) -> Any:
    name = _call_name(node)
    if key.endswith("_concat") and name == "range":
        return _range(node, key)  # type: ignore[arg-type]
    if key == "fs" and name == "FSSpec":
        assert isinstance(node, ast.Call)
        if node.args or any(k.arg not in FS_FIELDS for k in node.keywords):
            raise _reject(f"fs=FSSpec(...) takes only keywords {', '.join(FS_FIELDS)}")
        return {k.arg: _literal(k.value, f"fs.{k.arg}") for k in node.keywords}
    return _literal(node, key)


def _normalise_text(s: str) -> str:
    s = s.strip()
    at = s.find("Genotype(")
    if at > 0 and s[at - 1] not in ".":  # drop a log prefix such as "genotype = "
        s = s[at:]
    elif at < 0:
        if s.startswith("("):
            s = "Genotype" + s
        elif s.startswith("normal"):
            s = f"Genotype({s})"
    return s


def from_repr(s: str) -> Genotype:
    """Parse the DARTS repr without evaluating it (see the module docstring) and validate."""
    text = _normalise_text(_check_size(s, "repr"))
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        detail = getattr(e, "msg", None) or type(e).__name__
        raise _reject(f"not valid syntax ({detail})") from None
    call = tree.body
    if _call_name(call) != "Genotype":
        raise _reject(f"expected a Genotype(...) call, found {type(call).__name__}")
    assert isinstance(call, ast.Call)
    if call.args:
        raise _reject("positional arguments are not allowed, use keywords")
    d: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None or kw.arg not in FIELDS[:5]:  # a repr carries no source
            raise _reject(f"unknown keyword {kw.arg or '**'}")
        if kw.arg in d:
            raise _reject(f"keyword {kw.arg} given twice")
        d[kw.arg] = _value(kw.value, kw.arg)
    return from_dict(d)


# --- files and names ------------------------------------------------------------------------

_WRITERS = {".json": to_json, ".yaml": to_yaml, ".yml": to_yaml, ".txt": lambda g: to_repr(g) + "\n"}
_READERS = {".json": from_json, ".yaml": from_yaml, ".yml": from_yaml, ".txt": from_repr}


def save_genotype(g: Genotype, path: str | os.PathLike) -> Path:
    """Validate `g` and write it atomically (temp file + os.replace) in the format of the
    suffix: .json, .yaml/.yml, or .txt (the repr). Returns the path written."""
    p = Path(path)
    writer = _WRITERS.get(p.suffix.lower())
    if writer is None:
        raise GenotypeError(f"cannot save genotype to {p}: use a .json, .yaml, .yml or .txt name")
    text = writer(validate(g))
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _read_file(p: Path) -> Genotype:
    try:
        size = p.stat().st_size
        if size > MAX_TEXT:
            raise GenotypeError(f"{p}: {size} bytes is too large for a genotype file")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GenotypeError(f"cannot read genotype file {p}: {e}") from None
    reader = _READERS.get(p.suffix.lower())
    if reader is None:  # unknown suffix: sniff
        reader = from_json if text.lstrip().startswith("{") else from_repr
    try:
        return reader(text)
    except GenotypeError as e:
        raise GenotypeError(f"{p}: {e}") from None


def _as_path(text: str) -> Path | None:
    """`text` as an existing path, or None (also for text that cannot be a path)."""
    if len(text) > 4096 or "\n" in text:
        return None
    try:
        p = Path(text).expanduser()
        return p if p.exists() else None
    except (OSError, ValueError):
        return None


def load_genotype(spec: str | os.PathLike) -> Genotype:
    """A validated genotype from a file (.json/.yaml/.yml, or .txt holding a repr), a search run
    directory (its genotype.json), a zoo name (case-insensitive), a repr or JSON text."""
    if isinstance(spec, Genotype):
        return validate(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise GenotypeError(f"genotype spec must be a path or a string, got {type(spec).__name__}")
    text = os.fspath(spec)
    p = _as_path(text)
    if p is not None and p.is_dir():
        if (p / GENOTYPE_FILE).is_file():
            return _read_file(p / GENOTYPE_FILE)
        raise GenotypeError(f"directory {p} has no {GENOTYPE_FILE}; point to a search run "
                            "directory or to a genotype file")
    if p is not None:
        return _read_file(p)
    stripped = text.strip()
    if isinstance(spec, str) and stripped.startswith("{"):
        return from_json(text)
    if isinstance(spec, str) and ("(" in stripped or stripped.startswith("normal")):
        return from_repr(text)
    if Path(stripped).suffix.lower() in _READERS:
        raise GenotypeError(f"genotype file {stripped} does not exist")
    found = lookup(text)
    if found is not None:
        return found
    raise GenotypeError(
        f"genotype {text!r} is not a file, a zoo name ({', '.join(ZOO)}) or a Genotype(...) repr"
    )
