"""accuracy_vs_params.png: mean top-1 of each arm (95% interval as error bars) against its
effective parameters on a log axis; FS arms also as their 8-bit WQ copies (open markers, at
their WQ effective count); the Pareto front (fewer parameters, higher accuracy) joined by a
line and ringed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study.stats import pareto_front


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


def plot_study(rep: dict[str, Any], path: Path) -> None:
    """Draw the plot (matplotlib, Agg backend) into `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    pts = _points(rep)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    try:
        for i, p in enumerate(pts):
            color = f"C{list(rep['arms']).index(p['arm']) % 10}"
            ax.errorbar([p["x"]], [p["y"]], yerr=[[p["err"][0]], [p["err"][1]]], fmt="o",
                        color=color, mfc="white" if p["wq"] else color, capsize=4, zorder=3,
                        label=p["label"])
            ax.annotate(f"{p['label']} (n={p['n']})", (p["x"], p["y"]), textcoords="offset points",
                        xytext=(6, 6 if i % 2 == 0 else -12), fontsize=8)
        front = pareto_front([(p["x"], p["y"]) for p in pts])
        if front:
            xs, ys = [pts[i]["x"] for i in front], [pts[i]["y"] for i in front]
            ax.plot(xs, ys, "--", color="0.4", zorder=2, label="Pareto front")
            ax.scatter(xs, ys, s=180, facecolors="none", edgecolors="0.4", zorder=2)
        ax.set_xscale("log")
        commas = FuncFormatter(lambda v, _: f"{v:,.0f}")
        ax.xaxis.set_major_formatter(commas)
        ax.xaxis.set_minor_formatter(commas)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        lo, hi = ax.get_ylim()  # intervals of few seeds can run past 0-100%
        ax.set_ylim(max(lo, -0.5), min(hi, 100.5))
        ax.set_xlabel("effective parameters (log scale)")
        ax.set_ylabel("test top-1 (%), mean with 95% CI")
        ax.set_title(f"{rep['name']}: accuracy against size")
        ax.grid(True, which="both", alpha=0.3)
        if pts:
            ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
