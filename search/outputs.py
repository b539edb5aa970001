"""What a search leaves in its run directory, and what it tells the user.

    RUN_DIR/config.yaml            resolved config, dataset spec, command line (a valid preset)
    RUN_DIR/log.jsonl              one record per epoch (read by genotypes.plot.plot_run)
    RUN_DIR/genotypes/epoch-NNN.json, RUN_DIR/genotype.json (current, then final)
    RUN_DIR/checkpoint.pt          latest complete epoch (atomic; --resume)
    RUN_DIR/cells/                 cell drawings (every runtime.draw_every epochs, and final)
    RUN_DIR/plots/                 alphas / curves / offset entropy plots (at the end;
                                   runtime.plot: false skips them)
    RUN_DIR/tensorboard/           event files, with log.tensorboard (common.tensorboard)

Only rank 0 writes. Drawing and plotting are conveniences: a failure there is one warning
line and never stops a search.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from common.checkpoint import rng_state, save_checkpoint
from common.config import preset_with_section
from common.config import save_run_config as save_config_yaml
from common.runlog import JsonlLog, say
from common.shapes import KNOWN as KNOWN_DATASETS
from common.tensorboard import TensorBoardLog
from common.threads import thread_figures
from genotypes import Genotype, genotype_lines, save_genotype, to_dict
from genotypes.derive import changed_edges, edge_entropy
from genotypes.primitives import NUM_INPUTS, NUM_NODES, PRIMITIVES
from search.settings import SearchConfig

LOG, GENOTYPE, CHECKPOINT, CONFIG = "log.jsonl", "genotype.json", "checkpoint.pt", "config.yaml"
DEFAULT_DATA_ROOT = "data"  # both presets' data.root


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def save_run_config(run_dir: Path, cfg: SearchConfig, dataset: str, preset: str,
                    command: list[str], resumed: list[str] | None = None) -> None:
    """config.yaml: the resolved `search` section plus what it ran on (see
    common.config.save_run_config)."""
    record: dict[str, Any] = {"dataset": dataset, "preset": preset, "command": shlex.join(command)}
    if resumed:
        record["resumed"] = resumed
    save_config_yaml(run_dir / CONFIG, "search", cfg, record)


def heat_map(alphas: list[list[float]], title: str) -> np.ndarray:
    """An (H, W, 3) uint8 image of an edge x op matrix of softmaxed alphas, labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    a = np.asarray(alphas, dtype=np.float64)
    edges = [f"{j}->{node + NUM_INPUTS}" for node in range(NUM_NODES)
             for j in range(NUM_INPUTS + node)]
    fig = Figure(figsize=(6.4, 0.28 * a.shape[0] + 1.6), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(a, cmap="viridis", vmin=0.0, vmax=max(float(a.max()), 1e-6), aspect="auto")
    ops = PRIMITIVES if a.shape[1] == len(PRIMITIVES) else [str(i) for i in range(a.shape[1])]
    ax.set_xticks(range(a.shape[1]), ops, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(a.shape[0]), edges if a.shape[0] == len(edges) else range(a.shape[0]),
                  fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def alphas_images(record: dict[str, Any]) -> dict[str, np.ndarray]:
    """TensorBoard images of a search record: its softmaxed alphas as edge x op heat maps
    (`alphas/normal`, `alphas/reduce`)."""
    out = {}
    for cell in ("normal", "reduce"):
        alphas = record.get(f"alphas_{cell}")
        if alphas:
            out[f"alphas/{cell}"] = heat_map(
                alphas, f"softmax(alpha), {cell} cell, epoch {int(record['epoch']) + 1}")
    return out


class RunOutputs:
    """The run directory of one search (inactive on ranks other than 0)."""

    def __init__(self, run_dir: Path, enabled: bool, draw_every: int, epochs: int,
                 plot: bool = True, tensorboard: bool = False) -> None:
        self.dir, self.enabled, self.plot = Path(run_dir), enabled, plot
        self.draw_every, self.epochs = int(draw_every), int(epochs)
        self.log = JsonlLog(self.dir / LOG)
        self.tensorboard = TensorBoardLog(self.dir, enabled and tensorboard, alphas_images)

    def epoch_done(self, epoch: int, record: dict[str, Any], g: Genotype,
                   checkpoint: dict[str, Any]) -> None:
        """Log line and genotype files first, then the checkpoint: a kill in between leaves
        a log line the resumed run truncates and repeats, never a missing one."""
        if not self.enabled:
            return
        self.log.write(record)
        self.tensorboard.write(record)
        save_genotype(g, self.dir / "genotypes" / f"epoch-{epoch:03d}.json")
        save_genotype(g, self.dir / GENOTYPE)
        save_checkpoint({**checkpoint, "rng": rng_state()}, self.dir / CHECKPOINT, "search")
        last = epoch + 1 == self.epochs
        if not last and self.draw_every > 0 and (epoch + 1) % self.draw_every == 0:
            self.draw(g, f"epoch-{epoch:03d}-")

    def draw(self, g: Genotype, stem: str = "") -> None:
        try:
            from genotypes.draw import draw_genotype

            draw_genotype(g, self.dir / "cells", fmt="png", stem=stem)
        except Exception as e:  # drawing is a convenience; never let it stop a search
            warn(f"could not draw the cells ({_short(e)}); the search goes on")

    def finish(self, g: Genotype, dataset: str, last: dict[str, Any] | None,
               preset: str = "paper", data_root: str = DEFAULT_DATA_ROOT,
               threads: int | None = None) -> None:
        """Final drawings and plots, and the summary: genotype, its file, the retrain command
        (with `threads`, the search's thread count when it was given)."""
        if not self.enabled:
            return
        self.tensorboard.close()
        save_genotype(g, self.dir / GENOTYPE)  # a budget's fit may have changed the ratios
        self.draw(g)
        try:
            if self.plot:
                from genotypes.plot import plot_run

                plot_run(self.dir)
        except Exception as e:
            warn(f"could not plot the run ({_short(e)}); log.jsonl has every figure")
        if last is not None:
            say(f"search finished: train acc {last['train_acc']:.2f}%, valid acc "
                f"{last['valid_acc']:.2f}% after {last['epoch'] + 1} epoch(s)")
        for line in genotype_lines(g):
            say(line)
        say(f"genotype file: {self.dir / GENOTYPE}")
        command = retrain_command(self.dir / GENOTYPE, dataset, preset, data_root, threads)
        say(f"retrain it: {command}")


def retrain_command(genotype_file: Path, dataset: str, preset: str, data_root: str,
                    threads: int | None = None) -> str:
    """The retrain command for a search's genotype: the retrain section of the search's preset
    (a smoke search gets a smoke retrain, not the 600-epoch paper one), its data root for a
    named dataset, the thread count the search was given (`threads`; None when it chose
    one to fit the cores), and this interpreter's full path (it works without activating
    the venv)."""
    cmd = [sys.executable, "-m", "retrain", "--genotype", str(genotype_file), "--dataset", dataset]
    retrain_preset = preset_with_section(preset, "retrain")
    if retrain_preset:
        cmd += ["--preset", retrain_preset]
    if dataset.lower() in KNOWN_DATASETS and str(data_root) != DEFAULT_DATA_ROOT:
        cmd += ["--data-root", str(data_root)]
    if threads is not None:
        cmd += ["--threads", str(int(threads))]
    return shlex.join(cmd)


def epoch_record(epoch: int, stats: dict[str, Any], valid: tuple[float, float], arch_state: dict,
                 entropy: float | None, temperature: float | None, g: Genotype,
                 extra: dict[str, Any] | None = None,
                 previous: Genotype | None = None) -> dict[str, Any]:
    """The log.jsonl record of one epoch (the keys genotypes.plot.plot_run reads, and a few);
    `previous`: the genotype of the epoch before (None for the first). `extra`: the
    algorithm's figures (GDAS's tau) and SearchTrainer.size_figures
    (parameter-free ops; E[P] and the count with a
    budget or searched ratios)."""
    return {
        "epoch": epoch,
        "train_loss": stats["train_loss"], "train_acc": stats["train_acc"],
        "valid_loss": valid[0], "valid_acc": valid[1],
        "arch_loss": stats["arch_loss"], "lr": stats["lr"],
        "alphas_normal": arch_state["normal"], "alphas_reduce": arch_state["reduce"],
        # Mean entropy of the edges' op weights (ln 8 = 2.079 is uniform), and how many of the
        # 16 kept edges the derivation changed since the previous epoch.
        "alpha_entropy": {c: float(edge_entropy(arch_state[c]).mean()) for c in ("normal", "reduce")},
        "changed_edges": None if previous is None else changed_edges(previous, g),
        "offset_entropy": entropy, "temperature": temperature,
        "genotype": to_dict(g),
        "seconds": stats["seconds"], "images_per_s": stats["images_per_s"],
        **thread_figures(stats), **(extra or {}),
    }


def summary_line(rec: dict[str, Any], epochs: int) -> str:
    h, ha = rec["offset_entropy"], rec["alpha_entropy"]
    extra = f"  H(alpha) {ha['normal']:.3f}/{ha['reduce']:.3f}"
    if rec["changed_edges"] is not None:
        extra += f" ({rec['changed_edges']} edges changed)"
    extra += "" if h is None else f"  H(offsets) {h:.3f}  T {rec['temperature']:.3g}"
    if rec.get("expected_params") is not None:  # a budget or searched ratios
        extra += f"  E[P] {rec['expected_params'] / 1e6:.3f}M (derived {rec['params'] / 1e6:.3f}M"
        extra += "" if rec.get("budget") is None else f", budget {rec['budget'] / 1e6:.3f}M"
        free = rec["free_ops"]  # skips and pools in the derived cells (arch.max_free caps them)
        extra += f")  parameter-free ops {free['normal']} normal + {free['reduce']} reduce"
    return (f"epoch {rec['epoch'] + 1}/{epochs}  train {rec['train_loss']:.4f} / "
            f"{rec['train_acc']:.2f}%  valid {rec['valid_loss']:.4f} / {rec['valid_acc']:.2f}%  "
            f"lr {rec['lr']:.4g}{extra}  {rec['seconds']:.1f}s  {rec['images_per_s']:.0f} img/s")
