"""Plots of a search run from RUN_DIR/log.jsonl (matplotlib, Agg canvas, no pyplot state).

Writes into RUN_DIR/plots: alphas_normal.png and alphas_reduce.png (softmax weight of each op
on each edge over epochs, one panel per edge, laid out node by node), curves.png (train/valid
loss and accuracy, and the learning rate), learning.png (whether the architecture learns: the
entropy of each edge's op weights against uniform, ln 8, per cell; the DFS offset entropy
against ln M; how many of the 16 kept edges the derivation changed since the epoch before),
offset_entropy.png (DFS runs only) and size.png (budget or searched-ratio runs: E[P] and the
derived genotype's exact count per epoch against the budget, and the parameter-free ops of the
derived cells).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from genotypes.derive import derive, edge_entropy
from genotypes.primitives import NUM_EDGES, NUM_INPUTS, NUM_NODES, PRIMITIVES
from genotypes.style import op_color

LOG_FILE = "log.jsonl"
PLOT_DIR = "plots"


class RunLogError(ValueError):
    """The run's log.jsonl is missing, empty or unreadable (one-line message)."""


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The epoch records of RUN_DIR/log.jsonl, in file order. A truncated last line (a run
    still writing) is ignored; any other malformed line is an error."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise RunLogError(f"{path} not found; pass a search run directory that has a {LOG_FILE}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RunLogError(f"cannot read {path}: {e}") from None
    numbered = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip()]
    records = []
    for pos, (n, line) in enumerate(numbered):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if pos == len(numbered) - 1 and records:
                break
            raise RunLogError(f"{path} line {n} is not valid JSON; fix or remove it") from None
        if not isinstance(rec, dict):
            raise RunLogError(f"{path} line {n} is not a JSON object")
        records.append(rec)
    if not records:
        raise RunLogError(f"{path} is empty; the search has not finished an epoch yet")
    return records


def _series(records: list[dict[str, Any]], key: str) -> list[float]:
    out = []
    for r in records:
        v = r.get(key)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        out.append(float(v) if ok else math.nan)
    return out


def _epochs(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["epoch"]) if isinstance(r.get("epoch"), int) else i
            for i, r in enumerate(records)]


def _int_epochs(ax: Any) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def _figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def _alpha_matrix(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[Any]] | None:
    xs, mats = [], []
    for x, r in zip(_epochs(records), records, strict=True):
        m = r.get(key)
        if isinstance(m, list) and len(m) == NUM_EDGES and all(
            isinstance(row, list) and len(row) == len(PRIMITIVES) for row in m
        ):
            xs.append(x)
            mats.append(m)
    return (xs, mats) if mats else None


def _plot_alphas(records: list[dict[str, Any]], cell: str, out: Path) -> Path | None:
    data = _alpha_matrix(records, f"alphas_{cell}")
    if data is None:
        return None
    xs, mats = data
    ncols = NUM_INPUTS + NUM_NODES - 1
    fig = _figure(3.0 * ncols, 2.3 * NUM_NODES, layout=None)  # fixed margins: fast to draw
    axes = fig.subplots(NUM_NODES, ncols, sharex=True, sharey=True, squeeze=False)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.07, top=0.92, wspace=0.08, hspace=0.3)
    last = derive(mats[-1], mats[-1])
    kept = {(k // 2, j) for k, (_, j) in enumerate(last.normal)}  # (node, input) kept now
    edge = 0
    for node in range(NUM_NODES):
        for j in range(ncols):
            ax = axes[node][j]
            if j >= NUM_INPUTS + node:
                ax.set_visible(False)
                continue
            for k, op in enumerate(PRIMITIVES):
                ys = [float(m[edge][k]) for m in mats]
                style = ":" if op == "none" else "-"
                ax.plot(xs, ys, style, color=op_color(op), lw=1.6, label=op, marker=None)
            src = ("$c_{k-2}$", "$c_{k-1}$")[j] if j < NUM_INPUTS else f"node {j - NUM_INPUTS}"
            chosen = (node, j) in kept
            ax.set_title(f"edge {edge}: {src} → node {node}" + ("  (kept)" if chosen else ""),
                         fontsize=9, fontweight="bold" if chosen else "normal")
            if chosen:
                for spine in ax.spines.values():
                    spine.set_linewidth(2.0)
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("softmax weight")
            if node == NUM_NODES - 1:
                ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            edge += 1
    handles, labels = axes[0][0].get_legend_handles_labels()
    host = axes[0][NUM_INPUTS]  # an empty slot of the first row
    host.set_visible(True)
    host.axis("off")
    host.legend(handles, labels, loc="upper left", ncol=2, fontsize=9, title="op", frameon=False)
    fig.suptitle(f"{cell} cell: architecture weights per edge "
                 f"(epoch {xs[-1]}: kept edges in bold)")
    path = out / f"alphas_{cell}.png"
    fig.savefig(path)
    return path


def _plot_curves(records: list[dict[str, Any]], out: Path) -> Path | None:
    x = _epochs(records)
    panels = [("loss", "train_loss", "valid_loss"), ("accuracy (%)", "train_acc", "valid_acc")]
    have_lr = not all(math.isnan(v) for v in _series(records, "lr"))
    fig = _figure(5.0 * (len(panels) + have_lr), 3.6)
    axes = fig.subplots(1, len(panels) + have_lr, squeeze=False)[0]
    drawn = False
    for ax, (title, train, valid) in zip(axes, panels, strict=False):
        for key, name, col in ((train, "train", "#1c4f8a"), (valid, "valid", "#c2410c")):
            ys = _series(records, key)
            if not all(math.isnan(v) for v in ys):
                ax.plot(x, ys, "-o", ms=3, color=col, label=name)
                drawn = True
        ax.set_title(title)
        _int_epochs(ax)
        if ax.lines:
            ax.legend()
    if have_lr:
        axes[-1].plot(x, _series(records, "lr"), "-", color="#6b6b6b")
        axes[-1].set_title("learning rate")
        _int_epochs(axes[-1])
    if not drawn and not have_lr:
        return None
    path = out / "curves.png"
    fig.savefig(path)
    return path


def _plot_entropy(records: list[dict[str, Any]], out: Path) -> Path | None:
    ys = _series(records, "offset_entropy")
    if all(math.isnan(v) for v in ys):
        return None  # plain FS or DARTS run: no DFS offsets
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    ax.plot(_epochs(records), ys, "-o", ms=3, color="#2b8a3e")
    ax.set_title("DFS offset entropy (lower: offsets have settled)")
    ax.set_ylabel("entropy (nats)")
    _int_epochs(ax)
    path = out / "offset_entropy.png"
    fig.savefig(path)
    return path


def _plot_learning(records: list[dict[str, Any]], out: Path) -> Path | None:
    fig = _figure(13.5, 3.6)
    ax_a, ax_o, ax_c = fig.subplots(1, 3)
    drew = False
    for cell, color in (("normal", "#2b8a3e"), ("reduce", "#862e9c")):
        data = _alpha_matrix(records, f"alphas_{cell}")
        if data is None:
            continue
        xs, mats = data
        per_edge = [edge_entropy(m) for m in mats]  # epochs x 14
        for e in range(NUM_EDGES):
            ax_a.plot(xs, [h[e] for h in per_edge], color=color, lw=0.6, alpha=0.35)
        ax_a.plot(xs, [float(h.mean()) for h in per_edge], color=color, lw=2.2,
                  label=f"{cell} (mean of 14 edges)")
        drew = True
    if not drew:
        return None
    ax_a.axhline(math.log(len(PRIMITIVES)), color="#495057", ls="--", lw=1,
                 label=f"uniform (ln {len(PRIMITIVES)})")
    ax_a.set_title("op-weight entropy per edge")
    ax_a.set_ylabel("nats")
    ax_a.legend(fontsize=8)
    _int_epochs(ax_a)
    x = _epochs(records)
    offsets = _series(records, "offset_entropy")
    if not all(math.isnan(v) for v in offsets):
        ax_o.plot(x, offsets, "-o", ms=3, color="#e8590c", label="DFS offsets (mean)")
        m = ((records[-1].get("genotype") or {}).get("fs") or {}).get("num_offsets") or 4
        ax_o.axhline(math.log(m), color="#495057", ls="--", lw=1, label=f"uniform (ln {m})")
        ax_o.legend(fontsize=8)
        _int_epochs(ax_o)
    else:
        ax_o.set_axis_off()
        ax_o.text(0.5, 0.5, "no DFS offsets in this run", ha="center", va="center")
    ax_o.set_title("offset entropy")
    changed = [(e, v) for e, v in zip(x, _series(records, "changed_edges"), strict=True)
               if not math.isnan(v)]  # none for the first epoch, or an older log
    ax_c.bar([e for e, _ in changed], [v for _, v in changed], color="#1c7ed6")
    ax_c.set_ylim(0, 16)
    ax_c.set_title("derived edges changed since the epoch before (of 16)", fontsize=10)
    _int_epochs(ax_c)
    path = out / "learning.png"
    fig.savefig(path)
    return path


def _plot_size(records: list[dict[str, Any]], out: Path) -> Path | None:
    ys = _series(records, "expected_params")
    if all(math.isnan(v) for v in ys):
        return None  # no budget counter in this run
    fig = _figure(9.0, 3.6)
    ax, ax_free = fig.subplots(1, 2)
    x = _epochs(records)
    ax.plot(x, [v / 1e6 for v in ys], "-o", ms=3, color="#1c7ed6", label="E[P] (relaxed)")
    ax.plot(x, [v / 1e6 for v in _series(records, "params")], "-s", ms=3, color="#e8590c",
            label="derived genotype (exact)")
    budget = records[-1].get("budget")
    if budget is not None:
        ax.axhline(budget / 1e6, color="#495057", ls="--", lw=1, label="budget")
    ax.set_title("parameters of the retrain network")
    ax.set_ylabel("millions")
    ax.legend()
    _int_epochs(ax)
    for cell, color in (("normal", "#2b8a3e"), ("reduce", "#862e9c")):
        ax_free.plot(x, [r.get("free_ops", {}).get(cell, math.nan) for r in records], "-o",
                     ms=3, color=color, label=cell)
    ax_free.set_title("parameter-free ops in the derived cells")
    ax_free.legend()
    _int_epochs(ax_free)
    ax_free.yaxis.set_major_locator(MaxNLocator(integer=True))
    path = out / "size.png"
    fig.savefig(path)
    return path


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write the run's plots (into RUN_DIR/plots unless `out_dir`) and return their paths.
    Plots whose data is absent (e.g. offset entropy of a non-DFS run) are skipped."""
    records = read_log(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / PLOT_DIR
    out.mkdir(parents=True, exist_ok=True)
    made = [
        _plot_alphas(records, "normal", out),
        _plot_alphas(records, "reduce", out),
        _plot_curves(records, out),
        _plot_learning(records, out),
        _plot_entropy(records, out),
        _plot_size(records, out),
    ]
    return [p for p in made if p is not None]
