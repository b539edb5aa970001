"""Every config key of both pipelines: type, default, allowed values, help, and whether
`--resume` may change it. The defaults are the paper preset (common/presets/paper.yaml is
generated from here, as is docs/configuration.md: `python -m common.config_docs --write`).

Adding a key: declare it here with `key(...)`, read it where it is used (`cfg.section.name`),
and run the command above; presets, `--set`, the checks, `--resume` and the docs follow. A key
only one search algorithm reads is declared beside that algorithm (search/algorithms/), which
joins it to the `search` section (search.settings).
"""

from __future__ import annotations

from dataclasses import dataclass

from common import checks
from common.schema import key, section


@dataclass
class SearchTemperature:
    """The DFS offsets' softmax temperature over the search."""

    start: float = key(1.0, "at the first epoch", lo=0.0, lo_open=True)
    end: float = key(1.0, "at the last epoch", lo=0.0, lo_open=True)
    schedule: str = key("cosine", "from start to end", choices=("constant", "linear", "cosine"))


@dataclass
class SearchFs:
    """The FS/DFS 1x1 convolutions of the search network."""

    mode: str = key("dfs", "off (plain DARTS) | fs (fixed offsets) | dfs (learned offsets)",
                    choices=("off", "fs", "dfs"))
    ratio: float = key(2.0, "the ratio of every 1x1 conv; with `ratios`, of the cell "
                       "preprocessing only", check=checks.fs_ratio)
    ratios: list[float] | None = key(None, "e.g. [1, 2, 4, 8]: each op's ratio is searched "
                                     "among these (nested summaries)", check=checks.fs_ratios)
    num_offsets: int = key(4, "offsets (M) each FS layer chooses among", lo=1)
    offsets_with: str = key("arch", "arch: offset logits in the upper level | weights: lower "
                            "level", choices=("arch", "weights"))
    offset_lr_scale: float = key(1.0, "offsets_with arch: offset logits at this x arch.lr, no "
                                 "decay (1: DFSNet recipe)", lo=0.0, lo_open=True)
    temperature: SearchTemperature = section(SearchTemperature)


@dataclass
class Weights:
    """The network weights' SGD (cosine learning rate from lr to lr_min)."""

    lr: float = key(0.025, "learning rate", lo=0.0)
    lr_min: float = key(0.001, "learning rate at the last epoch", lo=0.0)
    momentum: float = key(0.9, "SGD momentum", lo=0.0)
    weight_decay: float = key(3.0e-4, "SGD weight decay", lo=0.0)
    grad_clip: float = key(5.0, "gradient norm clip", lo=0.0, lo_open=True)


@dataclass
class Arch:
    """The architecture parameters' Adam and the derivation of the genotype."""

    order: str = key("first", "first | second (unrolled, finite-difference Hessian)",
                     choices=("first", "second"))
    lr: float = key(3.0e-4, "Adam learning rate of the alphas", lo=0.0)
    betas: list[float] = key([0.5, 0.999], "Adam betas", check=checks.adam_betas)
    weight_decay: float = key(1.0e-3, "Adam weight decay", lo=0.0)
    warmup_epochs: int = key(0, "epochs of weight-only training before alphas move", lo=0)
    augment: bool = key(True, "the architecture steps' batches get the training augmentation "
                        "(DARTS); false: the evaluation transform, the images as tested")
    fd_eps: float = key(0.01, "second order: finite-difference step is fd_eps / ||dL_val/dw'||",
                        lo=0.0, lo_open=True)
    ratio_lr: float | None = key(None, "Adam learning rate of the ratio logits; null: 10 x "
                                 "arch.lr", lo=0.0, lo_open=True)
    beta_decay: float | None = key(None, "beta-DARTS weight on mean_e logsumexp(alpha_e), ramped "
                                   "0 -> it; null: 1.0 with a budget, else off", lo=0.0)
    max_skip: int | None = key(None, "at most this many skip_connect edges per derived cell; "
                               "null: 2 with a budget, else no cap", lo=0)
    max_free: int | None = key(None, "at most this many parameter-free ops (skips, pools) per "
                               "derived cell; null: 2 with a budget, else no cap", lo=0)


@dataclass
class Budget:
    """The parameter budget of the derived network (search.penalty)."""

    params: int | None = key(None, "e.g. 1.5M, 800k, 1200000: effective parameters of the "
                             "retrain network below", check=checks.param_count)
    init_channels: int = key(36, "the network the budget counts: the paper preset's retrain "
                             "width ...", lo=1, check=checks.even_budget_width)
    layers: int = key(20, "... and depth, whatever the search's own width", lo=1)
    mode: str = key("hinge", "hinge: penalise only above the budget | target: penalise both "
                    "sides", choices=("hinge", "target"))
    weight: float = key(1.0, "penalty = weight * max(0, E[P]/(aim*budget) - 1)  (target: "
                        "|E[P]/(aim*budget) - 1|)", lo=0.0)
    aim: float = key(1.0, "the relaxed network is pushed to aim x budget (e.g. 0.95: it ends "
                     "inside, not on, the budget)", lo=0.0, hi=1.0, lo_open=True)
    warmup_epochs: int = key(0, "the weight ramps linearly from 0 over these architecture "
                             "epochs", lo=0)
    acts_on: str = key("all", "all: the penalty moves the op weights and the ratios | ratios: "
                       "only each op's ratio (the op choice is left to the loss; needs fs.ratios)",
                       choices=("all", "ratios"))
    rule: str = key("width", "how the size is met: width (FS ratios up to max_ratio; where they "
                    "cannot reach it, the network narrowed: the compression study, "
                    "docs/results.md) | ratios (FS ratios alone, up to the largest candidate)",
                    choices=("width", "ratios"))
    max_ratio: float = key(2.0, "width rule: the largest FS ratio a budget searches when the "
                           "ratios are not given (candidates 1, 2, 4, 8 up to it); beyond, the "
                           "network is narrowed instead", lo=2.0)


@dataclass
class Data:
    """Where the dataset is and how much of it is read."""

    root: str = key("data", "where cifar10/100 and imagenet live (--data-root)", resumable=True)
    download: bool = key(True, "download a named dataset that is missing", resumable=True)
    input_size: int | None = key(None, "resize images to this size; null: the dataset's own "
                                 "size", lo=8)
    max_images: int | None = key(None, "cap the training images (class-stratified; search: "
                                 "before the halves); null: all", lo=1)
    workers: int | None = key(None, "DataLoader workers; null: 0 on CPU below 128 px, 1 above; "
                              "2 (8 above 128 px) on CUDA", lo=0, resumable=True)


@dataclass
class RetrainData(Data):
    """Data, and the test images' cap."""

    max_test_images: int | None = key(None, "cap the test images (class-stratified); null: all",
                                      lo=1)


@dataclass
class Runtime:
    """Where and how a run computes."""

    device: str = key("auto", "auto | cpu | cuda | cuda:N", resumable=True)
    amp: bool = key(True, "torch.amp autocast on CUDA (ignored on CPU)")
    threads: int | None = key(None, "torch CPU threads; null: the cores left after the workers "
                              "(--threads 1 on a busy machine)", lo=1, resumable=True)
    adapt_threads: bool = key(True, "fewer threads while other processes take the cores "
                              "mid-run, back when they leave (common.threads)", resumable=True)
    channels_last: bool = key(True, "NHWC weights and input batches, on CPU and CUDA "
                              "(common.runtime.channels_last)")
    deterministic: bool = key(False, "CUDA: deterministic kernels, no cuDNN tuning (slower; "
                              "docs/gpu.md)")


@dataclass
class SearchRuntime(Runtime):
    """Runtime, and the search's drawings and plots."""

    draw_every: int = key(1, "draw the cells every N epochs (0: only at the end)", lo=0,
                          resumable=True)
    plot: bool = key(True, "plots/ from log.jsonl at the end (alphas, curves, entropy)",
                     resumable=True)


@dataclass
class Log:
    """What a run logs besides log.jsonl."""

    tensorboard: bool = key(False, "event files in RUN_DIR/tensorboard (--tensorboard): off, as "
                            "it costs a figure per epoch", resumable=True)


@dataclass
class SearchBase:
    """The `search` section's keys every algorithm reads: the DARTS defaults (Liu et al.,
    2019) with FS/DFS 1x1 convs. search.settings.SearchConfig joins each algorithm's own keys
    (declared beside it in search/algorithms/) after `algorithm` and registers the result as
    SECTIONS["search"]."""

    algorithm: str = key("darts", "a name in search.algorithms' registry: darts, pc-darts "
                         "(partial channels, edge normalisation), gdas (Gumbel, one op per "
                         "edge), ... (checked against the registry)")
    seed: int = key(2, "seed of the weights, the split and the batches", lo=0)
    epochs: int = key(50, "search epochs", lo=1)
    batch_size: int = key(64, "batch size (per process under torchrun)", lo=1)
    train_portion: float = key(0.5, "the training set's share for weights, the rest for the "
                               "architecture", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    init_channels: int = key(16, "channels of the first cell (even)", lo=2,
                             check=checks.even_width)
    layers: int = key(8, "cells", lo=1)
    fs: SearchFs = section(SearchFs)
    weights: Weights = section(Weights)
    arch: Arch = section(Arch)
    budget: Budget = section(Budget)
    data: Data = section(Data)
    runtime: SearchRuntime = section(SearchRuntime)
    log: Log = section(Log)


@dataclass
class RetrainTemperature:
    """The DFS softmax temperature, geometric over the epochs before hardening."""

    start: float = key(1.0, "at the first epoch", lo=0.0, lo_open=True)
    end: float = key(0.1, "at hardening (paper: 1 -> 1)", lo=0.0, lo_open=True)


@dataclass
class RetrainFs:
    """The FS/DFS 1x1 convolutions of the retrained network."""

    mode: str = key("dfs", "dfs (learned offsets, then hardened) | fs (fixed) | off (plain "
                    "network) | genotype (the genotype's own) | fs3d (3D FS; --model networks)",
                    choices=("off", "fs", "dfs", "genotype", "fs3d"))
    ratio: float | None = key(None, "null: the genotype's ratio and per-op ratios (2.0 when it "
                              "has none); a number: that ratio everywhere", check=checks.fs_ratio)
    num_offsets: int | None = key(None, "null: the genotype's M (4 when it has none)", lo=1)
    policy: str = key("ratio", "--model networks: ratio (every conv at fs.ratio) | paper (3D FS: "
                      "the FSNet paper's K3 per filter count, 1x1 convs at 8)",
                      choices=("ratio", "paper"))
    params: int | None = key(None, "--model networks, fs/dfs: fit one ratio so the network has at "
                             "most this many effective parameters (e.g. 70k, 0.7M)",
                             check=checks.param_count)
    max_ratio: float | None = key(None, "with fs.params: the largest ratio the fit may take; where "
                                  "more is needed, model.width is narrowed to the widest width "
                                  "where this ratio fits (space/models/width_fit.py); null: one "
                                  "ratio at the network's width, however large", lo=1.0)
    harden_epoch: int | None = key(None, "DFS offsets become fixed at the start of this epoch; "
                                   "null: half of training", lo=0)
    temperature: RetrainTemperature = section(RetrainTemperature)
    grad_reduce: str = key("mean", "mean (the paper's: an FS element gets the mean of its reads' "
                           "gradients) | sum (autograd's sum)", choices=("mean", "sum"))
    offset_lr_scale: float = key(100.0, "DFS offset logits learn at this x optimizer.lr (SGD, no "
                                 "weight decay; paper: 1)", lo=0.0, lo_open=True)


@dataclass
class Model:
    """A registered network (`python -m retrain --model list`) instead of a genotype's."""

    name: str | None = key(None, "a registered network (--model; e.g. resnet20, resnet18, vgg16, "
                           "tv:mobilenet_v2); null: the DARTS network of --genotype")
    width: int | None = key(None, "channels of the first stage (CIFAR ResNets 16, ResNet-18..101 "
                            "64); null: the network's own", lo=1)
    shortcut: str | None = key(None, "CIFAR ResNet-(6n+2): A (zero-padding) or B (1x1 projection); "
                               "null: A", check=checks.shortcut)
    growth: int | None = key(None, "DenseNets: growth rate k; null: the network's own", lo=1)
    compression: float | None = key(None, "DenseNet-100: the transitions' channel factor (0.5: "
                                    "DenseNet-BC; 1: the FSNet papers'); null: 0.5", lo=0.0,
                                    hi=1.0, lo_open=True)
    blocks: int | None = key(None, "ShaRDNet's e-resnet / sl-resnet: basic blocks per scale b "
                             "(the paper's 3, 5, 7); null: 3", lo=1)
    layers_per_block: int | None = key(None, "ShaRDNet's VGGs: conv3 applications per block l "
                                       "(SLl-VGGNet: 2 or 3); null: VGG-16's 2, 2, 3, 3, 3", lo=1)


@dataclass
class Prune:
    """Structural channel pruning of a plain --model network with Torch-Pruning, once during
    training (space.layers.channel_prune): train, prune, fine-tune."""

    params: int | None = key(None, "prune to at most this many parameters (e.g. 70k); null: no "
                             "pruning", check=checks.param_count)
    at: float = key(0.5, "prune after this fraction of the epochs; the rest fine-tunes (with "
                    "optimizer.cycles 2 on a fresh schedule)", lo=0.0, hi=1.0, lo_open=True,
                    hi_open=True)
    norm: int = key(1, "a channel group's importance: the L1 (1) or L2 (2) norm of its weights",
                    lo=1, hi=2)
    global_ranking: bool = key(True, "rank channel groups across the whole network (false: "
                               "prune each layer by the same fraction)")


@dataclass
class Optimizer:
    """The retrain's SGD."""

    lr: float = key(0.025, "learning rate", lo=0.0)
    lr_min: float = key(0.0, "cosine: learning rate at the last epoch", lo=0.0)
    momentum: float = key(0.9, "SGD momentum", lo=0.0)
    weight_decay: float = key(3.0e-4, "SGD weight decay", lo=0.0)
    grad_clip: float | None = key(5.0, "gradient norm clip; 0 or null: none", lo=0.0)
    schedule: str = key("cosine", "cosine | step (multiply by `decay` every epoch) | multistep "
                        "(multiply by `gamma` at each of `milestones`) | plateau (multiply by "
                        "`gamma` when the training loss has not improved for `patience` epochs)",
                        choices=("cosine", "step", "multistep", "plateau"))
    decay: float = key(0.97, "step: the factor per epoch", lo=0.0, lo_open=True)
    milestones: list = key([0.5, 0.75], "multistep: where in each cycle (fractions of its epochs) "
                           "the learning rate is multiplied by `gamma`",
                           check=checks.cycle_fractions)
    gamma: float = key(0.1, "multistep: the factor at each milestone; plateau: the factor at "
                       "each plateau (ShaRDNet's halving: 0.5)", lo=0.0, hi=1.0, lo_open=True,
                       hi_open=True)
    patience: int = key(10, "plateau: epochs without a new lowest training loss (by a relative "
                        "1e-4) before the learning rate is multiplied by `gamma`", lo=0)
    cycles: int = key(1, "multistep: the schedule repeated this many times over the epochs, each "
                      "restarting at `lr` (FSNet's cyclical schedule: 4)", lo=1)


@dataclass
class Export:
    """What a retrain exports besides model.pt."""

    onnx: bool = key(True, "also write model.onnx (float) at the end, evaluated in onnxruntime")


IMAGENET = {"epochs": 250, "batch_size": 128, "init_channels": 48, "layers": 14,
            "label_smoothing": 0.1, "cutout": 0, "drop_path_prob": 0.0,
            "optimizer": {"lr": 0.1, "weight_decay": 3.0e-5, "schedule": "step", "decay": 0.97}}


@dataclass
class RetrainConfig:
    """The `retrain` section: DARTS's CIFAR evaluation, and its ImageNet one in `imagenet`."""

    seed: int = key(0, "seed of the initial weights, the data order and augmentation", lo=0)
    epochs: int = key(600, "training epochs", lo=1)
    batch_size: int = key(96, "batch size (per process under torchrun)", lo=1)
    init_channels: int = key(36, "channels of the first cell (even)", lo=2,
                             check=checks.even_width)
    layers: int = key(20, "cells", lo=1)
    stem: str = key("auto", "auto: CIFAR stem below 128 px, ImageNet stems from 128 px | cifar "
                    "| imagenet", choices=("auto", "cifar", "imagenet"))
    auxiliary: bool = key(True, "auxiliary head")
    auxiliary_weight: float = key(0.4, "the auxiliary head's loss weight", lo=0.0)
    drop_path_prob: float = key(0.2, "ramped linearly from 0 over training", lo=0.0, hi=1.0,
                                hi_open=True)
    cutout: int | None = key(16, "cutout square size; 0 or null: none", lo=0)
    label_smoothing: float = key(0.0, "cross-entropy label smoothing", lo=0.0, hi=1.0,
                                 hi_open=True)
    model: Model = section(Model)
    fs: RetrainFs = section(RetrainFs)
    prune: Prune = section(Prune)
    optimizer: Optimizer = section(Optimizer)
    imagenet: dict | None = key(IMAGENET, "keys of this section applied when the network gets "
                                "the ImageNet stems (then --set wins); null once applied",
                                overlay=True)
    data: RetrainData = section(RetrainData)
    runtime: Runtime = section(Runtime)
    log: Log = section(Log)
    export: Export = section(Export)


#: The schema of each config section. "search" is SearchBase until search.settings registers
#: the schema with the algorithms' keys joined (importing search.settings does).
SECTIONS: dict[str, type] = {"search": SearchBase, "retrain": RetrainConfig}
