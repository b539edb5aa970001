"""What can be said on CPU about the CUDA path: the architecture step runs with TF32 off and
its foreach arithmetic equals the per-tensor loop's bit for bit; bf16 only where native;
determinism behind runtime.deterministic; DDP syncs BatchNorm statistics only, coalesced;
a resume on another device or precision is refused, and only this device's CUDA RNG state is
restored; retrain opens its data rank 0 first and evaluates in fp32; loaders keep their
workers. (tests/test_cuda.py holds the checks that need a GPU.)"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from cli_exits import one_line_exit
from test_architect import ToySearchNet, _tiny_supernet

from common import checkpoint, runtime
from common.distributed import DistInfo, broadcast_buffers, derived_buffers, wrap_ddp
from common.errors import UserError
from search.architect import Architect

pytestmark = pytest.mark.usefixtures("one_thread")

STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture
def cuda_flags():
    """Restore every global numerics flag a test changes."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) = saved[:4]
    torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])


# --- the architecture step ----------------------------------------------------------------

@pytest.mark.parametrize("order", ["first", "second"])
def test_architecture_step_runs_with_tf32_off_and_restores_it(order, cuda_flags):
    torch.manual_seed(1)
    net = ToySearchNet()
    upper = net.arch_parameters()
    lower = [p for p in net.parameters() if id(p) not in {id(q) for q in upper}]
    opt = torch.optim.SGD(lower, lr=0.1, momentum=0.9)
    seen = []

    def criterion(logits, y):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return F.cross_entropy(logits, y)

    arch = Architect(net, upper, lower, opt, order=order, criterion=criterion)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    arch.step(x, y, x, y, xi=0.01)
    assert len(seen) == (1 if order == "first" else 4)  # every forward of the step
    assert set(seen) == {(False, False)}
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32


def _per_tensor_second_order(arch: Architect, xt, yt, xv, yv, xi):
    """The second-order gradient written as a loop over tensors: per-buffer BN clones, the
    virtual step tensor by tensor, ||v|| summed tensor by tensor in float64."""
    names = {id(p): n for n, p in arch.model.named_parameters()}
    bn = {n: b for n, b in arch.model.named_buffers() if n.rsplit(".", 1)[-1] in STATS}

    def loss(lower, x, y):
        t = {names[id(p)]: v for p, v in zip(arch.lower, lower, strict=True)}
        t.update({names[id(p)]: p for p in arch.upper})
        t.update({n: b.clone() for n, b in bn.items()})
        return F.cross_entropy(torch.func.functional_call(arch.model, t, (x,)), y)

    w = [p.detach() for p in arch.lower]
    g = arch._grads(loss(arch.lower, xt, yt), arch.lower)
    w1 = []
    for p, gi in zip(w, g, strict=True):
        group = arch.w_optimizer.param_groups[0]
        step = gi + group["weight_decay"] * p
        buf = arch.w_optimizer.state.get(arch.lower[len(w1)], {}).get("momentum_buffer")
        if buf is not None:
            step = step + group["momentum"] * buf
        w1.append((p - xi * step).requires_grad_(True))
    grads = arch._grads(loss(w1, xv, yv), [*arch.upper, *w1])
    d_up, v = grads[: len(arch.upper)], grads[len(arch.upper):]
    norm = torch.sqrt(sum((t.double() ** 2).sum() for t in v)).item()
    eps = arch.fd_eps / norm
    gp = arch._grads(loss([p + eps * t for p, t in zip(w, v, strict=True)], xt, yt), arch.upper)
    gm = arch._grads(loss([p - eps * t for p, t in zip(w, v, strict=True)], xt, yt), arch.upper)
    return [d - xi * ((a - b) / (2.0 * eps)) for d, a, b in zip(d_up, gp, gm, strict=True)]


@pytest.mark.parametrize("dfs", [False, True])
def test_foreach_second_order_equals_the_per_tensor_loop_bit_for_bit(dfs):
    net, upper, lower, _, _, xs, ys = _tiny_supernet(dfs)
    net.float()
    opt = torch.optim.SGD(lower, lr=0.05, momentum=0.9, weight_decay=3e-4)
    xs = [x.float() for x in xs]
    for _ in range(2):  # momentum buffers, in float32
        opt.zero_grad()
        F.cross_entropy(net(xs[0]), ys[0]).backward()
        opt.step()
    opt.zero_grad()
    arch = Architect(net, upper, lower, opt, order="second")
    stats = {n: b.clone() for n, b in net.named_buffers() if n.rsplit(".", 1)[-1] in STATS}
    ours, _ = arch.gradient(xs[1], ys[1], xs[2], ys[2], 0.025)
    ref = _per_tensor_second_order(arch, xs[1], ys[1], xs[2], ys[2], 0.025)
    assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))
    assert any(bool(a.abs().max() > 0) for a in ours)
    live = dict(net.named_buffers())
    assert all(torch.equal(b, live[n]) for n, b in stats.items())  # the snapshot is a copy


# --- precision and determinism ------------------------------------------------------------

@pytest.mark.parametrize("native", [False, True])
def test_bf16_only_where_the_gpu_computes_it_natively(native, monkeypatch):
    # A pre-Ampere GPU: bf16 "supported" only by emulation.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native or including_emulation)
    cuda = torch.device("cuda")
    assert runtime.amp_dtype() == (torch.bfloat16 if native else torch.float16)
    assert runtime.precision(cuda, True) == ("bf16" if native else "fp16")
    assert runtime.grad_scaler(cuda, True).is_enabled() == (not native)
    assert runtime.precision(cuda, False) == "fp32"
    assert runtime.precision(torch.device("cpu"), True) == "fp32"


def test_determinism_is_a_flag_and_seeding_leaves_cudnn_alone(cuda_flags):
    runtime.set_determinism(False)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()
    runtime.seed_everything(3)
    assert torch.backends.cudnn.benchmark  # seeding no longer turns the tuning off
    runtime.set_determinism(True)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()


def test_deterministic_pooling_keeps_the_network_and_its_function():
    from genotypes import load_genotype
    from retrain.model import NetSpec, build_network

    net = build_network(NetSpec(load_genotype("DARTS_V2"), 4, 3, 10, (16, 16), auxiliary=True))
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    before, keys = net(x)[0], list(net.state_dict())
    assert runtime.deterministic_pooling(net) >= 1
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1))
                   for m in net.modules())
    assert list(net.state_dict()) == keys
    assert torch.allclose(net(x)[0], before, rtol=1e-5, atol=1e-6)


# --- DDP buffers --------------------------------------------------------------------------

@pytest.fixture
def process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _dfs_supernet():
    from genotypes import FSSpec
    from space.darts.supernet import SearchNetwork

    return SearchNetwork(C=4, num_classes=3, layers=3, fs=FSSpec(2.0, True, 4))


def test_ddp_syncs_batchnorm_statistics_only(process_group):
    net = _dfs_supernet()
    derived = derived_buffers(net)
    leaves = {n.rsplit(".", 1)[-1] for n in derived}
    assert {"_index", "_rows", "shifts", "offsets"} <= leaves and not leaves & set(STATS)
    arch = [n for n, _ in net.named_parameters() if n.startswith("alphas")]
    ddp = wrap_ddp(net, torch.device("cpu"), arch)
    synced = set(ddp.named_module_buffers)
    assert synced and all(n.rsplit(".", 1)[-1] in STATS for n in synced)
    assert synced | set(derived) == {n for n, _ in net.named_buffers()}
    assert set(arch) <= ddp.parameters_to_ignore


def test_broadcast_buffers_sends_the_statistics_in_one_call_per_dtype(process_group, monkeypatch):
    net = _dfs_supernet()
    stats = [b for n, b in net.named_buffers() if n.rsplit(".", 1)[-1] in STATS]
    derived = {n: b.clone() for n, b in net.named_buffers() if n.rsplit(".", 1)[-1] not in STATS}
    calls = []

    def rank0_values(t, src):  # what rank 0 holds: 7 everywhere
        calls.append((t.dtype, t.numel()))
        t.fill_(7)

    monkeypatch.setattr(dist, "broadcast", rank0_values)
    broadcast_buffers(net)
    assert sorted(calls, key=str) == sorted(
        [(dt, sum(b.numel() for b in stats if b.dtype == dt)) for dt in {b.dtype for b in stats}],
        key=str)
    assert len(calls) == 2  # float32 statistics and int64 counters
    assert all(bool((b == 7).all()) for b in stats)
    live = dict(net.named_buffers())
    assert all(torch.equal(b, live[n]) for n, b in derived.items())


# --- resume -------------------------------------------------------------------------------

def test_resume_on_another_device_or_precision_is_refused(tmp_path):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    checkpoint.check_resume_device({"device": "cpu", "precision": "fp32"}, tmp_path, cpu, "fp32")
    checkpoint.check_resume_device({}, tmp_path, cuda, "bf16")  # written before the record
    for saved, now in (({"device": "cpu", "precision": "fp32"}, (cuda, "bf16")),
                       ({"device": "cuda", "precision": "bf16"}, (cuda, "fp16")),
                       ({"device": "cuda", "precision": "fp16"}, (cpu, "fp32"))):
        with pytest.raises(UserError) as e:
            checkpoint.check_resume_device(saved, tmp_path, *now)
        msg = str(e.value)
        assert "\n" not in msg and saved["precision"] in msg and now[1] in msg, msg


def test_only_this_devices_cuda_rng_state_is_saved_and_restored(monkeypatch):
    states = [torch.full((4,), i, dtype=torch.uint8) for i in range(4)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": states[1])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.append(s))

    def refuse(_):
        raise RuntimeError("more states than visible GPUs")

    monkeypatch.setattr(torch.cuda, "set_rng_state_all", refuse)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    state = checkpoint.rng_state()
    assert torch.equal(state["cuda"], states[1])
    checkpoint.set_rng_state(state)
    checkpoint.set_rng_state({**state, "cuda": states})  # a list, from a 4-GPU machine
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    checkpoint.set_rng_state({**state, "cuda": states[:1]})
    assert [int(s[0]) for s in restored] == [1, 1, 0]


@pytest.mark.slow
def test_retrain_resume_on_another_device_is_one_line(tmp_path, capsys):
    from test_retrain_cli import make_folder

    from retrain.cli import main

    folder = make_folder(tmp_path / "data", per_class=4, test_per_class=2, size=8)
    out = tmp_path / "run"
    assert main(["--genotype", "DARTS_V2", "--dataset", str(folder), "--preset", "smoke",
                 "--set", "init_channels=4", "--set", "layers=2", "--set", "auxiliary=false",
                 "--batch-size", "4", "--epochs", "2", "--threads", "1", "--set",
                 "data.workers=0", "--out", str(out)]) == 0
    state = checkpoint.load_checkpoint(out / "latest.pt")
    assert (state["device"], state["precision"]) == ("cpu", "fp32")
    state["epoch"] = 1
    state.update(device="cuda", precision="bf16")
    checkpoint.save_checkpoint({k: v for k, v in state.items() if k not in ("format", "kind")},
                               out / "latest.pt", "retrain")
    capsys.readouterr()
    err = one_line_exit(main, ["--resume", str(out)], capsys)
    assert "cannot resume" in err and "cuda in bf16" in err and "cpu in fp32" in err


# --- retrain under torchrun ---------------------------------------------------------------

@pytest.mark.parametrize("rank", [0, 1])
def test_retrain_opens_its_data_rank0_first_after_joining(rank, monkeypatch, tmp_path):
    import retrain.cli as cli
    from retrain import setup

    events = []
    info = DistInfo(rank, 2, rank)

    def join(device):
        events.append("join")
        return info

    def ranked(dist_info, fn, share=False):
        assert dist_info is info
        events.append("rank0_first")
        return fn(dist_info.is_main)  # what each rank runs (after rank 0, for the others)

    def open_dataset(spec, root, download, size):
        events.append(("open", download))
        raise UserError("stop here")

    monkeypatch.setattr(cli, "init_distributed", join)
    monkeypatch.setattr(cli, "cleanup", lambda: events.append("cleanup"))
    monkeypatch.setattr(setup, "rank0_first", ranked)
    monkeypatch.setattr(setup, "open_dataset", open_dataset)
    with pytest.raises(SystemExit):
        cli.main(["--genotype", "DARTS_V2", "--dataset", str(tmp_path), "--out",
                  str(tmp_path / "run")])
    assert events == ["join", "rank0_first", ("open", rank == 0), "cleanup"]


def test_retrain_test_figures_are_fp32_like_the_exports(monkeypatch):
    import retrain.trainer as rt

    seen = {}
    monkeypatch.setattr(rt, "evaluate", lambda *a, **k: seen.update(k) or
                        {"loss": 1.0, "top1": 50.0, "top5": 90.0})
    fake = SimpleNamespace(model=None, test_set=None, device=torch.device("cuda"), amp=True,
                           dist=DistInfo(), channels_last=True,
                           cfg=SimpleNamespace(batch_size=8, data=SimpleNamespace(workers=3)))
    assert rt.Trainer.test(fake)["test_acc"] == 50.0
    assert seen["amp"] is False and seen["workers"] == 3


# --- loaders ------------------------------------------------------------------------------

def test_loaders_keep_their_workers_and_their_batches():
    from torch.utils.data import TensorDataset

    from common.loader import CyclingLoader, make_loader

    ds = TensorDataset(torch.arange(24.0))
    one = DistInfo()
    assert not make_loader(ds, 4, one, shuffle=True, seed=0).persistent_workers
    kept = make_loader(ds, 4, one, shuffle=True, seed=0, workers=1)
    assert kept.persistent_workers
    plain = CyclingLoader(make_loader(ds, 4, one, shuffle=True, seed=0))
    cyc = CyclingLoader(kept)
    for _ in range(15):  # two and a half passes: the workers are reused across passes
        assert torch.equal(next(plain)[0], next(cyc)[0])
    assert math.isclose(cyc.passes, 2)
