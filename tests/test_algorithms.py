"""PC-DARTS and GDAS beside DARTS: each supernet and architecture gradient against an
independent float64 computation of the published formulation (partial channels, shuffle and
edge normalisation; Gumbel hard sampling with the noise fixed), their derivation rules, the
budget's E[P] under edge weights, and both CLIs' runs, records and resume."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from cli_exits import one_line_exit
from image_folders import make_image_folder

from common.checkpoint import load_checkpoint
from genotypes import PRIMITIVES, FSSpec, load_genotype
from search.algorithms import ALGORITHMS, make_algorithm
from search.algorithms.gdas import Gdas
from search.cli import main
from search.settings import SearchConfig
from search.trainer import SearchTrainer
from space.darts.budget import BudgetModel
from space.darts.ops import forward_reference
from space.darts.supernet import SearchNetwork

DFS = FSSpec(2.0, True, 4)
TINY = ["--preset", "smoke", "--set", "init_channels=8", "--set", "layers=5", "--batch-size", "8",
        "--threads", "1", "--set", "runtime.draw_every=0", "--set", "runtime.plot=false"]


def _net(algo: str, fs: FSSpec | None = None, C: int = 8, layers: int = 5) -> SearchNetwork:
    torch.manual_seed(0)
    cfg = SearchConfig(algorithm=algo)
    a = make_algorithm(cfg)
    net = SearchNetwork(C=C, num_classes=10, layers=layers, fs=fs, **a.network_options())
    a.attach(net)
    with torch.no_grad():  # away from uniform, so that a wrong weighting shows
        for p in net.arch_parameters():
            p.normal_(0.0, 1.0)
    return net.double()


def _shuffle_by_index(z: torch.Tensor, k: int) -> torch.Tensor:
    """Output channel i*k + g is input channel g*n + i, by an explicit index list."""
    n = z.shape[1] // k
    return z[:, [g * n + i for i in range(n) for g in range(k)]]


def _node_softmax_loop(betas: torch.Tensor) -> torch.Tensor:
    parts, start = [], 0
    for node in range(4):
        parts.append(torch.softmax(betas[start:start + 2 + node], 0))
        start += 2 + node
    return torch.cat(parts)


def _reference_forward(net: SearchNetwork, x: torch.Tensor, edge) -> torch.Tensor:
    """The network by the published formulation, op by op: `edge(cell, e, h, reduction)`
    gives an edge's output; nodes sum their edges (times the edge weight where given)."""
    s0 = s1 = net.stem(x)
    for cell in net.cells:
        states = [forward_reference(cell.preprocess0, s0), forward_reference(cell.preprocess1, s1)]
        off = 0
        for _ in range(4):
            s = 0
            for j, h in enumerate(states):
                s = s + edge(cell, off + j, h, cell.reduction)
            off += len(states)
            states.append(s)
        s0, s1 = s1, torch.cat(states[-4:], dim=1)
    return net.classifier(net.global_pooling(s1).flatten(1))


def _pc_edge(net: SearchNetwork, k: int):
    def edge(cell, e, h, reduction):
        w = torch.softmax(net.alphas_reduce if reduction else net.alphas_normal, -1)[e]
        beta = _node_softmax_loop(net.betas_reduce if reduction else net.betas_normal)[e]
        c = h.shape[1]
        xa, xb = h[:, : c // k], h[:, c // k:]
        t = sum(w[o] * forward_reference(op, xa) for o, op in enumerate(cell._ops[e]._ops))
        if t.shape[2] != h.shape[2]:
            xb = F.max_pool2d(xb, 2, 2)
        return beta * _shuffle_by_index(torch.cat([t, xb], 1), k)
    return edge


def _grads(out: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
                                     .view_as(out)).sum(), params))


@pytest.mark.parametrize("fs", [None, DFS], ids=["off", "dfs"])
def test_pc_darts_supernet_and_arch_gradient_equal_the_formulation(fs):
    net = _net("pc-darts", fs)
    assert {n for n, _ in net.named_parameters() if "betas" in n} == {"betas_normal", "betas_reduce"}
    assert net.cells[0]._ops[0]._ops[4].op[1].in_channels == 8 // 4  # sep_conv at C/K
    ref = copy.deepcopy(net)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    out, expect = net(x), _reference_forward(ref, x, _pc_edge(ref, 4))
    torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-10)
    for a, b in zip(_grads(out, net.arch_parameters()), _grads(expect, ref.arch_parameters()),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert a.abs().sum() > 0


def test_pc_darts_genotype_is_derived_from_alpha_times_beta():
    net = _net("pc-darts")
    g = net.genotype()
    none = PRIMITIVES.index("none")
    for cell in ("normal", "reduce"):
        w = torch.softmax(getattr(net, f"alphas_{cell}"), -1).detach()
        w = w * _node_softmax_loop(getattr(net, f"betas_{cell}")).detach()[:, None]
        w[:, none] = -1.0
        expect, start = [], 0
        for node in range(4):
            rows = w[start:start + 2 + node]
            for j in sorted(range(2 + node), key=lambda r: -rows[r].max().item())[:2]:
                expect.append((PRIMITIVES[int(rows[j].argmax())], j))
            start += 2 + node
        assert list(getattr(g, cell)) == expect
    # The betas matter: without them another edge set is chosen for this seed.
    net.edge_norm = False
    assert net.genotype() != g


def _gdas_edge(net: SearchNetwork, hard: dict[bool, tuple[torch.Tensor, torch.Tensor]]):
    def edge(cell, e, h, reduction):
        w, index = hard[reduction]
        k = int(index[e])
        return sum(w[e][o] * forward_reference(op, h) if o == k else w[e][o]
                   for o, op in enumerate(cell._ops[e]._ops))
    return edge


def _gumbel_reference(alphas: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = -torch.empty_like(alphas).exponential_().log()
    p = torch.softmax((torch.log_softmax(alphas, -1) + g) / tau, -1)
    index = p.argmax(-1)
    return F.one_hot(index, p.shape[-1]).to(p.dtype) - p.detach() + p, index


@pytest.mark.parametrize("fs", [None, DFS], ids=["off", "dfs"])
def test_gdas_supernet_and_arch_gradient_equal_the_formulation(fs):
    net = _net("gdas", fs)
    net.weighting.tau = 0.7
    ref = copy.deepcopy(net)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    calls = []
    for cell in net.cells:
        for mixed in cell._ops:
            for op in mixed._ops:
                op.register_forward_hook(lambda m, i, o: calls.append(m))
    torch.manual_seed(5)
    out = net(x)
    assert len(calls) == 14 * len(net.cells)  # one op per edge ran
    torch.manual_seed(5)  # the same noise: normal cell's first, then reduce's
    hard = {False: _gumbel_reference(ref.alphas_normal, 0.7),
            True: _gumbel_reference(ref.alphas_reduce, 0.7)}
    expect = _reference_forward(ref, x, _gdas_edge(ref, hard))
    torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-10)
    for a, b in zip(_grads(out, net.arch_parameters()), _grads(expect, ref.arch_parameters()),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert (a != 0).all()  # straight-through: every alpha of every edge learns


def test_gdas_temperature_schedule_and_evaluation_mode():
    cfg = SearchConfig()
    algo = Gdas(cfg)
    assert [algo.tau(e, 50) for e in (0, 49)] == pytest.approx([10.0, 0.1], rel=1e-12)
    assert algo.tau(25, 51) == pytest.approx(10.0 - 9.9 / 2)
    net = _net("gdas").eval()
    state = torch.get_rng_state()
    w = net.weighting(net, False)
    assert torch.equal(torch.get_rng_state(), state)  # no draw in evaluation
    assert w.sampled == net.alphas_normal.argmax(-1).tolist()
    cfg.arch.order = "second"
    with pytest.raises(Exception, match="supports --order first only"):
        Gdas(cfg)


def test_expected_params_follow_the_edges_pc_darts_derivation_keeps():
    net = _net("pc-darts").float()
    with torch.no_grad():
        for p in net.arch_parameters():
            p.mul_(60.0)  # sharp weights: E[P] tends to the derived genotype's count
    model = BudgetModel(None, [1.0], C=16, layers=8)
    g, plain = net.genotype(), None
    net.edge_norm = False
    plain = net.genotype()
    net.edge_norm = True
    assert g != plain
    alphas = [net.alphas_normal, net.alphas_reduce]
    edges = [net.edge_weights(False), net.edge_weights(True)]
    with torch.no_grad():
        e_pc = float(model.expected(*model.relaxed(alphas, None, edges)))
    # Within 0.2%, and the genotype without edge weights is farther off than that.
    assert abs(model.count(g) - model.count(plain)) > 0.004 * model.count(g)
    assert e_pc == pytest.approx(model.count(g), rel=2e-3)


def test_registry_and_config_choices():
    assert list(ALGORITHMS) == ["darts", "pc-darts", "gdas"]
    presets = yaml.safe_load(open("configs/pc-darts.yaml"))["search"]
    assert presets["algorithm"] == "pc-darts" and presets["batch_size"] == 256


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["pc-darts", "gdas"])
def test_cli_run_records_the_algorithm_and_resumes_exactly(algo, tmp_path, capsys, monkeypatch):
    data = make_image_folder(tmp_path / "imgs")
    argv = [str(data), *TINY, "--epochs", "2", "--algo", algo]
    main([*argv, "--out", str(tmp_path / "full")])
    out = capsys.readouterr().out
    assert f"algo={algo}" in out
    full = tmp_path / "full"
    g = load_genotype(full / "genotype.json")
    assert g.source == {"algorithm": algo}
    assert json.loads((full / "genotype.json").read_text())["source"] == {"algorithm": algo}
    assert yaml.safe_load((full / "config.yaml").read_text())["search"]["algorithm"] == algo
    log = [json.loads(x) for x in (full / "log.jsonl").read_text().splitlines()]
    if algo == "gdas":
        assert [r["tau"] for r in log] == pytest.approx([10.0, 0.1], rel=1e-12)
    # Interrupted after the first epoch, then resumed: the same result, bit for bit.
    real = SearchTrainer.train_epoch

    def stop_at_second(self, epoch, show=True):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch, show)

    monkeypatch.setattr(SearchTrainer, "train_epoch", stop_at_second)
    one_line_exit(main, [*argv, "--out", str(tmp_path / "cut")], capsys, code=130)
    monkeypatch.setattr(SearchTrainer, "train_epoch", real)
    main(["--resume", str(tmp_path / "cut")])
    a = load_checkpoint(full / "checkpoint.pt", "search")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.pt", "search")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "genotype.json").read_text() == (tmp_path / "cut" / "genotype.json").read_text()


def test_gdas_second_order_is_one_line(tmp_path, capsys):
    data = make_image_folder(tmp_path / "imgs")
    err = one_line_exit(main, [str(data), *TINY, "--algo", "gdas", "--order", "second"], capsys)
    assert "gdas supports --order first only" in err


# -- optional: against a yuhuixu1993/PC-DARTS checkout ----------------------------------------


@pytest.mark.skipif(not os.environ.get("PCDARTS_REFERENCE"),
                    reason="set PCDARTS_REFERENCE to a yuhuixu1993/PC-DARTS checkout")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pc_darts_against_reference_checkout(dtype) -> None:
    """The PC-DARTS code itself (model_search.Network, imported at run time, never copied):
    the same weights, alphas and betas under a seed, the same logits and architecture
    gradients (float64 to 1e-10; float32 within its rounding), the same genotype."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from search_step import _load_reference

    ms = _load_reference(os.environ["PCDARTS_REFERENCE"])
    torch.manual_seed(0)
    ref = ms.Network(16, 10, 5, torch.nn.CrossEntropyLoss())
    torch.manual_seed(0)
    net = SearchNetwork(16, 10, 5, partial_channels=4, edge_norm=True)
    arch = ("alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce")
    ours = {k: v for k, v in net.state_dict().items() if k not in arch}
    assert list(ours) == list(ref.state_dict())
    assert all(torch.equal(v, ours[k]) for k, v in ref.state_dict().items())
    for name in arch:  # the same draws, in the same order
        assert torch.equal(getattr(ref, name), getattr(net, name)), name
    with torch.no_grad():
        for name in arch:
            getattr(net, name).normal_(0.0, 1.0)
    net, ref = net.to(dtype), ref.to(dtype)
    ref._arch_parameters = [getattr(net, n).detach().clone().requires_grad_() for n in arch]
    for name, p in zip(arch, ref._arch_parameters, strict=True):
        setattr(ref, name, p)
    x = torch.randn(4, 3, 16, 16, dtype=dtype)
    out, expect = net(x), ref(x)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(out, expect, **tol)
    for a, b in zip(_grads(out, net.arch_parameters()), _grads(expect, ref._arch_parameters),
                    strict=True):
        torch.testing.assert_close(a, b, **tol)
    g = ref.genotype()
    mine = net.genotype()
    assert [tuple(e) for e in g.normal] == list(mine.normal)
    assert [tuple(e) for e in g.reduce] == list(mine.reduce)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("nhwc", [False, True])
def test_partial_merge_is_the_shuffled_concatenation(stride, nhwc):
    """The edge's output written in place equals shuffle(cat(ops' sum, bypass)), bit for bit,
    in both memory formats, with the gradients of both parts."""
    from space.darts.partial import PartialMixedOp

    op = PartialMixedOp(16, stride, 4)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    if nhwc:
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    y = torch.randn(2, 4, 8 // stride, 8 // stride)
    if nhwc:
        y = y.contiguous(memory_format=torch.channels_last)
    y.requires_grad_()
    out = op._merge(y, x)
    rest = x[:, 4:] if stride == 1 else F.max_pool2d(x[:, 4:], 2, 2)
    expect = _shuffle_by_index(torch.cat([y, rest], 1), 4)
    assert torch.equal(out, expect)
    assert out.is_contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
    g = torch.randn_like(out)
    ga = torch.autograd.grad(out, [x, y], g)
    gb = torch.autograd.grad(expect, [x, y], g)
    assert all(torch.equal(a, b) for a, b in zip(ga, gb, strict=True))
