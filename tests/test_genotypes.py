"""Genotype type, validation, derivation, formats (JSON/YAML/repr), loading, zoo and CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genotypes import (
    NUM_EDGES,
    PRIMITIVES,
    ZOO,
    FSSpec,
    Genotype,
    GenotypeError,
    derive,
    describe_fs,
    describe_op_ratios,
    edge_fs,
    from_dict,
    from_json,
    from_repr,
    from_yaml,
    genotype_lines,
    load_genotype,
    op_ratio,
    save_genotype,
    to_darts_repr,
    to_json,
    to_repr,
    to_yaml,
    validate,
)
from genotypes.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
FS = FSSpec(ratio=2.0, dfs=True, num_offsets=4)
# PC_DARTS's cells: normal = sep3 skip sep3 dil3 sep5 sep3 avg dil3, reduce = sep5 max sep5 sep5
# sep3 sep3 sep3 sep3; None where the op has no FS layer (identity skip, pools).
PER_OP = FSSpec(2.0, True, 4, normal_ratios=(1, None, 2, 4, 8, 1.5, None, 2),
                reduce_ratios=[8, None, 4, 4, 2, 2, 1, 1])
ALL = [*ZOO.items(), ("DARTS_V2+fs", dataclasses.replace(ZOO["DARTS_V2"], fs=FS)),
       ("PDARTS+fs1.5", dataclasses.replace(ZOO["PDARTS"], fs=FSSpec(1.5, False, 1))),
       ("PC_DARTS+per-op", dataclasses.replace(ZOO["PC_DARTS"], fs=PER_OP))]
# What this code wrote before per-op ratios existed (PC_DARTS with FS ratio 2): read as it
# was, and written back byte for byte.
OLD_JSON = (
    '{\n  "normal": [["sep_conv_3x3", 1], ["skip_connect", 0], ["sep_conv_3x3", 0], '
    '["dil_conv_3x3", 1], ["sep_conv_5x5", 0], ["sep_conv_3x3", 1], ["avg_pool_3x3", 0], '
    '["dil_conv_3x3", 1]],\n  "normal_concat": [2, 3, 4, 5],\n  "reduce": [["sep_conv_5x5", 1], '
    '["max_pool_3x3", 0], ["sep_conv_5x5", 1], ["sep_conv_5x5", 2], ["sep_conv_3x3", 0], '
    '["sep_conv_3x3", 3], ["sep_conv_3x3", 1], ["sep_conv_3x3", 2]],\n  "reduce_concat": '
    '[2, 3, 4, 5],\n  "fs": {"ratio": 2.0, "dfs": true, "num_offsets": 4}\n}\n'
)
OLD_YAML = (
    "normal:\n- [sep_conv_3x3, 1]\n- [skip_connect, 0]\n- [sep_conv_3x3, 0]\n- [dil_conv_3x3, 1]\n"
    "- [sep_conv_5x5, 0]\n- [sep_conv_3x3, 1]\n- [avg_pool_3x3, 0]\n- [dil_conv_3x3, 1]\n"
    "normal_concat: [2, 3, 4, 5]\nreduce:\n- [sep_conv_5x5, 1]\n- [max_pool_3x3, 0]\n"
    "- [sep_conv_5x5, 1]\n- [sep_conv_5x5, 2]\n- [sep_conv_3x3, 0]\n- [sep_conv_3x3, 3]\n"
    "- [sep_conv_3x3, 1]\n- [sep_conv_3x3, 2]\nreduce_concat: [2, 3, 4, 5]\n"
    "fs: {ratio: 2.0, dfs: true, num_offsets: 4}\n"
)


def _with(g: Genotype, **kw) -> Genotype:
    return dataclasses.replace(g, **kw)


# --- formats ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,g", ALL, ids=[n for n, _ in ALL])
def test_round_trips(name: str, g: Genotype) -> None:
    assert from_json(to_json(g)) == g
    assert from_yaml(to_yaml(g)) == g
    assert from_repr(to_repr(g)) == g
    assert from_repr(to_repr(from_yaml(to_yaml(from_json(to_json(g)))))) == g
    assert (g.fs is None) == ("fs=" not in to_repr(g))


def _darts_namedtuple(line: str):
    """What DARTS's own code makes of a pasted line: its plain namedtuple `Genotype`, the
    keyword arguments read as literals (ast, as DARTS users paste them into genotypes.py)."""
    import ast
    from collections import namedtuple

    DartsGenotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    call = ast.parse(line, mode="eval").body
    assert isinstance(call, ast.Call) and call.func.id == "Genotype" and not call.args
    return DartsGenotype(**{k.arg: ast.literal_eval(k.value) for k in call.keywords})


@pytest.mark.parametrize("name,g", ALL, ids=[n for n, _ in ALL])
def test_printed_line_pastes_into_darts(name: str, g: Genotype) -> None:
    line, fs_line = genotype_lines(g)
    assert line.startswith("genotype: Genotype(") and "FSSpec" not in line + fs_line
    d = _darts_namedtuple(line.removeprefix("genotype: "))  # a TypeError on an unknown field
    assert [tuple(e) for e in d.normal] == list(g.normal) and d.reduce_concat == [2, 3, 4, 5]
    assert from_repr(to_darts_repr(g)) == dataclasses.replace(g, fs=None)
    assert fs_line == f"fs: {describe_fs(g.fs)}"


def test_fs_spec_in_words() -> None:
    assert describe_fs(FS) == "ratio 2, DFS, 4 offsets"
    assert describe_fs(FSSpec(1.5, False, 1)) == "ratio 1.5, FS"
    assert describe_fs(None).startswith("off")
    # The older printed form, with fs=FSSpec(...), still reads back with its spec.
    old = to_repr(_with(ZOO["DARTS_V2"], fs=FS))
    assert old.endswith("fs=FSSpec(ratio=2.0, dfs=True, num_offsets=4))")
    assert from_repr(old).fs == FS


def test_per_op_ratios_in_words() -> None:
    assert describe_op_ratios(PER_OP) == ("per op: normal [1, -, 2, 4, 8, 1.5, -, 2], "
                                          "reduce [8, -, 4, 4, 2, 2, 1, 1]")
    assert describe_fs(PER_OP) == "ratio 2, DFS, 4 offsets; " + describe_op_ratios(PER_OP)
    assert describe_op_ratios(FS) == describe_op_ratios(None) == ""
    g = _with(ZOO["PC_DARTS"], fs=PER_OP)
    line, fs_line = genotype_lines(g)
    assert fs_line == "fs: " + describe_fs(PER_OP) and "ratios" not in line
    assert to_repr(g).endswith("fs=FSSpec(ratio=2.0, dfs=True, num_offsets=4, normal_ratios="
                               "(1.0, None, 2.0, 4.0, 8.0, 1.5, None, 2.0), reduce_ratios="
                               "(8.0, None, 4.0, 4.0, 2.0, 2.0, 1.0, 1.0)))")


def test_per_op_ratios_are_normalised_and_hashable() -> None:
    assert PER_OP.normal_ratios == (1.0, None, 2.0, 4.0, 8.0, 1.5, None, 2.0)
    assert isinstance(PER_OP.reduce_ratios, tuple)
    assert all(r is None or type(r) is float for r in PER_OP.reduce_ratios)
    same = FSSpec(2.0, True, 4, list(PER_OP.normal_ratios), tuple(PER_OP.reduce_ratios))
    assert same == PER_OP and hash(same) == hash(PER_OP) and len({same, PER_OP, FS}) == 2
    assert PER_OP.per_op and not FS.per_op
    # numpy scalars (what a search may hand over) become plain floats, so JSON can write them
    from_numpy = FSSpec(2.0, True, 4, [np.int64(1), None, *np.array([2, 4, 8, 1.5]), None,
                                       np.float32(2.0)], PER_OP.reduce_ratios)
    assert from_numpy == PER_OP and all(type(r) in (float, type(None)) for r in from_numpy.normal_ratios)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PER_OP.normal_ratios = None  # type: ignore[misc]


def test_op_ratio_and_edge_fs() -> None:
    assert op_ratio(PER_OP, "normal", 0) == 1.0 and op_ratio(PER_OP, "normal", 5) == 1.5
    assert op_ratio(PER_OP, "normal", 1) == 2.0  # None: the global ratio
    assert op_ratio(PER_OP, "reduce", 0) == 8.0 and op_ratio(PER_OP, "reduce", 7) == 1.0
    assert op_ratio(FSSpec(3.0), "reduce", 4) == 3.0  # no per-op ratios: the global one
    assert op_ratio(None, "normal", 0) == 1.0  # FS off: nothing compressed
    with pytest.raises(ValueError, match="'normal' or 'reduce'"):
        op_ratio(PER_OP, "reduction", 0)
    assert edge_fs(PER_OP, "normal", 4) == FSSpec(8.0, True, 4)
    assert edge_fs(PER_OP, "normal", 6) == FSSpec(2.0, True, 4)
    assert edge_fs(FSSpec(1.5, False, 1), "reduce", 2) == FSSpec(1.5, False, 1)
    assert edge_fs(None, "normal", 0) is None


def test_old_genotype_files_still_load(tmp_path: Path) -> None:
    g = _with(ZOO["PC_DARTS"], fs=FS)
    assert from_json(OLD_JSON) == g and to_json(g) == OLD_JSON  # byte-identical
    assert from_yaml(OLD_YAML) == g and to_yaml(g) == OLD_YAML
    old_repr = to_darts_repr(g)[:-1] + ", fs=FSSpec(ratio=2.0, dfs=True, num_offsets=4))"
    assert from_repr(old_repr) == g and to_repr(g) == old_repr
    d = json.loads(OLD_JSON)
    assert from_dict({**d, "fs": None}).fs is None
    assert from_dict({k: v for k, v in d.items() if k != "fs"}).fs is None
    for name, text in (("g.json", OLD_JSON), ("g.yaml", OLD_YAML), ("g.txt", old_repr)):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert load_genotype(tmp_path / name) == g


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".txt"])
def test_per_op_ratios_save_and_load(tmp_path: Path, suffix: str) -> None:
    g = _with(ZOO["PC_DARTS"], fs=PER_OP)
    p = save_genotype(g, tmp_path / f"g{suffix}")
    back = load_genotype(p)
    assert back == g and back.fs.normal_ratios == PER_OP.normal_ratios
    text = p.read_text(encoding="utf-8")
    assert "normal_ratios" in text and "reduce_ratios" in text
    if suffix == ".json":
        assert json.loads(text)["fs"]["normal_ratios"] == [1.0, None, 2.0, 4.0, 8.0, 1.5, None, 2.0]


def test_per_op_ratios_in_repr_variants() -> None:
    g = _with(ZOO["PC_DARTS"], fs=PER_OP)
    text = to_repr(g)
    lists = text.replace("normal_ratios=(", "normal_ratios=[").replace(", 2.0), reduce", ", 2.0], reduce")
    assert "normal_ratios=[1.0" in lists and from_repr(lists) == g
    as_dict = to_darts_repr(g)[:-1] + (
        ", fs={'ratio': 2, 'dfs': True, 'num_offsets': 4, "
        "'normal_ratios': [1, None, 2, 4, 8, 1.5, None, 2], "
        "'reduce_ratios': (8, None, 4, 4, 2, 2, 1, 1)})")
    assert from_repr(as_dict) == g
    with pytest.raises(GenotypeError, match="not a literal"):
        from_repr(text.replace("normal_ratios=(1.0", "normal_ratios=(float('1')"))
    with pytest.raises(GenotypeError, match="takes only keywords"):
        from_repr(text.replace("normal_ratios=", "op_ratios="))


def test_json_is_canonical_structure() -> None:
    d = json.loads(to_json(_with(ZOO["DARTS_V2"], fs=FS)))
    assert list(d) == ["normal", "normal_concat", "reduce", "reduce_concat", "fs"]
    assert d["normal"][0] == ["sep_conv_3x3", 0] and d["normal_concat"] == [2, 3, 4, 5]
    assert d["fs"] == {"ratio": 2.0, "dfs": True, "num_offsets": 4}
    assert json.loads(to_json(ZOO["PDARTS"]))["fs"] is None


def test_repr_variants_accepted() -> None:
    g = ZOO["PC_DARTS"]
    text = to_repr(g)
    assert from_repr(text.replace("[2, 3, 4, 5]", "range(2, 6)")) == g
    assert from_repr("genotype = " + text) == g  # a DARTS log line
    assert from_repr(text[len("Genotype"):]) == g  # name missing
    assert from_repr(text[len("Genotype("):-1]) == g  # bare keywords
    assert from_repr(text.replace(", ", ",\n    ").replace("(", "(\n  ", 1)) == g
    fs_dict = text[:-1] + ", fs={'ratio': 2.0, 'dfs': True, 'num_offsets': 4})"
    assert from_repr(fs_dict).fs == FS
    assert from_repr(text[:-1] + ", fs=None)") == g


@pytest.mark.parametrize("payload", [
    "__import__('os').system('touch {marker}')",
    "Genotype(normal=__import__('os').system('touch {marker}'), normal_concat=[2], "
    "reduce=[], reduce_concat=[2])",
    "Genotype(normal=__import__('os').listdir('.'), normal_concat=[2, 3, 4, 5], "
    "reduce=[], reduce_concat=[2, 3, 4, 5])",
    "Genotype(normal=().__class__.__base__.__subclasses__(), normal_concat=[2], reduce=[], "
    "reduce_concat=[2])",
    "Genotype(normal=(lambda: __import__('os').system('touch {marker}'))(), normal_concat=[2], "
    "reduce=[], reduce_concat=[2])",
    "Genotype(normal=f\"{{open('{marker}', 'w')}}\", normal_concat=[2], reduce=[], "
    "reduce_concat=[2])",
    "Genotype(normal=[], normal_concat=range(__import__('os').system('touch {marker}')), "
    "reduce=[], reduce_concat=[2])",
    "os.system('touch {marker}')",
    "Genotype(**{{'normal': []}})",
    "genotypes.Genotype(normal=[], normal_concat=[2], reduce=[], reduce_concat=[2])",
    "Genotype(normal=[('x', 0)] * 8, normal_concat=[2], reduce=[], reduce_concat=[2])",
    "Genotype(normal=[], normal_concat=[2], reduce=[], reduce_concat=[2], fs=FSSpec(open('x')))",
    "Genotype(" + "[" * 300 + "]" * 300 + ")",
    "Genotype(normal=[" + "('sep_conv_3x3', 0), " * 2000 + "])",
])
def test_injection_rejected(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = payload.format(marker=marker)
    with pytest.raises(GenotypeError, match="rejected|over the"):
        from_repr(text)
    with pytest.raises(GenotypeError):
        load_genotype(text)
    assert not marker.exists()
    assert not Path("/tmp/pwned").exists()


# --- validation -------------------------------------------------------------------------------

V2 = ZOO["DARTS_V2"]
BAD = [
    (_with(V2, normal=(("conv_9x9", 0),) + V2.normal[1:]), ["unknown op 'conv_9x9'",
                                                           "sep_conv_3x3", "dil_conv_5x5"]),
    (_with(V2, normal=(("none", 0),) + V2.normal[1:]), ["'none'"]),
    (_with(V2, normal=V2.normal[:2] + (("sep_conv_3x3", 3),) + V2.normal[3:]),
     ["normal edge 2 (node 1) takes input 3", "0..2"]),
    (_with(V2, reduce=V2.reduce[:7] + (("sep_conv_3x3", -1),)), ["reduce edge 7", "0..4"]),
    (_with(V2, normal=V2.normal[:6]), ["normal has 6 edges", "8"]),
    (_with(V2, reduce=V2.reduce + (("skip_connect", 0),)), ["reduce has 9 edges"]),
    (_with(V2, normal_concat=(2, 3, 6)), ["normal_concat [2, 3, 6] is bad", "2..5"]),
    (_with(V2, reduce_concat=(2, 2)), ["reduce_concat [2, 2] is bad"]),
    (_with(V2, normal_concat=()), ["normal_concat [] is bad"]),
    (_with(V2, fs=FSSpec(ratio=0.5)), ["ratio 0.5", ">= 1"]),
    (_with(V2, fs=FSSpec(num_offsets=0)), ["num_offsets 0", ">= 1"]),
    (_with(V2, fs=FSSpec(dfs="yes")), ["dfs 'yes'"]),
    (_with(V2, fs=FSSpec(normal_ratios=(2.0,) * 8)),
     ["fs has normal_ratios but no reduce_ratios", "both", "or neither"]),
    (_with(V2, fs=FSSpec(reduce_ratios=(2.0,) * 8)), ["reduce_ratios but no normal_ratios"]),
    (_with(V2, fs=FSSpec(normal_ratios=(2.0,) * 7, reduce_ratios=(2.0,) * 8)),
     ["normal_ratios has 7 entries", "8 edges", "one ratio (or null) per edge"]),
    (_with(V2, fs=FSSpec(normal_ratios=(2.0,) * 8, reduce_ratios=(2.0,) * 9)),
     ["reduce_ratios has 9 entries"]),
    (_with(V2, fs=FSSpec(normal_ratios=(2.0, 0.5) + (2.0,) * 6, reduce_ratios=(2.0,) * 8)),
     ["normal_ratios entry 1 (normal edge 1) is 0.5", ">= 1.0", "null"]),
    (_with(V2, fs=FSSpec(normal_ratios=(2.0,) * 8, reduce_ratios=(2.0,) * 7 + (math.inf,))),
     ["reduce_ratios entry 7", "inf"]),
    (_with(V2, fs=FSSpec(normal_ratios=(2.0,) * 8, reduce_ratios=(True,) + (2.0,) * 7)),
     ["reduce_ratios entry 0", "True"]),
    (_with(V2, fs=FSSpec(normal_ratios=("4",) + (2.0,) * 7, reduce_ratios=(2.0,) * 8)),
     ["normal_ratios entry 0", "'4'"]),
    (_with(V2, fs=FSSpec(normal_ratios="2,4", reduce_ratios=(2.0,) * 8)),
     ["normal_ratios must be a list of ratios", "str"]),
]


@pytest.mark.parametrize("g,parts", BAD, ids=[p[0] for _, p in BAD])
def test_validation_errors(g: Genotype, parts: list[str]) -> None:
    with pytest.raises(GenotypeError) as e:
        validate(g)
    msg = str(e.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg
    # every loader validates too
    with pytest.raises(GenotypeError):
        from_json(json.dumps({**json.loads(to_json(V2)), **_dict_of(g)}))
    with pytest.raises(GenotypeError):
        from_repr(to_repr(g))


def _dict_of(g: Genotype) -> dict:
    fs = dataclasses.asdict(g.fs) if g.fs else None
    return {"normal": [list(e) for e in g.normal], "normal_concat": list(g.normal_concat),
            "reduce": [list(e) for e in g.reduce], "reduce_concat": list(g.reduce_concat),
            "fs": fs}


@pytest.mark.parametrize("text,part", [
    ("{not json", "JSON is malformed"),
    ("[1, 2]", "must be a mapping"),
    ('{"normal": []}', "missing key(s) normal_concat"),
    ('{"normal": [], "normal_concat": [], "reduce": [], "reduce_concat": [], "x": 1}',
     "unknown key(s) ['x']"),
    ('{"normal": [["sep_conv_3x3"]], "normal_concat": [], "reduce": [], "reduce_concat": []}',
     "normal entry 0"),
    ('{"normal": [], "normal_concat": "2345", "reduce": [], "reduce_concat": []}',
     "normal_concat must be a list"),
])
def test_json_errors(text: str, part: str) -> None:
    with pytest.raises(GenotypeError) as e:
        from_json(text)
    assert part in str(e.value)


def test_yaml_errors() -> None:
    with pytest.raises(GenotypeError, match="YAML is malformed"):
        from_yaml("normal: [a, b\n")
    with pytest.raises(GenotypeError, match="fs has unknown key"):
        from_yaml(to_yaml(V2).replace("fs: null", "fs: {ratio: 2.0, foo: 1}"))


def test_yaml_tags_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(GenotypeError, match="YAML is malformed"):
        from_yaml(f"!!python/object/apply:os.system ['touch {marker}']")
    assert not marker.exists()


# --- save / load ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".txt"])
def test_save_and_load_files(tmp_path: Path, suffix: str) -> None:
    g = _with(ZOO["PC_DARTS"], fs=FS)
    p = save_genotype(g, tmp_path / "sub" / f"g{suffix}")
    assert p.is_file() and [x.name for x in p.parent.iterdir()] == [p.name]  # no temp left
    assert load_genotype(p) == g and load_genotype(str(p)) == g


def test_save_rejects_bad(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError, match=r"\.json, \.yaml"):
        save_genotype(V2, tmp_path / "g.pkl")
    with pytest.raises(GenotypeError, match="unknown op"):
        save_genotype(_with(V2, normal=(("conv", 0),) * 8), tmp_path / "g.json")
    assert not list(tmp_path.iterdir())


def test_load_run_dir_zoo_and_repr(tmp_path: Path) -> None:
    g = _with(V2, fs=FS)
    save_genotype(g, tmp_path / "genotype.json")
    assert load_genotype(tmp_path) == g and load_genotype(str(tmp_path)) == g
    assert load_genotype("darts_v2") is ZOO["DARTS_V2"]
    assert load_genotype(" PC-DARTS ") is ZOO["PC_DARTS"]
    assert load_genotype("DARTS") is ZOO["DARTS_V2"]
    assert load_genotype(to_repr(g)) == g
    assert load_genotype(to_json(g)) == g
    bad_txt = tmp_path / "bad.txt"
    bad_txt.write_text("Genotype(normal=[('conv', 0)])")
    with pytest.raises(GenotypeError, match=r"bad\.txt: genotype is missing"):
        load_genotype(bad_txt)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError) as e:
        load_genotype("DART_V2")
    assert str(e.value) == ("genotype 'DART_V2' is not a file, a zoo name (DARTS_V1, DARTS_V2, "
                            "PC_DARTS, PDARTS) or a Genotype(...) repr")
    with pytest.raises(GenotypeError, match="does not exist"):
        load_genotype(tmp_path / "missing.json")
    with pytest.raises(GenotypeError, match="has no genotype.json"):
        load_genotype(tmp_path)


# --- zoo --------------------------------------------------------------------------------------

def test_zoo() -> None:
    assert list(ZOO) == ["DARTS_V1", "DARTS_V2", "PC_DARTS", "PDARTS"]
    for g in ZOO.values():
        assert validate(g) is g and g.fs is None
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    # spot checks of the published cells (full lists were compared with the source repos)
    assert ZOO["DARTS_V1"].reduce[-1] == ("avg_pool_3x3", 0)
    assert ZOO["DARTS_V2"].normal[-1] == ("dil_conv_3x3", 2)
    assert ZOO["PC_DARTS"].reduce[:2] == (("sep_conv_5x5", 1), ("max_pool_3x3", 0))
    assert ZOO["PDARTS"].normal[-1] == ("dil_conv_5x5", 4)


# --- derivation -------------------------------------------------------------------------------

def _alphas() -> np.ndarray:
    """Logits with a known answer; column 0 is 'none' (huge on some edges, never chosen)."""
    a = np.zeros((NUM_EDGES, len(PRIMITIVES)))
    op = {p: k for k, p in enumerate(PRIMITIVES)}
    # node 0 (edges 0-1): both kept; edge 1 is stronger -> listed first
    a[0, op["sep_conv_3x3"]] = 1.0
    a[1, op["dil_conv_5x5"]] = 2.0
    a[0, op["none"]] = 9.0  # would win if 'none' counted
    # node 1 (edges 2-4 from inputs 0,1,2): 'none' dominates edge 2 but its best real op is weak
    a[2, op["none"]] = 10.0
    a[2, op["max_pool_3x3"]] = 3.0
    a[3, op["skip_connect"]] = 1.5
    a[4, op["sep_conv_5x5"]] = 1.4
    # node 2 (edges 5-8 from 0..3): ties between edges 6 and 8 -> lower index (6) first
    a[6, op["avg_pool_3x3"]] = 2.0
    a[8, op["avg_pool_3x3"]] = 2.0
    # node 3 (edges 9-13 from 0..4): tie between ops on edge 13 -> lower op index
    a[13, op["sep_conv_3x3"]] = 3.0
    a[13, op["dil_conv_3x3"]] = 3.0
    a[11, op["max_pool_3x3"]] = 1.0
    return a


EXPECTED_NORMAL = (("dil_conv_5x5", 1), ("sep_conv_3x3", 0),
                   ("skip_connect", 1), ("sep_conv_5x5", 2),
                   ("avg_pool_3x3", 1), ("avg_pool_3x3", 3),
                   ("sep_conv_3x3", 4), ("max_pool_3x3", 2))


def test_derive_rule() -> None:
    a = _alphas()
    g = derive(a, a, fs=FS)
    assert g.normal == EXPECTED_NORMAL and g.reduce == EXPECTED_NORMAL
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5) and g.fs == FS
    assert all(op != "none" for op, _ in g.normal)
    assert validate(g) is g


def test_derive_input_kinds() -> None:
    a = _alphas()
    soft = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    t = torch.tensor(a, dtype=torch.float32, requires_grad=True)
    expected = derive(a, a)
    assert derive(soft, soft) == expected  # softmaxed weights are used as they are
    assert derive(t, t) == expected
    assert derive(a.tolist(), soft.tolist()) == expected
    assert derive(a, a, concat=[3, 4, 5]).normal_concat == (3, 4, 5)


def test_derive_errors() -> None:
    with pytest.raises(GenotypeError, match=r"shape \(14, 7\)"):
        derive(np.zeros((14, 7)), np.zeros((14, 8)))
    bad = np.zeros((14, 8))
    bad[3, 2] = np.nan
    with pytest.raises(GenotypeError, match="alphas_reduce contains NaN"):
        derive(np.zeros((14, 8)), bad)


# --- CLI and package boundaries ----------------------------------------------------------------

def test_cli_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["show", "pdarts"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("{") and "\ngenotype: Genotype(normal=[('skip_connect', 0)" in out
    # An FS genotype: the DARTS line a DARTS codebase can paste, and the fs: line apart.
    g = dataclasses.replace(load_genotype("DARTS_V2"), fs=FSSpec(4.0, True, 4))
    save_genotype(g, tmp_path / "g.json")
    assert main(["show", str(tmp_path / "g.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("genotype: Genotype(normal=[") and "FSSpec" not in lines[-2]
    assert lines[-1] == "fs: ratio 4, DFS, 4 offsets"
    assert main(["show", "DART_V2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a file, a zoo name" in err


def test_cli_subprocess_and_no_heavy_imports() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "genotypes", "show", "nope"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    code = ("import sys, genotypes, genotypes.draw, genotypes.plot, genotypes.__main__\n"
            "bad = [m for m in ('torch', 'space', 'search', 'retrain', 'common') "
            "if m in sys.modules]\nprint(bad)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
