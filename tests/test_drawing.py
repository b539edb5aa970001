"""Cell drawings (graphviz, with the .gv fallback) and the plots of a search run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import graphviz
import numpy as np
import pytest

import genotypes.draw as draw
from genotypes import ZOO, FSSpec, to_dict
from genotypes.__main__ import main
from genotypes.draw import draw_genotype
from genotypes.plot import RunLogError, plot_run, read_log

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
G_FS = dataclasses.replace(ZOO["DARTS_V2"], fs=FSSpec(ratio=2.0))


def _need_dot() -> None:
    if shutil.which("dot") is not None:
        return
    if os.environ.get("DFS_NO_DOT_OK"):  # set by .ci/run when it could not install graphviz
        pytest.skip("graphviz's `dot` is missing and could not be installed; the .gv fallback "
                    "is still tested")
    pytest.fail("graphviz's `dot` program is missing, so real rendering cannot be tested: "
                "install it (apt-get install graphviz / brew install graphviz / conda "
                "install -c conda-forge graphviz); CI installs it")


@pytest.fixture(autouse=True)
def _fresh_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(draw, "_warned", False)


def test_draw_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need_dot()
    paths = draw_genotype(G_FS, tmp_path / "cells")
    assert [p.name for p in paths] == ["normal.png", "reduce.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000, (p, len(data))
        assert p.with_suffix(".gv").is_file()
    src = (tmp_path / "cells" / "reduce.gv").read_text(encoding="utf-8")
    assert "max_pool_3x3 " in src and "max_pool_3x3 · FS" not in src  # pools have no 1x1 conv
    assert "skip_connect · FS×2" not in src  # V2's reduce skips are node-to-node (identity)
    normal = (tmp_path / "cells" / "normal.gv").read_text(encoding="utf-8")
    assert "sep_conv_3x3 · FS×2" in normal and "dil_conv_3x3 · FS×2" in normal
    assert "rankdir=LR" in normal
    assert capsys.readouterr() == ("", "")  # quiet: the search calls this every epoch
    assert not [p for p in (tmp_path / "cells").iterdir() if p.name.startswith(".")]


# PDARTS: normal = skip0 dil3 skip0 sep3 sep3 sep3 sep3 dil5, reduce = avg0 sep5 sep3 dil5
# max0 dil3 dil3 dil5. None where the op has no FS layer (or, on sep3, the global ratio).
PER_OP = FSSpec(2.0, True, 4, normal_ratios=(None, 8, None, None, 1, 2, 1.5, 4),
                reduce_ratios=(None, 8, 4, 2, None, 1, 2, 4))


def _edge_labels(source: str) -> list[str]:
    """The op edges' labels of a cell's .gv source, in edge order."""
    return re.findall(r'-> \d+ \[label=" (.*?) "', source)


def test_per_op_ratios_on_the_edges(tmp_path: Path) -> None:
    """Each FS-bearing edge shows its own ratio; the title says the ratio is per op and
    names the cell inputs' (global) one. No rendering needed: the .gv source is the graph."""
    g = dataclasses.replace(ZOO["PDARTS"], fs=PER_OP)
    normal = draw.cell_graph(g.normal, g.normal_concat, "normal", g.fs).source
    reduce = draw.cell_graph(g.reduce, g.reduce_concat, "reduce", g.fs).source
    assert _edge_labels(normal) == [
        "skip_connect", "dil_conv_3x3 · FS×8", "skip_connect", "sep_conv_3x3 · FS×2",
        "sep_conv_3x3 · FS×1", "sep_conv_3x3 · FS×2", "sep_conv_3x3 · FS×1.5",
        "dil_conv_5x5 · FS×4"]
    assert _edge_labels(reduce) == [
        "avg_pool_3x3", "sep_conv_5x5 · FS×8", "sep_conv_3x3 · FS×4", "dil_conv_5x5 · FS×2",
        "max_pool_3x3", "dil_conv_3x3 · FS×1", "dil_conv_3x3 · FS×2", "dil_conv_5x5 · FS×4"]
    for src in (normal, reduce):
        assert "FS ratio per op (DFS, 4 offsets)" in src
        assert "the cell inputs' 1x1 convs FS×2" in src
    # A reduce skip from a cell input is a FactorizedReduce: FS layers, so its ratio shows.
    fr = (("skip_connect", 1),) + g.reduce[1:]
    src = draw.cell_graph(fr, g.reduce_concat, "reduce",
                          dataclasses.replace(PER_OP, reduce_ratios=(4,) + (None,) * 7)).source
    assert _edge_labels(src)[:2] == ["skip_connect · FS×4", "sep_conv_5x5 · FS×2"]
    # Without per-op ratios the drawing is as before: the global ratio on every FS edge.
    plain = draw.cell_graph(g.normal, g.normal_concat, "normal", FSSpec(3.0)).source
    assert "FS ratio 3 (DFS, 4 offsets)" in plain and "per op" not in plain
    assert _edge_labels(plain)[1] == "dil_conv_3x3 · FS×3"
    paths = draw_genotype(g, tmp_path)  # images, or the .gv fallback without dot
    assert [p.stem for p in paths] == ["normal", "reduce"]


def test_draw_formats_stem_and_labels(tmp_path: Path) -> None:
    _need_dot()
    paths = draw_genotype(ZOO["PDARTS"], tmp_path, fmt="svg", stem="epoch_003_")
    assert [p.name for p in paths] == ["epoch_003_normal.svg", "epoch_003_reduce.svg"]
    svg = paths[0].read_text(encoding="utf-8")
    assert "<svg" in svg and "dil_conv_5x5" in svg and "FS×" not in svg
    pdf = draw_genotype(ZOO["PDARTS"], tmp_path, fmt="pdf")[0]
    assert pdf.read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="use one of png, pdf, svg"):
        draw_genotype(ZOO["PDARTS"], tmp_path, fmt="jpg")


def test_draw_fallback_without_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    paths = draw_genotype(G_FS, tmp_path / "a")
    assert [p.name for p in paths] == ["normal.gv", "reduce.gv"]
    assert all(p.is_file() and "digraph" in p.read_text(encoding="utf-8") for p in paths)
    assert not list((tmp_path / "a").glob("*.png"))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install graphviz" in err and "brew" in err
    draw_genotype(G_FS, tmp_path / "b")  # later epochs stay quiet
    assert capsys.readouterr().err == ""


def test_draw_fallback_when_render_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(draw.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(draw.graphviz, "render", missing)
    paths = draw_genotype(ZOO["PC_DARTS"], tmp_path)
    assert [p.suffix for p in paths] == [".gv", ".gv"]
    assert "install" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["normal.gv", "reduce.gv"]


def test_cli_draw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need_dot()
    assert main(["draw", "darts_v1", "--out", str(tmp_path), "--format", "png"]) == 0
    assert (tmp_path / "normal.png").stat().st_size > 5_000
    assert main(["draw", "nope", "--out", str(tmp_path)]) == 2
    assert "error: genotype 'nope'" in capsys.readouterr().err


# --- run plots --------------------------------------------------------------------------------

def _write_log(run: Path, epochs: int = 3, entropy: bool = True) -> None:
    rng = np.random.default_rng(0)
    run.mkdir(parents=True, exist_ok=True)
    logits = rng.normal(size=(2, 14, 8))
    with open(run / "log.jsonl", "w", encoding="utf-8") as f:
        for e in range(epochs):
            logits += rng.normal(size=logits.shape) * 0.5
            soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            rec = {"epoch": e, "train_loss": 2.0 - 0.3 * e, "train_acc": 30.0 + 10 * e,
                   "valid_loss": 2.1 - 0.2 * e, "valid_acc": 28.0 + 8 * e, "lr": 0.025 / (e + 1),
                   "alphas_normal": soft[0].tolist(), "alphas_reduce": soft[1].tolist(),
                   "offset_entropy": 1.3 - 0.2 * e if entropy else None,
                   "genotype": to_dict(ZOO["DARTS_V2"]), "seconds": 12.5, "images_per_s": 400.0}
            f.write(json.dumps(rec) + "\n")


def test_plot_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_log(run)
    paths = plot_run(run)
    names = sorted(p.name for p in paths)
    assert names == ["alphas_normal.png", "alphas_reduce.png", "curves.png", "learning.png",
                     "offset_entropy.png"]
    for p in paths:
        assert p.parent == run / "plots"
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, (p.name, len(data))


def test_plot_cli_and_log_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(tmp_path / "none")]) == 2
    assert "log.jsonl not found" in capsys.readouterr().err
    (tmp_path / "log.jsonl").write_text("\n")
    with pytest.raises(RunLogError, match="is empty"):
        plot_run(tmp_path)
    (tmp_path / "log.jsonl").write_text('{"epoch": 0}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(RunLogError, match="line 2 is not valid JSON"):
        read_log(tmp_path)


def test_read_log_tolerates_partial_last_line_and_null_entropy(tmp_path: Path) -> None:
    from genotypes.plot import _plot_entropy

    _write_log(tmp_path, epochs=2, entropy=False)
    with open(tmp_path / "log.jsonl", "a", encoding="utf-8") as f:
        f.write('{"epoch": 2, "train_lo')  # a run still writing
    records = read_log(tmp_path)
    assert [r["epoch"] for r in records] == [0, 1]
    assert _plot_entropy(records, tmp_path) is None  # no DFS offsets: skipped


def test_legend_lists_only_the_families_the_cell_uses():
    from genotypes import load_genotype
    from genotypes.draw import cell_graph

    g = load_genotype("DARTS_V2")
    reduce = cell_graph(g.reduce, g.reduce_concat, "reduce").source  # pools and skips only
    legend = reduce[reduce.index("legend"):]
    assert ">pool<" in legend and ">skip<" in legend
    assert ">sep conv<" not in legend and ">dil conv<" not in legend
    normal = cell_graph(g.normal, g.normal_concat, "normal").source
    assert ">sep conv<" in normal[normal.index("legend"):]
