"""One search epoch: an architecture step on a validation batch, then a weight step on a
training batch (the DARTS alternation), with AMP on CUDA and DDP for the weights.

Parameters are split by identity into the upper level (alphas, and the DFS offset logits
with `fs.offsets_with: arch`) and the lower level (everything else: convolution weights,
FS vectors, and the offset logits with `fs.offsets_with: weights`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.distributed import DistInfo, all_reduce_sum, wrap_ddp
from common.errors import Diverged, UserError
from common.evaluate import evaluate
from common.fs_settings import temperature_at
from common.loader import CyclingLoader
from common.runlog import Progress
from common.runtime import channels_last, grad_scaler, to_memory_format
from common.threads import run_governor
from common.weight_step import WeightStep
from genotypes import Genotype
from genotypes.derive import free_op_count
from search.architect import Architect
from search.data import SearchData
from search.penalty import ArchPenalty, budget_model, derive_caps
from search.resolve import SearchSettings
from space.darts.supernet import SearchNetwork


def temperature_of_epoch(t_cfg: Any, epoch: int, epochs: int) -> float:
    """DFS softmax temperature of `epoch`: fs.temperature.start at epoch 0, .end at the last,
    by .schedule."""
    return temperature_at(t_cfg.start, t_cfg.end, t_cfg.schedule, epoch, epochs)


def build_network(settings: SearchSettings, num_classes: int, in_channels: int) -> SearchNetwork:
    """The supernet of a resolved search (its FS spec and ratio candidates), as its
    algorithm builds and weights it."""
    cfg, algorithm = settings.cfg, settings.algorithm
    try:
        net = SearchNetwork(
            C=int(cfg.init_channels), num_classes=num_classes, layers=int(cfg.layers),
            fs=settings.fs, in_channels=in_channels, ratios=settings.ratios,
            **algorithm.network_options(),
        )
    except ValueError as e:  # e.g. a width the FS ratio cannot compress
        raise UserError(f"cannot build the search network: {e}{algorithm.build_hint()}") from None
    algorithm.attach(net)
    return net


class SearchTrainer:
    """The network, both optimizers, the cosine schedule, the architect and the cycling
    validation iterator of one search, and their (checkpointable) state."""

    def __init__(self, settings: SearchSettings, data: SearchData, device: torch.device,
                 dist_info: DistInfo) -> None:
        cfg = settings.cfg
        self.settings, self.cfg, self.data, self.device, self.dist = (
            settings, cfg, data, device, dist_info)
        rt, wcfg, acfg = cfg.runtime, cfg.weights, cfg.arch
        self.amp = bool(rt.amp) and device.type == "cuda"
        self.channels_last = bool(rt.channels_last)
        self.algorithm = settings.algorithm
        net = build_network(settings, data.info.num_classes, data.info.in_channels).to(device)
        self.net = net = channels_last(net, self.channels_last)
        offsets = list(net.offset_parameters()) if cfg.fs.mode == "dfs" else []
        upper = list(net.arch_parameters())
        if cfg.fs.offsets_with == "arch":
            upper += offsets
        ids = {id(p) for p in upper}
        self.upper = upper
        # E[P] (and the budget) count the retrain network; built before DDP wraps the net.
        self.budget_model = budget_model(settings)
        self.penalty = ArchPenalty(net, cfg, self.budget_model)
        ratio_lr = acfg.ratio_lr if acfg.ratio_lr is not None else 10.0 * float(acfg.lr)
        lr_of = {} if net.ratios is None else {
            id(p): float(ratio_lr) for p in (net.ratios_normal, net.ratios_reduce)}
        self.lower = [p for p in net.parameters() if id(p) not in ids]
        self.w_optimizer = torch.optim.SGD(
            self.lower, lr=float(wcfg.lr), momentum=float(wcfg.momentum),
            weight_decay=float(wcfg.weight_decay),
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_optimizer, T_max=int(cfg.epochs), eta_min=float(wcfg.lr_min)
        )
        # DFS offset logits in the upper level at fs.offset_lr_scale x arch.lr, without weight
        # decay (which pulls them back to uniform), as retrain trains its offsets; at scale 1
        # they stay in the alphas' group (DFSNet's recipe).
        scale = float(cfg.fs.offset_lr_scale)
        groups = ([(offsets, float(acfg.lr) * scale, 0.0)]
                  if offsets and cfg.fs.offsets_with == "arch" and scale != 1.0 else [])
        self.architect = Architect(
            net, upper, self.lower, self.w_optimizer, lr=float(acfg.lr),
            betas=tuple(float(b) for b in acfg.betas), weight_decay=float(acfg.weight_decay),
            order=acfg.order, fd_eps=float(acfg.fd_eps), distributed=dist_info.enabled,
            regularizer=self.penalty if self.penalty.active else None, lr_of=lr_of, groups=groups,
        )
        # The upper level is not DDP's business: its gradients come from the architect and
        # are averaged there (average_gradients), so DDP neither reduces nor broadcasts it.
        self.model: nn.Module = (wrap_ddp(net, device, self.architect.upper_names)
                                 if dist_info.enabled else net)
        self.valid_iter = CyclingLoader(data.valid)
        self.scaler = grad_scaler(device, self.amp)
        self.weight_step = WeightStep(self.w_optimizer, self.scaler, device, self.amp,
                                      clipped=self.lower, clip=float(wcfg.grad_clip),
                                      frozen=self.upper)
        # Two loaders (weights and architecture halves), each with its workers.
        self.governor = run_governor(rt, device, dist_info.is_main, 2 * int(cfg.data.workers or 0))

    @property
    def lr(self) -> float:
        return float(self.w_optimizer.param_groups[0]["lr"])

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_memory_format(x.to(self.device, non_blocking=True), self.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def weight_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The lower-level loss (a method so that tests can inject a divergence)."""
        return F.cross_entropy(logits, y)

    def loss_and_logits(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight step's forward (common.weight_step): the lower-level loss and logits."""
        logits = self.model(x)
        return self.weight_loss(logits, y), logits

    def train_epoch(self, epoch: int, show: bool = True) -> dict[str, float]:
        """Alternate architecture and weight steps over the weights half; return the epoch's
        training figures (averaged over ranks)."""
        self.model.train()
        self.penalty.epoch = epoch
        loader = self.data.train
        loader.sampler.set_epoch(epoch)
        lr, search_arch = self.lr, epoch >= int(self.cfg.arch.warmup_epochs)
        sums = torch.zeros(3, dtype=torch.float64)  # loss*n, correct, n
        # The architecture losses are summed on the device and read once, after the epoch: a
        # read per step would make the CPU wait for the GPU. A non-finite architecture step
        # still stops the run in its own step: the alphas go non-finite with it, and so does
        # the weight step's loss, which WeightStep reads every step.
        arch_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        arch_steps = 0
        epochs = int(self.cfg.epochs)
        bar = Progress(loader, len(loader), f"epoch {epoch + 1}/{epochs}", enabled=show)
        start = time.perf_counter()
        for step, (x, y) in enumerate(self.governor.watch(bar, epoch)):
            x, y = self._to_device(x, y)
            if search_arch:
                xv, yv = self._to_device(*next(self.valid_iter))
                arch_sum += self.architect.step(x, y, xv, yv, xi=lr).double()
                arch_steps += 1
            loss_v, correct, bad = self.weight_step(self.loss_and_logits, x, y)
            if bad:
                raise self._diverged(epoch, step, bad)
            n = y.size(0)
            sums[:3] += torch.tensor([loss_v * n, correct, n], dtype=torch.float64)
            seen = sums[2].item() * self.dist.world_size
            bar.update(loss=sums[0].item() / sums[2].item(), acc=100.0 * sums[1].item() / sums[2].item(),
                       img_s=round(seen / (time.perf_counter() - start)))
        seconds = time.perf_counter() - start
        arch_total = float(arch_sum)
        if not math.isfinite(arch_total):
            raise self._diverged(epoch, None, f"the architecture steps' loss is {arch_total}")
        loss_sum, correct, n, arch_sum, steps = all_reduce_sum(
            [*sums.tolist(), arch_total, float(arch_steps)], self.device)
        return {
            "train_loss": loss_sum / n, "train_acc": 100.0 * correct / n,
            "arch_loss": arch_sum / steps if steps else None, "lr": lr,
            "seconds": seconds, "images_per_s": n / seconds,
            **self.governor.figures(),
        }

    def evaluate(self) -> tuple[float, float]:
        """(loss, top-1 %) on the architecture half with the evaluation transform."""
        r = evaluate(self.net, self.data.valid_eval, int(self.cfg.batch_size), self.device,
                     self.dist, amp=self.amp, channels_last=self.channels_last,
                     workers=int(self.cfg.data.workers))
        self.net.train()
        return r["loss"], r["top1"]

    def genotype(self) -> Genotype:
        """The derived genotype of the current architecture (with the config's caps),
        recording the algorithm that searched it."""
        g = self.net.genotype(**derive_caps(self.cfg))
        return dataclasses.replace(g, source={"algorithm": self.algorithm.name})

    def size_figures(self, g: Genotype) -> dict[str, Any]:
        """The epoch's size figures for log.jsonl: parameter-free ops of the derived cells,
        and with a budget counter E[P], the derived genotype's exact count and the budget."""
        out: dict[str, Any] = {"free_ops": free_op_count(g)}
        if self.budget_model is not None:
            with torch.no_grad():
                out["expected_params"] = float(self.penalty.expected_params())
            out["params"] = self.budget_model.count(g)
            out["budget"] = self.cfg.budget.params
        return out

    def check_finite(self, epoch: int, valid_loss: float) -> None:
        """Raise Diverged when the architecture or the evaluation went NaN/inf (a weight that
        did shows up as a non-finite validation loss)."""
        bad = [n for n, p in zip(self.architect.upper_names, self.upper, strict=True)
               if not torch.isfinite(p).all()]
        if bad:
            raise self._diverged(epoch, None, f"{', '.join(bad)} became NaN/inf")
        if not math.isfinite(valid_loss):
            raise self._diverged(epoch, None, f"validation loss is {valid_loss}")

    def _diverged(self, epoch: int, step: int | None, what: str) -> Diverged:
        return Diverged("search", epoch, step, what,
                        "start again with a lower weights.lr or arch.lr (--set) and --out RUN_DIR "
                        "--overwrite (--resume keeps a run's learning rates)", int(self.cfg.epochs))

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(), "w_optimizer": self.w_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "architect": self.architect.state_dict(),
            "valid_iter": self.valid_iter.state_dict(), "scaler": self.scaler.state_dict(),
            "threads": self.governor.threads,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.architect.load_state_dict(state["architect"])
        self.valid_iter.load_state_dict(state["valid_iter"])
        self.scaler.load_state_dict(state["scaler"])
        self.governor.restore(state.get("threads"))
