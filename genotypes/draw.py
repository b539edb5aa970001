"""Draw the normal and reduce cells of a genotype with graphviz.

Each cell is written as a `.gv` source and, when graphviz's `dot` program is installed,
rendered to png/pdf/svg. Without `dot` only the sources are written and one line on how to
install graphviz is printed (once per process), so a search can call this every epoch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import graphviz

from genotypes.genotype import FSSpec, Genotype, GenotypeError, cells, op_ratio
from genotypes.primitives import NUM_INPUTS
from genotypes.style import FAMILY_COLORS, family_color, uses_fs

FORMATS = ("png", "pdf", "svg")
INSTALL_HINT = (
    "graphviz's 'dot' program was not found, so only .gv sources were written; install it "
    "with `apt-get install graphviz`, `brew install graphviz` or `conda install -c conda-forge "
    "graphviz` to get images"
)
_FONT = "Helvetica"
_warned = False


def _fs_text(ratio: float) -> str:
    return f"FS×{ratio:g}"


def _html_name(name: str) -> str:
    """c_{k-1} -> c with a subscript k-1 (an HTML-like graphviz label)."""
    base, sub = name[:-1].split("_{")
    return f"<{base}<SUB>{sub.replace('-', '&minus;')}</SUB>>"


def _title(cell: str, fs: FSSpec | None) -> str:
    kind = f"{cell.capitalize()} cell"
    if fs is None:
        return f"<{kind}  ·  plain DARTS (no FS)>"
    dfs = f"DFS, {fs.num_offsets} offsets" if fs.dfs else "fixed offsets"
    if fs.per_op:
        # Each edge carries its own ratio; the global one is that of the cell inputs.
        head = f"FS ratio per op ({dfs})"
        note = (f"FS×r: the op's 1x1 convs are FS layers of ratio r; the cell inputs' "
                f"1x1 convs {_fs_text(fs.ratio)}")
    else:
        head = f"FS ratio {fs.ratio:g} ({dfs})"
        note = f"{_fs_text(fs.ratio)}: the op's 1x1 convs are FS layers"
    return (f'<{kind}  ·  {head}<BR/>'
            f'<FONT POINT-SIZE="11" COLOR="#555555">{note}</FONT>>')


def _legend(dot: graphviz.Digraph, ops: list[str]) -> None:
    """The colour key of the op families this cell uses (no others)."""
    used = {family_color(op) for op in ops}
    rows = "".join(
        f'<TR><TD><FONT COLOR="{c}">&#9473;&#9473;&#9473;</FONT></TD>'
        f'<TD ALIGN="LEFT"><FONT POINT-SIZE="10">{fam}</FONT></TD></TR>'
        for fam, c in FAMILY_COLORS.items() if fam != "none" and c in used
    )
    table = (f'<<TABLE BORDER="1" COLOR="#bbbbbb" CELLBORDER="0" CELLSPACING="0" '
             f'CELLPADDING="2">{rows}</TABLE>>')
    dot.node("legend", table, shape="plaintext", style="", margin="0")


def cell_graph(
    edges: tuple[tuple[str, int], ...] | list[tuple[str, int]],
    concat: tuple[int, ...] | list[int],
    cell: str = "normal",
    fs: FSSpec | None = None,
) -> graphviz.Digraph:
    """A left-to-right graph of one cell: inputs c_{k-2}, c_{k-1}, nodes 0..n-1, output c_{k};
    edges coloured by op family and labelled with the op (and "· FS×r" on FS-bearing ops,
    r the edge's own ratio, genotypes.op_ratio, when `fs` has per-op ratios)."""
    dot = graphviz.Digraph(name=cell, format="png")
    # Room between ranks and rows, so that the labels of edges leaving one node (often the
    # same op) sit apart instead of on top of each other.
    dot.attr("graph", rankdir="LR", label=_title(cell, fs), labelloc="t", fontsize="16",
             fontname=_FONT, nodesep="0.7", ranksep="1.3", pad="0.2", dpi="110")
    dot.attr("node", style="filled,rounded", shape="box", fontname=_FONT, fontsize="13",
             penwidth="1.2", height="0.45")
    dot.attr("edge", fontname=_FONT, fontsize="11", penwidth="1.8", arrowsize="0.7")
    with dot.subgraph(name="inputs") as s:
        s.attr(rank="same")
        for name in ("c_{k-2}", "c_{k-1}"):
            s.node(name, _html_name(name), fillcolor="#d0e4f7", color="#5b86b3")
        s.edge("c_{k-2}", "c_{k-1}", style="invis")  # keeps c_{k-2} above c_{k-1}
    num_nodes = len(edges) // 2
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(num_nodes)]
    for i in range(num_nodes):
        dot.node(str(i), fillcolor="#fff3bf", color="#b08900", shape="circle", width="0.45",
                 fixedsize="true")
    dot.node("c_{k}", _html_name("c_{k}"), fillcolor="#d3f0d3", color="#4a8f4a")
    reduction = cell == "reduce"
    for k, (op, j) in enumerate(edges):
        src = names[j] if 0 <= j < len(names) else f"?{j}"
        label = op
        if fs is not None and uses_fs(op, j, reduction):
            label = f"{op} · {_fs_text(op_ratio(fs, cell, k))}"
        col = family_color(op)
        dot.edge(src, str(k // 2), label=f" {label} ", color=col, fontcolor=col)
    for c in concat:
        dot.edge(str(c - NUM_INPUTS), "c_{k}", color="#9e9e9e", penwidth="1.0", arrowsize="0.5")
    _legend(dot, [op for op, _ in edges])
    return dot


def _warn_once(msg: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        print(f"note: {msg}", file=sys.stderr)


def _render(gv: Path, out: Path, fmt: str) -> bool:
    """Render `gv` to `out` atomically; False (with a one-time hint) when dot is unusable."""
    if shutil.which("dot") is None:
        _warn_once(INSTALL_HINT)
        return False
    tmp = out.with_name(f".{out.stem}.tmp.{fmt}")
    try:
        graphviz.render("dot", fmt, gv, outfile=tmp, quiet=True)
        os.replace(tmp, out)
        return True
    except graphviz.ExecutableNotFound:
        _warn_once(INSTALL_HINT)
    except (subprocess.CalledProcessError, OSError) as e:
        _warn_once(f"graphviz could not render {gv.name} ({e}); kept the .gv source")
    tmp.unlink(missing_ok=True)
    return False


def draw_genotype(
    g: Genotype, out_dir: str | os.PathLike, fmt: str = "png", stem: str = ""
) -> list[Path]:
    """Draw both cells into `out_dir` as `<stem>normal.<fmt>` and `<stem>reduce.<fmt>` (plus
    `.gv` sources) and return the image paths; without `dot` return the `.gv` paths instead.
    `stem` is a plain filename prefix (e.g. "epoch_007_")."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise GenotypeError(f"cannot draw to format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for cell, edges, concat in cells(g):
        dot = cell_graph(edges, concat, cell, g.fs)
        gv = out / f"{stem}{cell}.gv"
        gv.write_text(dot.source, encoding="utf-8")
        img = out / f"{stem}{cell}.{fmt}"
        written.append(img if _render(gv, img, fmt) else gv)
    return written
