"""accuracy_vs_params.png: mean top-1 of each arm (95% interval as error bars) against its
effective parameters on a log axis; FS arms also as their 8-bit WQ copies (open markers, at
their WQ effective count); the Pareto front (fewer parameters, higher accuracy) joined by a
line and ringed. Arms of one `group` share a marker shape."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from study.stats import pareto_front

#: Marker shapes of the arms' groups, in the order the groups first appear.
MARKERS = ("o", "s", "^", "D", "v", "P")


def _points(rep: dict[str, Any]) -> list[dict[str, Any]]:
    pts = []
    for name, a in rep["arms"].items():
        for key, params, label, wq in (("top1", "effective_params", name, False),
                                       ("top1_wq", "effective_params_wq", f"{name} (WQ)", True)):
            d, p = a.get(key), a.get(params)
            if d is None or d["mean"] is None or p is None:
                continue
            ci = d["ci95"]
            err = (d["mean"] - ci[0], ci[1] - d["mean"]) if ci else (0.0, 0.0)
            pts.append({"x": p["mean"], "y": d["mean"], "err": err, "label": label, "wq": wq,
                        "n": d["n"], "arm": name})
    return pts


def _short_count(v: float, _: object = None) -> str:
    """60k, 250k, 1.2M: tick labels short enough not to run into each other."""
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    return f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}"


def _clip_to_percent(ax: Any, pts: list[dict[str, Any]]) -> None:
    """y axis from the data (not from 0), within 0-100%; an interval bound beyond the axis
    (few seeds give wide intervals) is marked at the edge with its value, never hidden."""
    if not pts:
        return
    lows = [p["y"] - p["err"][0] for p in pts]
    highs = [p["y"] + p["err"][1] for p in pts]
    means = [p["y"] for p in pts]
    pad = max(1.0, 0.08 * (max(means) - min(means)))
    lo = max(0.0, min(lows) - pad, min(means) - 15.0)
    hi = min(100.0, max(highs) + pad, max(means) + 15.0)
    ax.set_ylim(lo, hi)
    for p, low, high in zip(pts, lows, highs, strict=True):
        for bound, edge, marker, va in ((low, lo, "v", "bottom"), (high, hi, "^", "top")):
            if (bound < edge) if marker == "v" else (bound > edge):
                ax.plot([p["x"]], [edge], marker=marker, color="0.2", ms=6, zorder=4,
                        clip_on=False)
                ax.annotate(f"{bound:.1f}", (p["x"], edge), textcoords="offset points",
                            xytext=(5, 2 if va == "bottom" else -2), va=va, fontsize=7)


def _leading(x: float) -> int:
    """The leading digit of a positive tick value (2 for 20,000)."""
    return int(round(x / 10 ** math.floor(math.log10(x)))) if x > 0 else 0


def plot_study(rep: dict[str, Any], path: Path) -> None:
    """Draw the plot (matplotlib, Agg backend) into `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    pts = _points(rep)
    groups = list(dict.fromkeys(a.get("group") for a in rep["arms"].values()))
    # Room for the legend, one line per point: two columns (and a taller figure) for many arms.
    ncol = 1 if len(pts) <= 20 else 2
    fig, ax = plt.subplots(figsize=(9 + 3 * (ncol - 1), max(4.5, 0.19 * (len(pts) + 1) / ncol)),
                           dpi=120)
    try:
        for p in pts:
            color = f"C{list(rep['arms']).index(p['arm']) % 10}"
            # One marker shape per group (the study's points), so that arms sharing a colour
            # (ten colours) stay apart.
            marker = MARKERS[groups.index(rep["arms"][p["arm"]].get("group")) % len(MARKERS)]
            # The legend names every point (with its seed count): labels beside the points
            # collide where arms share a size.
            ax.errorbar([p["x"]], [p["y"]], yerr=[[p["err"][0]], [p["err"][1]]], fmt=marker,
                        color=color, mfc="white" if p["wq"] else color, capsize=4, zorder=3,
                        label=f"{p['label']} (n={p['n']})")
        front = pareto_front([(p["x"], p["y"]) for p in pts])
        if front:
            xs, ys = [pts[i]["x"] for i in front], [pts[i]["y"] for i in front]
            ax.plot(xs, ys, "--", color="0.4", zorder=2, label="Pareto front")
            ax.scatter(xs, ys, s=180, facecolors="none", edgecolors="0.4", zorder=2)
        ax.set_xscale("log")
        short = FuncFormatter(_short_count)
        ax.xaxis.set_major_formatter(short)
        # Minor ticks labelled at 2, 3 and 5 x 10^k only: every one collides over decades.
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda x, pos: _short_count(x, pos) if _leading(x) in (2, 3, 5) else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        _clip_to_percent(ax, pts)
        ax.set_xlabel("effective parameters (log scale)")
        ax.set_ylabel("test top-1 (%), mean with 95% CI")
        ax.set_title(f"{rep['name']}: accuracy against size")
        ax.grid(True, which="both", alpha=0.3)
        if pts:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                      ncol=ncol)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
