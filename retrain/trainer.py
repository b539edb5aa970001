"""One retrain epoch and the state it carries: SGD with the DARTS recipe (auxiliary loss, drop
path, gradient clipping, cosine, step, multistep or plateau schedule), DFS temperature and
hardening, structural pruning once (`prune.params`), AMP on CUDA and DDP. The epoch loop is
retrain.run's, the files retrain.outputs', the per-epoch schedule (seed,
temperature, hardening and pruning epochs, cyclic lr) retrain.schedule's.

Determinism: every epoch reseeds the RNGs from (seed, epoch, rank) (drop path); the data
order depends only on (seed, epoch) and each image's augmentation only on (seed, epoch, its
index), whatever `data.workers` (common.loader). So a run resumed from the checkpoint of
epoch e repeats exactly what an uninterrupted run does from e on (on the same device and
thread count).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from common.config_schema import RetrainConfig
from common.distributed import DistInfo, all_reduce_sum, wrap_ddp
from common.errors import Diverged, UserError
from common.evaluate import evaluate, split_logits
from common.loader import make_loader
from common.runlog import Progress, say
from common.runtime import (
    channels_last,
    grad_scaler,
    precision,
    seed_everything,
    to_memory_format,
)
from common.schema import as_dict
from common.threads import run_governor
from common.weight_step import WeightStep
from retrain.model import NetSpec
from retrain.schedule import CyclicMultiStep, epoch_seed, harden_epoch, prune_epoch, temperature_of_epoch
from space.layers.channel_prune import apply_plan, count_params, plan_pruning
from space.layers.fs_model import harden_model, offset_entropy, offset_parameters, set_temperature


def harden_in_place(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Harden every DFS layer and point the optimizer at the surviving parameters.

    Each hardened layer gets a new `fs` Parameter; its momentum buffer moves over with it
    (same values, same group, same position), so SGD continues as if nothing happened. The
    offset logits leave their group (which stays, empty, so the scheduler's per-group lists
    keep their length)."""
    names = {id(p): n for n, p in model.named_parameters()}
    harden_model(model)
    new = dict(model.named_parameters())
    for group in optimizer.param_groups:
        kept = []
        for p in group["params"]:
            q = new.get(names[id(p)])
            state = optimizer.state.pop(p, None)
            if q is None:  # an offset logit: gone with its layer
                continue
            if state is not None:
                optimizer.state[q] = state
            kept.append(q)
        group["params"] = kept


class Trainer:
    """Trains `network` (built once, from `spec`, by retrain.setup.make_job) on one dataset;
    holds the optimizer, schedule, scaler and the figures a checkpoint keeps."""

    def __init__(self, cfg: RetrainConfig, spec: NetSpec, network: nn.Module, dist: DistInfo,
                 device: torch.device, train_set, test_set) -> None:
        self.cfg, self.spec = cfg, spec
        self.dist, self.device = dist, device
        self.epochs = int(cfg.epochs)
        self.channels_last = bool(cfg.runtime.channels_last)
        self.model = channels_last(network.to(device), self.channels_last)
        self.amp = bool(cfg.runtime.amp)
        opt = cfg.optimizer
        offs = {id(p) for p in offset_parameters(self.model)}
        weights = [p for p in self.model.parameters() if id(p) not in offs]
        logits = [p for p in self.model.parameters() if id(p) in offs]
        # Offset logits pick among candidate windows; weight decay would pull them back to a
        # uniform mix, so their group has none.
        self.optimizer = torch.optim.SGD(
            [{"params": weights, "weight_decay": float(opt.weight_decay)},
             {"params": logits, "weight_decay": 0.0,
              "lr": float(opt.lr) * float(cfg.fs.offset_lr_scale)}],
            lr=float(opt.lr), momentum=float(opt.momentum))
        if opt.schedule == "cosine":
            self.scheduler: Any = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, self.epochs, eta_min=float(opt.lr_min))
        elif opt.schedule == "multistep":
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, CyclicMultiStep(self.epochs, opt.milestones, opt.gamma, opt.cycles))
        elif opt.schedule == "plateau":
            # On the training loss, not the test loss: the test set stays out of every
            # training decision. Its state (best loss, bad epochs) is in the checkpoint.
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, "min", factor=float(opt.gamma), patience=int(opt.patience))
        else:
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 1, float(opt.decay))
        self.scaler = grad_scaler(device, self.amp)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=float(cfg.label_smoothing))
        self.hardened = not logits
        self.harden_at = harden_epoch(cfg)
        self.prune_at = prune_epoch(cfg)
        self.start_epoch, self.best_acc, self.best_epoch, self.elapsed = 0, -1.0, -1, 0.0
        bs, workers = int(cfg.batch_size), int(cfg.data.workers)
        pin = device.type == "cuda"
        self.train_loader = make_loader(train_set, bs, dist, shuffle=True, seed=int(cfg.seed),
                                        workers=workers, drop_last=False, pin_memory=pin)
        self.test_set = test_set
        self.governor = run_governor(cfg.runtime, device, dist.is_main, workers)
        self._wrap()

    # --- state -----------------------------------------------------------------------------
    def _wrap(self) -> None:
        """DDP (when distributed) over the current parameters, and the weight step on them."""
        self.net = wrap_ddp(self.model, self.device) if self.dist.enabled else self.model
        clip = self.cfg.optimizer.grad_clip
        self.weight_step = WeightStep(self.optimizer, self.scaler, self.device, self.amp,
                                      clipped=list(self.model.parameters()),
                                      clip=float(clip) if clip else None)

    def offset_entropy(self) -> float | None:
        """Mean offset entropy (nats) of the DFS layers before hardening (ln M: uniform, the
        offsets not learned); None once hardened or without DFS layers."""
        return offset_entropy(self.model)

    def harden(self) -> None:
        if not self.hardened:
            harden_in_place(self.model, self.optimizer)
            self.hardened = True
            self._wrap()  # DDP must see the new parameters

    def prune(self) -> None:
        """Prune the network to `prune.params` (once; every rank prunes the same all-reduced
        weights the same way), then train the pruned parameters from a fresh momentum."""
        if self.spec.pruned is not None:
            return
        p, before = self.cfg.prune, count_params(self.model)
        self.model.cpu()
        try:
            plan = plan_pruning(self.model, int(p.params), self.spec.in_channels,
                                self.spec.input_size, self.spec.num_classes, int(p.norm),
                                bool(p.global_ranking))
        except ValueError as e:  # the trained weights rank differently from the initial ones
            raise UserError(f"cannot prune at epoch {self.prune_at + 1}: {e}") from None
        finally:
            self.model.to(self.device)
        self._adopt_pruned(plan)
        # best.pt and best_test_acc are of the pruned network: the one the run exports.
        self.best_acc, self.best_epoch = -1.0, -1
        say(f"pruned with Torch-Pruning ({'global' if p.global_ranking else 'per-layer'} L{p.norm}): "
            f"{before:,} -> {count_params(self.model):,} parameters, {len(plan)} channel groups",
            self.dist.is_main)

    def _adopt_pruned(self, plan: list[Any]) -> None:
        self.spec.pruned = plan
        self.model = channels_last(self.model, self.channels_last)
        self.optimizer.param_groups[0]["params"] = list(self.model.parameters())
        self.optimizer.state.clear()
        self._wrap()

    def state_dict(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "spec": self.spec.to_dict(), "config": as_dict(self.cfg),
                "hardened": self.hardened, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "device": self.device.type, "precision": precision(self.device, self.amp),
                "best_acc": self.best_acc, "best_epoch": self.best_epoch,
                "elapsed": self.elapsed, "threads": self.governor.threads}

    def resume(self, state: dict[str, Any]) -> None:
        """Continue from the state of a `latest.pt` (see common.checkpoint.load_resume_checkpoint);
        the caller truncates the log to `start_epoch`."""
        if state["hardened"]:
            self.harden()
        pruned = state["spec"].get("pruned")  # [] too: pruned, nothing to remove
        if pruned is not None and self.spec.pruned is None:
            self.model.cpu()
            apply_plan(self.model, pruned, self.spec.in_channels, self.spec.input_size)
            self.model.to(self.device)
            self._adopt_pruned(pruned)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.governor.restore(state.get("threads"))
        self.start_epoch = int(state["epoch"])
        self.best_acc, self.best_epoch = float(state["best_acc"]), int(state["best_epoch"])
        self.elapsed = float(state["elapsed"])

    # --- loops ------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        sampler = self.train_loader.sampler
        sampler.set_epoch(epoch)
        sums = [0.0, 0.0, 0.0]  # loss*n, correct, n
        progress = Progress(self.train_loader, len(self.train_loader),
                            f"epoch {epoch + 1}/{self.epochs}", enabled=self.dist.is_main)
        for step, (x, y) in enumerate(self.governor.watch(progress, epoch)):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            x = to_memory_format(x, self.channels_last)
            loss_v, correct, bad = self.weight_step(self.loss_and_logits, x, y)
            if bad:
                raise self.diverged(epoch, step, bad)
            n = y.shape[0]
            sums[0] += loss_v * n
            sums[1] += correct
            sums[2] += n
            progress.update(loss=sums[0] / sums[2], acc=100.0 * sums[1] / sums[2])
        loss_sum, correct, count = all_reduce_sum(sums, self.device)
        return {"train_loss": loss_sum / max(count, 1), "train_acc": 100.0 * correct / max(count, 1),
                "images": count, **self.governor.figures()}

    def loss_and_logits(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy (with label smoothing), plus the auxiliary head's, weighted."""
        logits, logits_aux = split_logits(self.net(x))
        loss = self.criterion(logits, y)
        aux_w = float(self.cfg.auxiliary_weight)
        if logits_aux is not None and aux_w > 0:
            loss = loss + aux_w * self.criterion(logits_aux, y)
        return loss, logits

    def diverged(self, epoch: int, step: int | None, what: str) -> Diverged:
        """The error that stops a diverged run (before its epoch is logged or checkpointed)."""
        return Diverged("retrain", epoch, step, what,
                        "start again with a lower optimizer.lr (--set)", self.epochs)

    def test(self) -> dict[str, float]:
        """Test figures in fp32 (no autocast, whatever runtime.amp): the precision the exports
        are evaluated in (retrain.outputs.export, retrain.evaluate), so log.jsonl's test_acc
        of the last epoch and metrics.json's agree, on any device."""
        r = evaluate(self.model, self.test_set, int(self.cfg.batch_size), self.device,
                     self.dist, amp=False, channels_last=self.channels_last,
                     workers=int(self.cfg.data.workers))
        return {"test_loss": r["loss"], "test_acc": r["top1"], "test_top5": r["top5"]}

    def step_schedule(self, train: dict[str, float]) -> None:
        """The learning rate for the next epoch; `train`: this epoch's train figures (the
        plateau schedule reads its loss, the same on every rank: it is all-reduced)."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(float(train["train_loss"]))
        else:
            self.scheduler.step()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def start_epoch_settings(self, epoch: int) -> None:
        """Reseed from (seed, epoch, rank), prune (at `prune_at`), then harden (from
        `harden_at` on) or set the DFS temperature, and the drop-path probability of `epoch`."""
        seed_everything(epoch_seed(self.cfg.seed, epoch, self.dist.rank))
        if self.prune_at is not None and epoch >= self.prune_at:
            self.prune()
        if epoch >= self.harden_at:
            self.harden()
        else:
            set_temperature(self.model, temperature_of_epoch(self.cfg, epoch, self.harden_at))
        if hasattr(self.model, "drop_path_prob"):  # the DARTS networks' drop path
            self.model.drop_path_prob = float(self.cfg.drop_path_prob) * epoch / self.epochs

    def note_test(self, test_acc: float, epoch: int, seconds: float) -> bool:
        """Count the epoch's time; True when `test_acc` is the best so far."""
        self.elapsed += seconds
        if test_acc > self.best_acc:
            self.best_acc, self.best_epoch = test_acc, epoch
            return True
        return False
