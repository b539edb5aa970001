"""The architecture step: first order, the second-order finite-difference gradient against the
exact double-backprop one, no side effects on the weights, and DDP gradient averaging."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from search.architect import Architect


class ToySearchNet(nn.Module):
    """A tiny smooth stand-in for SearchNetwork: a softmax(alpha)-weighted mix of candidate
    ops (tanh so that second derivatives are smooth), a DFS-like offset logit, a BatchNorm."""

    def __init__(self, d_in: int = 5, hidden: int = 6, classes: int = 3, n_ops: int = 4) -> None:
        super().__init__()
        self.ops = nn.ModuleList(nn.Linear(d_in, hidden) for _ in range(n_ops))
        self.bn = nn.BatchNorm1d(hidden, affine=False)
        self.head = nn.Linear(hidden, classes)
        self.alphas_normal = nn.Parameter(0.5 * torch.randn(2, n_ops))
        self.alphas_reduce = nn.Parameter(0.5 * torch.randn(2, n_ops))
        self.offset_logits = nn.Parameter(0.5 * torch.randn(hidden))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def offset_parameters(self) -> list[nn.Parameter]:
        return [self.offset_logits]

    def weight_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.arch_parameters() + self.offset_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = 0
        for k, alphas in enumerate((self.alphas_normal, self.alphas_reduce)):
            w = F.softmax(alphas[k % 2], dim=-1)
            h = h + sum(wi * torch.tanh(op(x)) for wi, op in zip(w, self.ops, strict=True))
        h = self.bn(h) * torch.sigmoid(self.offset_logits)
        return self.head(torch.tanh(h))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest)


def _setup(order: str, offsets_with: str = "arch", dtype=torch.float64, momentum_steps: int = 2):
    torch.manual_seed(1)
    net = ToySearchNet().to(dtype)
    upper = net.arch_parameters() + (net.offset_parameters() if offsets_with == "arch" else [])
    lower = [p for p in net.parameters() if id(p) not in {id(q) for q in upper}]
    opt = torch.optim.SGD(lower, lr=0.1, momentum=0.9, weight_decay=3e-4)
    xs = [torch.randn(8, 5, dtype=dtype) for _ in range(4)]
    ys = [torch.randint(0, 3, (8,)) for _ in range(4)]
    for _ in range(momentum_steps):  # fill the momentum buffers, as mid-search
        opt.zero_grad()
        F.cross_entropy(net(xs[0]), ys[0]).backward()
        opt.step()
    opt.zero_grad()
    arch = Architect(net, upper, lower, opt, order=order)
    return net, upper, lower, opt, arch, xs, ys


def _exact_second_order(net, upper, lower, opt, xt, yt, xv, yv, xi):
    """d/dalpha L_val(w - xi*(grad_w L_train(w, alpha) + m*buf + wd*w), alpha), by double backprop."""
    names = dict((id(p), n) for n, p in net.named_parameters())
    buffers = {n: b.clone() for n, b in net.named_buffers()}

    def loss(lw, x, y):
        t = {names[id(p)]: v for p, v in zip(lower, lw, strict=True)}
        t.update({names[id(p)]: p for p in upper})
        t.update({n: b.clone() for n, b in buffers.items()})
        return F.cross_entropy(torch.func.functional_call(net, t, (x,)), y)

    g = torch.autograd.grad(loss(lower, xt, yt), lower, create_graph=True)
    w_prime = []
    for p, gi in zip(lower, g, strict=True):
        group = opt.param_groups[0]
        buf = opt.state[p]["momentum_buffer"]
        w_prime.append(p - xi * (gi + group["momentum"] * buf + group["weight_decay"] * p))
    return torch.autograd.grad(loss(w_prime, xv, yv), upper)


def _rel(a, b):
    a = torch.cat([t.flatten() for t in a])
    b = torch.cat([t.flatten() for t in b])
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("offsets_with", ["arch", "weights"])
def test_second_order_matches_exact_double_backprop(offsets_with):
    net, upper, lower, opt, arch, xs, ys = _setup("second", offsets_with)
    xi = 0.05
    fd, _ = arch.gradient(xs[1], ys[1], xs[2], ys[2], xi)
    exact = _exact_second_order(net, upper, lower, opt, xs[1], ys[1], xs[2], ys[2], xi)
    assert _rel(fd, exact) < 1e-3
    # The implicit (Hessian) term really matters here, so the comparison has teeth: dropping
    # it, or scaling the difference by eps instead of dividing, is far off.
    first = torch.autograd.grad(
        F.cross_entropy(torch.func.functional_call(
            net, {n: p for n, p in net.named_parameters()}
            | {n: b.clone() for n, b in net.named_buffers()}, (xs[2],)), ys[2]), upper)
    assert _rel(first, exact) > 1e-2


def test_hessian_divides_by_two_eps():
    net, upper, lower, opt, arch, xs, ys = _setup("second")
    v = [torch.randn_like(p) for p in lower]
    hvp = arch.hessian_vector_product(v, xs[0], ys[0])
    # Exact mixed second derivative d/dalpha (dL/dw . v) by double backprop.
    g = torch.autograd.grad(F.cross_entropy(net(xs[0]), ys[0]), lower, create_graph=True)
    dot = sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True))
    exact = torch.autograd.grad(dot, upper)
    assert _rel(hvp, exact) < 1e-4


def test_second_order_with_zero_xi_is_first_order():
    net, upper, lower, opt, arch, xs, ys = _setup("second")
    second, _ = arch.gradient(xs[1], ys[1], xs[2], ys[2], 0.0)
    arch.order = "first"
    first, _ = arch.gradient(xs[1], ys[1], xs[2], ys[2], 0.0)
    assert _rel(second, first) < 1e-12


@pytest.mark.parametrize("order", ["first", "second"])
def test_step_changes_only_upper_parameters(order):
    net, upper, lower, opt, arch, xs, ys = _setup(order, dtype=torch.float32)
    before = {n: t.detach().clone() for n, t in net.state_dict().items()}
    bufs = {id(p): opt.state[p]["momentum_buffer"].clone() for p in lower}
    arch.step(xs[1], ys[1], xs[2], ys[2], xi=0.025)
    after = net.state_dict()
    upper_names = set(arch.upper_names)
    for n, t in before.items():
        moved = not torch.equal(t, after[n])
        assert moved == (n in upper_names), n  # alphas move; weights, BN stats do not
    assert all(p.grad is None for p in lower), "the weights' gradients must stay untouched"
    assert all(p.grad is None for p in upper)
    assert all(torch.equal(bufs[id(p)], opt.state[p]["momentum_buffer"]) for p in lower)


def test_first_order_gradient_is_plain_validation_gradient():
    net, upper, lower, opt, arch, xs, ys = _setup("first")
    g, loss = arch.gradient(xs[1], ys[1], xs[2], ys[2], xi=0.1)
    ref_loss = F.cross_entropy(torch.func.functional_call(
        net, {n: b.clone() for n, b in net.named_buffers()}, (xs[2],), strict=False), ys[2])
    ref = torch.autograd.grad(ref_loss, upper)
    assert torch.allclose(loss, ref_loss.detach())
    assert _rel(g, ref) < 1e-12


def test_adam_hyperparameters_and_state_round_trip():
    net, upper, lower, opt, arch, xs, ys = _setup("first", dtype=torch.float32)
    group = arch.optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.5, 0.999), 1e-3)
    arch.step(xs[1], ys[1], xs[2], ys[2], xi=0.025)
    state = arch.state_dict()
    net2, upper2, lower2, opt2, arch2, *_ = _setup("first", dtype=torch.float32)
    arch2.load_state_dict(state)
    assert arch2.optimizer.state_dict()["state"][0]["step"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    net, upper, lower, opt, arch, xs, ys = _setup("first", dtype=torch.float32)
    arch.distributed = True
    # Each rank sees its own validation batch; the averaged gradient is what both must apply.
    own, _ = arch.gradient(xs[1], ys[1], xs[2 + rank], ys[2 + rank], xi=0.025)
    arch.step(xs[1], ys[1], xs[2 + rank], ys[2 + rank], xi=0.025)
    # numpy copies: torch tensors would travel as shared-memory handles that die with the child.
    queue.put((rank, [g.numpy().copy() for g in own], [p.detach().numpy().copy() for p in upper]))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_architecture_gradients_are_averaged():
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        r, g, a = queue.get(timeout=120)
        results[r] = ([torch.from_numpy(x) for x in g], [torch.from_numpy(x) for x in a])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (g0, a0), (g1, a1) = results[0], results[1]
    assert not all(torch.equal(x, y) for x, y in zip(g0, g1, strict=True))  # batches differ
    assert all(torch.equal(x, y) for x, y in zip(a0, a1, strict=True))  # identical alphas
    # And the update is the one from the mean gradient (a fresh single-process Adam step).
    net, upper, lower, opt, arch, *_ = _setup("first", dtype=torch.float32)
    for p, x, y in zip(upper, g0, g1, strict=True):
        p.grad = (x + y) / 2
    arch.optimizer.step()
    assert all(torch.allclose(p.detach(), a, atol=1e-7) for p, a in zip(upper, a0, strict=True))


@pytest.mark.parametrize("mode, offsets_with", [("dfs", "arch"), ("dfs", "weights"), ("fs", "arch"),
                                                ("off", "arch")])
def test_trainer_splits_upper_and_lower_levels(mode, offsets_with):
    from common.config import resolve_config
    from common.data import DatasetInfo
    from common.distributed import DistInfo
    from search.data import SearchData
    from search.resolve import resolve_search
    from search.trainer import SearchTrainer
    from space.layers.fs_model import offset_parameters

    cfg = resolve_config("search", "smoke", [f"fs.mode={mode}", f"fs.offsets_with={offsets_with}",
                                             "init_channels=4"])
    info = DatasetInfo("toy", 10, (16, 16), (0.5,) * 3, (0.25,) * 3)
    t = SearchTrainer(resolve_search(cfg, info), SearchData(info, None, None, None, 0, 0),
                      torch.device("cpu"), DistInfo())
    offsets = {id(p) for p in offset_parameters(t.net)}
    assert bool(offsets) == (mode == "dfs")
    upper = {id(p) for p in t.upper}
    want = {id(p) for p in t.net.arch_parameters()} | (offsets if offsets_with == "arch" else set())
    assert upper == want
    lower = {id(p) for p in t.lower}
    assert lower.isdisjoint(upper) and lower | upper == {id(p) for p in t.net.parameters()}
    assert {id(p) for g in t.w_optimizer.param_groups for p in g["params"]} == lower
    assert {id(p) for g in t.architect.optimizer.param_groups for p in g["params"]} == upper
    sgd = t.w_optimizer.param_groups[0]
    assert (sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == (0.05, 0.9, 3e-4)  # smoke lr
    assert t.scheduler.T_max == cfg.epochs and t.scheduler.eta_min == 0.001


def _tiny_supernet(dfs: bool, grad_reduce: str = "mean"):
    from genotypes import FSSpec
    from space.darts.supernet import SearchNetwork
    from space.layers.fs_model import fs_layers

    torch.manual_seed(0)
    net = SearchNetwork(C=2, num_classes=3, layers=3, fs=FSSpec(2.0, True, 4) if dfs else None)
    net = net.double()
    for _, m in fs_layers(net):
        m.grad_reduce = grad_reduce
        m._rebuild_index()
    with torch.no_grad():
        for p in net.arch_parameters() + net.offset_parameters():
            p.normal_(0, 0.5)
    upper = net.arch_parameters() + net.offset_parameters()
    lower = [p for p in net.parameters() if id(p) not in {id(q) for q in upper}]
    opt = torch.optim.SGD(lower, lr=0.05, momentum=0.9, weight_decay=3e-4)
    xs = [torch.randn(4, 3, 8, 8, dtype=torch.float64) for _ in range(3)]
    ys = [torch.randint(0, 3, (4,)) for _ in range(3)]
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(net(xs[0]), ys[0]).backward()
        opt.step()
    opt.zero_grad()
    # A ReLU network is only piecewise smooth: at this toy size the loss is rough at the 1e-5
    # scale, so the difference step is smaller than DARTS's and xi is small.
    return net, upper, lower, opt, Architect(net, upper, lower, opt, order="second", fd_eps=1e-7), xs, ys


@pytest.mark.parametrize("dfs", [False, True])
def test_second_order_on_the_real_supernet(dfs):
    """The double-backprop check through SearchNetwork (functional_call over its fast path,
    FS/DFS layers, BatchNorm), comparing the implicit (Hessian) term on its own. FS layers
    use plain autograd gradients here (grad_reduce="sum"); see the next test for the default."""
    net, upper, lower, opt, arch, xs, ys = _tiny_supernet(dfs, grad_reduce="sum")
    xi = 1e-3
    fd, _ = arch.gradient(xs[1], ys[1], xs[2], ys[2], xi)
    exact = _exact_second_order(net, upper, lower, opt, xs[1], ys[1], xs[2], ys[2], xi)
    direct = arch._grads(arch._loss(arch.unrolled_weights(xs[1], ys[1], xi), upper, xs[2], ys[2]), upper)
    implicit_fd = [a - b for a, b in zip(fd, direct, strict=True)]
    implicit_exact = [a - b for a, b in zip(exact, direct, strict=True)]
    assert _rel(implicit_fd, implicit_exact) < 1e-4


def test_second_order_with_fs_mean_gradients_is_the_true_derivative():
    """FS layers' default mean-gradient rule is a straight-through preconditioner P: autograd
    returns P*grad, not the gradient. Double backprop through the unrolled step then applies
    P twice, so it is not the derivative of the unrolled objective; the finite difference
    perturbs the weights in the forward pass and is. Checked against a central difference of
    alpha -> L_val(w - xi*(P*grad_w L_train(w, alpha) + ...), alpha) along a random direction."""
    net, upper, lower, opt, arch, xs, ys = _tiny_supernet(True)
    xi, h = 1e-3, 1e-6
    fd, _ = arch.gradient(xs[1], ys[1], xs[2], ys[2], xi)
    d = [torch.randn_like(p) for p in upper]

    def objective(sign: float) -> float:
        live = [p.detach().clone() for p in upper]
        with torch.no_grad():
            for p, di in zip(upper, d, strict=True):
                p.add_(sign * h * di)
        value = arch._loss(arch.unrolled_weights(xs[1], ys[1], xi), upper, xs[2], ys[2]).item()
        with torch.no_grad():
            for p, v in zip(upper, live, strict=True):
                p.copy_(v)
        return value

    numeric = (objective(1.0) - objective(-1.0)) / (2 * h)
    along = sum((g * di).sum() for g, di in zip(fd, d, strict=True)).item()
    assert abs(along - numeric) < 1e-3 * abs(numeric)
    exact = _exact_second_order(net, upper, lower, opt, xs[1], ys[1], xs[2], ys[2], xi)
    along_exact = sum((g * di).sum() for g, di in zip(exact, d, strict=True)).item()
    assert abs(along_exact - numeric) > 10 * abs(along - numeric)  # double backprop is off
