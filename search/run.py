"""The epoch loop of a search: train, evaluate, derive the genotype, log and checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from common.checkpoint import set_rng_state
from common.distributed import DistInfo
from common.runlog import say
from common.runtime import deterministic_pooling, precision, set_determinism
from common.schema import as_dict
from genotypes import PRIMITIVES, Genotype, from_dict
from search.data import SearchData
from search.ddp import ranks_agree
from search.outputs import RunOutputs, epoch_record, summary_line, warn
from search.resolve import SearchSettings
from search.settings import SearchConfig
from search.trainer import SearchTrainer, temperature_of_epoch
from space.darts.budget import EDGES, fit_to_budget
from space.darts.width_fit import fit_with_width
from space.layers.fs_model import set_temperature


def final_genotype(trainer: SearchTrainer, cfg: SearchConfig, main: bool) -> Genotype:
    """The derived genotype; with a budget, fitted to it (space.darts.budget.fit_to_budget) and
    its exact count printed next to the budget."""
    g = trainer.genotype()
    budget, model = cfg.budget.params, trainer.budget_model
    if budget is None or model is None:
        return g
    derived = model.count(g)
    net, pref = trainer.net, None
    if net.ratios is not None:
        pref = {cell: [logits[EDGES.index((k // 2, j)), PRIMITIVES.index(op)].tolist()
                       for k, (op, j) in enumerate(getattr(g, cell))]
                for cell, logits in (("normal", net.ratios_normal.detach()),
                                     ("reduce", net.ratios_reduce.detach()))}
    g, notes = fit_to_budget(model, g, budget, pref)
    exact = model.exact(g)
    say(f"budget: {budget:,} effective parameters of {model.describe()}", main)
    say(f"derived genotype: {derived:,} parameters ({100.0 * derived / budget:.1f}% of the "
        "budget)", main)
    for line in notes:
        say(f"  {line}", main)
    verdict = "within" if exact <= budget else "OVER"
    say(f"final genotype: {exact:,} parameters, {100.0 * exact / budget:.1f}% of the budget "
        f"({verdict} it)", main)
    if exact > budget and net.ratios is None:
        say("the network is over the budget and its ratios are fixed: search with --ratios "
            "(e.g. 1,2,4,8) so that each op's ratio can change, raise --ratio, or raise "
            "--budget", main)
    elif exact > budget:
        say("every op is at its largest ratio and the network is still over the budget: add "
            "a larger ratio to --ratios, or raise --budget", main)
    return g


def width_rule_genotype(g: Genotype, settings: SearchSettings, main: bool) -> Genotype:
    """Under the budget's width rule: the derived genotype's ops, their ratios fitted among the
    searched candidates (or the fixed ratio kept) at the widest width of the budget's network
    where it fits (space.darts.width_fit.fit_with_width, the same fit as the study's and
    `genotypes random`'s); the genotype records the width as fs.width."""
    cfg = settings.cfg
    full = dataclasses.replace(settings.counted, init_channels=int(cfg.budget.init_channels))
    fit = fit_with_width(g, int(cfg.budget.params), settings.ratios, settings.fs, full)
    for line in fit.lines():
        say(line, main)
    width = fit.genotype.source.get("width", cfg.budget.init_channels)
    say(f"width rule: ops' ratios among {', '.join(f'{r:g}' for r in settings.ratios or [settings.fs.ratio])}"
        f", network at init_channels {width} of {cfg.budget.init_channels} (fs.width "
        f"{fit.genotype.fs.width:.4g}, which the retrain applies to its width)", main)
    if not fit.within:
        say("the network is over the budget even at the narrowest width: raise --budget", main)
    return fit.genotype


#: An op weight below this (a logit more than 27 below its edge's largest) has a gradient
#: too small for the op ever to come back. DARTS's settings (arch.lr 3e-4, Adam) move a logit
#: by a few units over a whole search; a far too high arch.lr gets there in its first steps.
DEAD_WEIGHT = 1e-12


def collapse_warning(record: dict[str, Any], cfg: SearchConfig) -> bool:
    """Warn (once) when op weights have collapsed (below DEAD_WEIGHT): the search then derives
    its genotype from its first noisy steps. Returns whether it warned."""
    weights = [w for cell in ("alphas_normal", "alphas_reduce") for edge in record[cell]
               for w in edge]
    dead = sum(w < DEAD_WEIGHT for w in weights)
    if not dead:
        return False
    warn(f"{dead} of {len(weights)} op weights collapsed below {DEAD_WEIGHT:g} by epoch "
         f"{record['epoch'] + 1} (those ops can no longer be chosen): arch.lr "
         f"{float(cfg.arch.lr):g} is likely far too high (DARTS uses 3e-4); start again with a "
         "lower one")
    return True


def run_search(
    settings: SearchSettings, data: SearchData, run_dir: Path, dataset: str,
    device: torch.device, dist_info: DistInfo, resume_state: dict[str, Any] | None = None,
    preset: str = "paper",
) -> tuple[Genotype, SearchTrainer]:
    """Search from epoch 0, or from a checkpoint's epoch; returns the final genotype.
    `preset` is the one the search ran with (the retrain command it prints uses its own)."""
    cfg = settings.cfg
    deterministic = bool(cfg.runtime.deterministic)
    set_determinism(deterministic)
    computes_in = precision(device, bool(cfg.runtime.amp))  # checked on resume (cli)
    trainer = SearchTrainer(settings, data, device, dist_info)
    net, main = trainer.net, dist_info.is_main
    if deterministic and device.type == "cuda":
        deterministic_pooling(net)
    epochs = int(cfg.epochs)
    start = 0
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        set_rng_state(resume_state["rng"])
        start = int(resume_state["epoch"])
    outputs = RunOutputs(run_dir, main, cfg.runtime.draw_every, epochs, cfg.runtime.plot,
                         cfg.log.tensorboard)
    dfs = cfg.fs.mode == "dfs"
    last: dict[str, Any] | None = None
    collapsed = False
    logged = outputs.log.read() if start > 0 and main else []
    previous = from_dict(logged[-1]["genotype"]) if logged else None
    for epoch in range(start, epochs):
        temperature = temperature_of_epoch(cfg.fs.temperature, epoch, epochs) if dfs else None
        if temperature is not None:
            set_temperature(net, temperature)
        algo_figures = trainer.algorithm.start_epoch(net, epoch, epochs)
        stats = trainer.train_epoch(epoch, show=main)
        valid = trainer.evaluate()
        trainer.check_finite(epoch, valid[0])  # before anything of this epoch is written
        trainer.scheduler.step()
        g = trainer.genotype()
        last = epoch_record(epoch, stats, valid, net.arch_state(), net.offset_entropy(),
                            temperature, g, {**algo_figures, **trainer.size_figures(g)}, previous)
        previous = g
        state = {"epoch": epoch + 1, "temperature": temperature, "config": as_dict(cfg),
                 "dataset": dataset, "world_size": dist_info.world_size,
                 "device": device.type, "precision": computes_in, **trainer.state_dict()}
        outputs.epoch_done(epoch, last, g, state)
        say(summary_line(last, epochs), main)
        if main and not collapsed:
            collapsed = collapse_warning(last, cfg)
    if last is None and main:  # resumed a finished run: report what it found
        records = outputs.log.read()
        last = records[-1] if records else None
        say(f"{run_dir} had already finished all {epochs} epochs", main)
    if dist_info.enabled:
        if not ranks_agree(trainer.upper):
            raise RuntimeError("the architecture parameters differ between ranks; please report")
        say(f"architecture parameters identical on all {dist_info.world_size} ranks", main)
    if cfg.budget.params is not None and cfg.budget.rule == "width" and settings.fs is not None:
        g = width_rule_genotype(trainer.genotype(), settings, main)
    else:
        g = final_genotype(trainer, cfg, main)
    outputs.finish(g, dataset, last, preset, cfg.data.root, settings.retrain_threads)
    return g, trainer
