"""An op is declared in one place (genotypes.primitives.OP_DECLS): a copy of the packages with
one line added there has the new op in the search space, the genotype checks and random draws,
the derivation caps, the drawing and the parameter count."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from genotypes.primitives import DECLS, OP_DECLS, PRIMITIVES, holds
from genotypes.style import FAMILY_COLORS, family_color, uses_fs

ROOT = Path(__file__).resolve().parents[1]
NEW = '    OpDecl("sep_conv_7x7", "sep_conv", 7, "always", "always", "sep conv", _SEP, "#ff00aa"),\n'

CHECK = textwrap.dedent("""
    import torch
    from genotypes import PRIMITIVES, FSSpec, Genotype, validate
    from genotypes.derive import free_op_count
    from genotypes.draw import cell_graph
    from genotypes.random import OPS
    from genotypes.style import family_color, op_color, uses_fs
    from space.darts.budget import BudgetModel
    from space.darts.ops import SepConv
    from space.darts.supernet import SearchNetwork

    new = "sep_conv_7x7"
    assert PRIMITIVES[-1] == new and new in OPS
    # the search space: an alpha column and a candidate op on every edge
    net = SearchNetwork(C=8, num_classes=10, layers=2, fs=FSSpec(2.0, True, 4))
    assert net.alphas_normal.shape[1] == len(PRIMITIVES) == 9
    op = net.cells[0]._ops[0]._ops[-1]
    assert isinstance(op, SepConv) and op.op[1].kernel_size == (7, 7)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    # the genotype checks, the caps and the drawing
    edges = [(new, j) for _ in range(4) for j in (0, 1)]
    g = validate(Genotype(edges, range(2, 6), edges, range(2, 6), fs=FSSpec(2.0, True, 4)))
    assert free_op_count(g) == {"normal": 0, "reduce": 0}
    assert uses_fs(new, 0, False) and op_color(new) == "#ff00aa"
    assert family_color(new) == family_color("sep_conv_3x3")
    src = cell_graph(g.normal, g.normal_concat, "normal", g.fs).source
    assert new in src and "FS" in src
    # the parameter count: exact (the built network) equals the count from the op tables
    model = BudgetModel(FSSpec(2.0, True, 4), [2.0], C=8, layers=5)
    five = Genotype([("sep_conv_5x5", j) for _, j in edges], range(2, 6), edges, range(2, 6))
    assert model.count(g) == model.exact(g) > model.exact(five)
    print("ok")
""")


def test_declarations_are_consistent():
    assert PRIMITIVES == tuple(d.name for d in OP_DECLS) and PRIMITIVES[0] == "none"
    for d in OP_DECLS:  # one hue per family; what has FS layers has parameters
        assert FAMILY_COLORS[d.family] == d.family_color == family_color(d.name)
        for j, red in ((0, True), (2, True), (0, False)):
            assert uses_fs(d.name, j, red) == holds(d.fs, j, red)
            assert not holds(d.fs, j, red) or holds(d.params, j, red)
    assert uses_fs("skip_connect", 1, True) and not uses_fs("skip_connect", 2, True)
    assert not uses_fs("max_pool_3x3", 0, True) and not uses_fs("unknown_op", 0, False)
    assert DECLS["dil_conv_5x5"].kernel == 5


def test_an_op_added_in_one_place_is_everywhere(tmp_path):
    for pkg in ("genotypes", "space", "common"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    decls = tmp_path / "genotypes" / "primitives.py"
    text = decls.read_text()
    anchor = text.index("\n", text.index('OpDecl("dil_conv_5x5"')) + 1
    decls.write_text(text[:anchor] + NEW + text[anchor:])  # the one edit
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True,
                       env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
