"""retrain networks, hardening, export and summary (in process, no data on disk).

Reference figures below come from running the reference DARTS implementation, quark0/darts
at commit f276dd346a09ae3160f8e3aca5c7b193fda1da37, cnn/model.py (NetworkCIFAR /
NetworkImageNet, counted as its utils.count_parameters_in_MB does: every parameter whose name
does not contain "auxiliary"), outside this repository on torch 2.14 CPU. The genotypes are
quark0/darts cnn/genotypes.py DARTS_V1/DARTS_V2, yuhuixu1993/PC-DARTS genotypes.py
PC_DARTS_cifar (b74702f) and chenxin061/pdarts genotypes.py PDARTS (b880e87).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
from fractions import Fraction

import pytest
import torch
import torch.nn as nn

from common.checkpoint import save_checkpoint
from common.config_schema import RetrainConfig, RetrainFs
from common.errors import UserError
from common.fs_settings import fs_spec
from genotypes import FSSpec, Genotype
from genotypes.zoo import ZOO
from retrain import netspec
from retrain.export import load_exported, pack_state_dict, save_exported, unpack_state_dict
from retrain.model import NetSpec, build_network
from retrain.summary import count_macs, summarize
from retrain.summary_table import format_json, format_table
from retrain.trainer import harden_in_place
from space.darts.network import NetworkCIFAR, NetworkImageNet, drop_path
from space.darts.ops import FactorizedReduce, make_op
from space.layers.fs import DFSConv2d, FSConv2d
from space.layers.fs_model import fs_layers, harden_model
from space.layers.report import param_report
from space.layers.wq import quantized_state_dict

# (genotype, C, layers, classes, imagenet) -> reference parameter count, auxiliary head excluded.
REFERENCE_PARAMS = {
    ("DARTS_V1", 36, 20, 10, False): 3_169_414,
    ("DARTS_V2", 36, 20, 10, False): 3_349_342,
    ("PC_DARTS", 36, 20, 10, False): 3_634_678,
    ("PDARTS", 36, 20, 10, False): 3_433_798,
    ("DARTS_V2", 36, 20, 100, False): 3_401_272,
    ("DARTS_V2", 16, 8, 10, False): 246_106,
    ("DARTS_V2", 48, 14, 1000, True): 4_718_752,
    ("DARTS_V1", 48, 14, 1000, True): 4_510_432,
}
# sha256 (first 16 hex) of "key:shape" lines of the reference state_dict, in order.
REFERENCE_KEYS = {
    ("DARTS_V2", 36, 20, 10, False): ("3d3540cb367530a4", 1650),
    ("DARTS_V2", 48, 14, 1000, True): ("a2a34e2f436f8fd7", 1124),
}
# Reference logits (eval, seed 0 init, input linspace(-2, 2)) of sample 0.
REFERENCE_LOGITS = {
    ("DARTS_V2", 16, 8, 10, False): [0.025156, -0.013413, 0.039397, -0.028577, -0.029225,
                                     0.042215, -0.029687, -0.041783, 0.061548, 0.056935],
    ("DARTS_V2", 8, 5, 5, True): [0.04567, 0.005674, 0.090136, 0.021131, -0.065998],
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest)


def _net(name, C, layers, classes, imagenet, fs=None, aux=True):
    cls = NetworkImageNet if imagenet else NetworkCIFAR
    return cls(C, classes, layers, aux, ZOO[name], fs)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "auxiliary" not in n)


@pytest.mark.parametrize("key", list(REFERENCE_PARAMS))
def test_fs_off_parameter_count_equals_reference_darts(key):
    assert _count(_net(*key)) == REFERENCE_PARAMS[key]


@pytest.mark.parametrize("key", list(REFERENCE_KEYS))
def test_fs_off_state_dict_keys_and_shapes_equal_reference(key):
    sd = _net(*key).state_dict()
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sd.items())
    assert (hashlib.sha256(text.encode()).hexdigest()[:16], len(sd)) == REFERENCE_KEYS[key]
    assert "cells.3._ops.0.op.1.weight" in sd and "auxiliary_head.classifier.weight" in sd


@pytest.mark.parametrize("key", list(REFERENCE_LOGITS))
def test_fs_off_same_init_and_outputs_as_reference(key):
    torch.manual_seed(0)
    m = _net(*key).eval()
    size, batch = (224, 1) if key[-1] else (32, 2)
    x = torch.linspace(-2, 2, batch * 3 * size * size).view(batch, 3, size, size)
    with torch.no_grad():
        out = m(x)[0][0]
    assert torch.allclose(out, torch.tensor(REFERENCE_LOGITS[key]), atol=2e-5)


@pytest.mark.parametrize("dfs", [False, True])
def test_every_1x1_conv_is_an_fs_layer_with_the_ratio(dfs):
    m = _net("DARTS_V2", 16, 8, 10, False, FSSpec(3.0, dfs, 4))
    body = [(n, c) for n, c in m.named_modules() if not n.startswith("auxiliary_head")]
    plain_1x1 = [n for n, c in body if isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1)]
    assert plain_1x1 == []
    layers = fs_layers(m)
    kinds = {type(c) for _, c in layers}
    assert kinds == {DFSConv2d if dfs else FSConv2d}
    assert all(c.ratio == 3.0 for _, c in layers)
    names = [n for n, _ in layers]
    assert any("preprocess0" in n for n in names) and any("conv_1" in n for n in names)
    # The uncompressed equivalent of the FS network is the plain DARTS count.
    from space.layers.report import param_report

    off = _net("DARTS_V2", 16, 8, 10, False)
    body_m = nn.ModuleList(c for n, c in m.named_children() if n != "auxiliary_head")
    assert param_report(body_m)["uncompressed"] == _count(off)


@pytest.mark.parametrize("size,classes,stem", [(20, 7, "cifar"), (9, 3, "cifar"),
                                                (40, 2, "cifar"), (128, 4, "imagenet")])
def test_any_input_size_and_class_count(size, classes, stem):
    spec = NetSpec(ZOO["PC_DARTS"], 8, 5, classes, (size, size), fs=FSSpec(2.0, True, 4))
    assert spec.stem == stem
    m = build_network(spec)
    m.drop_path_prob = 0.2
    x = torch.randn(2, 3, size, size)
    logits, aux = m.train()(x)
    assert logits.shape == (2, classes) and aux.shape == (2, classes)
    (logits.sum() + aux.sum()).backward()
    assert m.eval()(x)[1] is None


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean():
    torch.manual_seed(1)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.3)
    per = y.flatten(1)
    assert torch.allclose(per.unique(), torch.tensor([0.0, 1 / 0.7]))
    assert (per == per[:, :1]).all() and abs(y.mean().item() - 1.0) < 0.05
    assert drop_path(x, 0.0) is x


def test_harden_keeps_momentum_and_drops_offset_logits():
    torch.manual_seed(0)
    m = _net("DARTS_V2", 8, 5, 10, False, FSSpec(2.0, True, 4), aux=False)
    from space.layers.fs_model import offset_parameters

    logits = offset_parameters(m)
    weights = [p for p in m.parameters() if all(p is not q for q in logits)]
    opt = torch.optim.SGD([{"params": weights}, {"params": logits, "weight_decay": 0.0}],
                          lr=0.1, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(4, 3, 16, 16)
    m(x)[0].sum().backward()
    opt.step()
    old = {n: (p, opt.state[p]["momentum_buffer"].clone()) for n, p in m.named_parameters()}
    with torch.no_grad():
        before = m.eval()(x)[0]
    harden_in_place(m, opt)
    assert not any(isinstance(c, DFSConv2d) for c in m.modules())
    assert opt.param_groups[1]["params"] == [] and len(opt.state) == len(weights)
    new = dict(m.named_parameters())
    assert set(new) == {n for n in old if not n.endswith("offset_logits")}
    for n, p in new.items():
        assert any(p is q for q in opt.param_groups[0]["params"])
        assert torch.equal(opt.state[p]["momentum_buffer"], old[n][1])
    m.train()(x)[0].sum().backward()
    opt.step()  # continues without error on the new parameters
    assert before.shape == (4, 10)


def test_pack_round_trip_is_exact_and_narrows_offsets():
    m = _net("DARTS_V2", 8, 5, 10, False, FSSpec(2.0, False, 4))
    sd = m.state_dict()
    packed = pack_state_dict(sd)
    assert set(packed["blobs"]) <= {"float32", "int16", "int32", "int8"}
    back = unpack_state_dict(packed)
    assert list(back) == list(sd)
    assert all(torch.equal(back[k], sd[k]) and back[k].dtype == sd[k].dtype for k in sd)


def _spec(fs, C=16, layers=8):
    return NetSpec(ZOO["DARTS_V2"], C, layers, 10, (32, 32), auxiliary=True, fs=fs)


def test_export_size_follows_compression_and_reload_is_exact(tmp_path):
    data = {"name": "x", "num_classes": 10, "input_size": [32, 32], "mean": [0.5] * 3,
            "std": [0.25] * 3, "classes": []}
    sizes, models = {}, {}
    for name, fs in (("off", None), ("fs", FSSpec(4.0, False, 4))):
        spec = _spec(fs)
        models[name] = build_network(spec).eval()
        sizes[name] = save_exported(models[name], spec, data, tmp_path / f"{name}.pt")
    # The FS-covered part: 1x1 filters (K*n floats) become FS vectors (L = K*n/4) + offsets.
    fs_layers_ = fs_layers(models["fs"])
    kn = sum(c.K * c.n for _, c in fs_layers_)
    stored = sum(4 * c.L + 2 * c.K for _, c in fs_layers_)  # float32 fs, int16 offsets
    saved = sizes["off"] - sizes["fs"]
    assert abs(saved - (4 * kn - stored)) < 0.01 * sizes["off"]
    assert sizes["fs"] < sizes["off"] / 2.5
    x = torch.randn(3, 3, 32, 32)
    for name in ("off", "fs"):
        loaded = load_exported(tmp_path / f"{name}.pt")
        assert not hasattr(loaded, "auxiliary_head")
        with torch.no_grad():
            assert torch.equal(loaded(x)[0], models[name](x)[0])


def test_export_refuses_dfs_and_wq_export_is_close(tmp_path):
    spec = _spec(FSSpec(2.0, True, 4), C=8, layers=5)
    m = build_network(spec).eval()
    data = {"name": "x", "num_classes": 10, "input_size": [32, 32], "mean": [0.0] * 3,
            "std": [1.0] * 3}
    with pytest.raises(ValueError, match="harden"):
        save_exported(m, spec, data, tmp_path / "m.pt")
    from space.layers.fs_model import harden_model

    harden_model(m)
    f = save_exported(m, spec, data, tmp_path / "m.pt")
    q = save_exported(m, spec, data, tmp_path / "q.pt", wq=True)
    assert q < f
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = load_exported(tmp_path / "m.pt")(x)[0], load_exported(tmp_path / "q.pt")(x)[0]
    assert torch.allclose(a, m(x)[0]) and (a - b).abs().max() < 0.05 * a.abs().max() + 1e-3


def test_corrupt_or_foreign_files_give_one_clear_error(tmp_path):
    spec = _spec(None, C=8, layers=5)
    good = tmp_path / "good.pt"
    save_exported(build_network(spec).eval(), spec, {"name": "x"}, good)
    blob = good.read_bytes()
    cases = {
        "truncated.pt": blob[: len(blob) // 2],
        "random.pt": bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8).tolist()),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, buf)
    (tmp_path / "foreign.pt").write_bytes(buf.getvalue())
    save_checkpoint({"epoch": 1, "alphas": torch.zeros(2)}, tmp_path / "search.pt", "search")
    expect = {"truncated.pt": "not a readable", "random.pt": "not a readable",
              "foreign.pt": "not a DFSNet-DARTS", "search.pt": "'search' checkpoint",
              "missing.pt": "does not exist"}
    for name, msg in expect.items():
        with pytest.raises(UserError, match=msg) as e:
            load_exported(tmp_path / name)
        assert "\n" not in str(e.value)


def test_macs_match_a_hand_count():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), FSConv2d(8, 6, 1, stride=2, ratio=2.0),
                         nn.Flatten(), nn.Linear(6 * 8 * 8, 5))
    macs = count_macs(conv, (16, 16))
    hand = {"0": 8 * 16 * 16 * 27, "1": 6 * 8 * 8 * 8, "3": 6 * 8 * 8 * 5}
    assert {k: macs[k] for k in hand} == hand and macs[""] == sum(hand.values())
    # The DARTS ops run their convs functionally (space/darts/ops.py fast paths); all are counted.
    C, hw = 8, 8
    dw3, pw = C * hw * hw * 9, C * hw * hw * C
    ops = nn.ModuleDict({
        "sep": make_op("sep_conv_3x3", C, 1, True, FSSpec(2.0, True, 4)),
        "dil": make_op("dil_conv_3x3", C, 1, True, None),
        "dil5": make_op("dil_conv_5x5", C, 1, True, None),  # 5x5 dilation 2 on 8x8: polyphase
        "fr": FactorizedReduce(C, 2 * C, fs=FSSpec(2.0, False, 4)),
    })
    for name, want in {"sep": 2 * (dw3 + pw), "dil": dw3 + pw, "dil5": C * hw * hw * 25 + pw,
                       "fr": 2 * (C * 4 * 4 * C)}.items():
        assert count_macs(ops[name], (hw, hw), C)[""] == want, name
    # FS layers count the MACs of the conv they stand for: equal to the plain network.
    off = count_macs(_net("DARTS_V2", 8, 5, 10, False), (32, 32))
    fs = count_macs(_net("DARTS_V2", 8, 5, 10, False, FSSpec(2.0, True, 4)), (32, 32))
    parts = ("stem", "classifier", *(f"cells.{i}" for i in range(5)))
    assert off == fs and off[""] == sum(off[k] for k in parts)


def test_summary_totals_table_and_json():
    rep = summarize(_spec(FSSpec(2.0, True, 4)))
    t = rep["totals"]
    assert t["uncompressed"] == REFERENCE_PARAMS[("DARTS_V2", 16, 8, 10, False)]
    assert t["params"] == t["effective"] + t["offset_logits"]
    assert 1.5 < t["compression"] < 2.0 < t["compression_wq"]
    assert t["file_bytes_wq"] < t["file_bytes"] and len(rep["rows"]) == 8 + 2
    assert sum(r["params"] for r in rep["rows"]) == t["params"]
    text = format_table(rep)
    assert "cells.7" in text and "compression" in text and "MACs" in text
    import json

    assert json.loads(format_json(rep))["totals"]["macs"] == t["macs"]
    off = summarize(_spec(None))["totals"]
    assert off["params"] == off["effective"] == off["uncompressed"] and off["macs"] == t["macs"]


# --- per-op FS ratios -------------------------------------------------------------------------

# PDARTS's normal cell (skip0 dil3 skip0 sep3 sep3 sep3 sep3 dil5) and a reduce cell with a
# FactorizedReduce skip from input 0 (FS layers) and an identity skip from node 0 (none).
PER_OP_G = Genotype(
    ZOO["PDARTS"].normal, (2, 3, 4, 5),
    (("skip_connect", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
     ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("skip_connect", 2), ("dil_conv_5x5", 3)),
    (2, 3, 4, 5),
    fs=FSSpec(2.0, True, 4, normal_ratios=(None, 1, None, 2, 4, 8, 1.5, None),
              reduce_ratios=(8, 4, 2, 1, None, 4, None, 8)))


def _expected_fs_layers(g: Genotype, fs: FSSpec, C: int, layers: int):
    """{module prefix: sorted (K, n, L) of its FS layers}, from the DARTS CIFAR network's
    channel bookkeeping and the genotype alone (not from the network's FS layers): the
    preprocessing at fs.ratio, each op at its edge's entry (None: fs.ratio)."""
    def L(K: int, n: int, r: float) -> int:
        return math.ceil(Fraction(K * n) / Fraction(r))

    out: dict[str, list[tuple[int, int, int]]] = {}
    C_pp = C_p = 3 * C
    C_curr, reduction_prev = C, False
    for i in range(layers):
        red = i in (layers // 3, 2 * layers // 3)
        C_curr *= 2 if red else 1
        pre0 = [(C_curr // 2, C_pp)] * 2 if reduction_prev else [(C_curr, C_pp)]
        out[f"cells.{i}.preprocess0"] = sorted((K, n, L(K, n, fs.ratio)) for K, n in pre0)
        out[f"cells.{i}.preprocess1"] = [(C_curr, C_p, L(C_curr, C_p, fs.ratio))]
        ratios = fs.reduce_ratios if red else fs.normal_ratios
        for k, (op, j) in enumerate(g.reduce if red else g.normal):
            r = fs.ratio if ratios is None or ratios[k] is None else ratios[k]
            if op.startswith("sep_conv"):
                shapes = [(C_curr, C_curr)] * 2
            elif op.startswith("dil_conv"):
                shapes = [(C_curr, C_curr)]
            elif op == "skip_connect" and red and j < 2:
                shapes = [(C_curr // 2, C_curr)] * 2
            else:
                shapes = []
            out[f"cells.{i}._ops.{k}"] = sorted((K, n, L(K, n, r)) for K, n in shapes)
        C_pp, C_p, reduction_prev = C_p, 4 * C_curr, red
    return out


def _fs_layers_by_part(model: nn.Module, parts) -> dict[str, list[tuple[int, int, int]]]:
    layers = fs_layers(model)
    return {p: sorted((c.K, c.n, c.L) for n, c in layers if n.startswith(p + ".")) for p in parts}


@pytest.mark.parametrize("dfs", [False, True])
def test_per_op_ratios_give_each_op_its_edge_ratio(dfs):
    fs = dataclasses.replace(PER_OP_G.fs, dfs=dfs)
    spec = NetSpec(PER_OP_G, 8, 5, 10, (32, 32), fs=fs)
    m = build_network(spec)
    want = _expected_fs_layers(PER_OP_G, fs, 8, 5)
    assert _fs_layers_by_part(m, want) == want
    # Every FS layer of the body is in some part: nothing at an unexpected ratio.
    body = [n for n, _ in fs_layers(m) if not n.startswith("auxiliary_head")]
    assert len(body) == sum(len(v) for v in want.values())
    by_edge = {n: c.ratio for n, c in fs_layers(m)}
    assert by_edge["cells.1._ops.0.conv_1"] == 8.0  # the FactorizedReduce skip
    assert by_edge["cells.0._ops.6.op.2"] == 1.5 and by_edge["cells.0._ops.7.op.2"] == 2.0
    assert by_edge["cells.2.preprocess0.conv_1"] == by_edge["cells.4.preprocess1.op.1"] == 2.0
    assert {type(c) for _, c in fs_layers(m)} == {DFSConv2d if dfs else FSConv2d}
    x = torch.randn(2, 3, 16, 16)
    assert m.eval()(x)[0].shape == (2, 10)


def test_per_op_ratios_counted_by_summary_wq_and_report():
    """Summary, WQ and the report count the FS vectors the per-op ratios give: the exact sum
    of ceil(K*n/r) over every FS layer, computed from the genotype alone."""
    spec = NetSpec(PER_OP_G, 8, 5, 10, (32, 32), fs=PER_OP_G.fs)
    fs_total = sum(L for v in _expected_fs_layers(PER_OP_G, spec.fs, 8, 5).values()
                   for _, _, L in v)
    t = summarize(spec)["totals"]
    assert t["fs"] == fs_total
    assert t["effective"] - t["effective_wq"] == 0.75 * fs_total
    off = NetSpec(PER_OP_G, 8, 5, 10, (32, 32), fs=None)
    assert t["uncompressed"] == summarize(off)["totals"]["params"]
    single = summarize(dataclasses.replace(spec, fs=FSSpec(2.0, True, 4)))["totals"]
    assert single["fs"] != fs_total and single["uncompressed"] == t["uncompressed"]
    hard = harden_model(build_network(spec)).eval()
    body = nn.ModuleList(c for n, c in hard.named_children() if n != "auxiliary_head")
    assert param_report(body)["fs"] == fs_total
    q = quantized_state_dict(body)
    assert sum(v.numel() for k, v in q.items() if k.endswith(".fs_q")) == fs_total
    text = format_table(summarize(spec))
    assert "DFS ratio 2, 4 offsets (cell inputs; ops normal [-, 1, -, 2, 4, 8, 1.5, -], " \
           "reduce [8, 4, 2, 1, -, 4, -, 8])" in text.splitlines()[0]


def test_per_op_export_reloads_with_its_ratios(tmp_path):
    spec = NetSpec(PER_OP_G, 8, 5, 10, (32, 32), fs=PER_OP_G.fs)
    m = harden_model(build_network(spec)).eval()
    data = {"name": "x", "num_classes": 10, "input_size": [32, 32], "mean": [0.0] * 3,
            "std": [1.0] * 3}
    x = torch.randn(2, 3, 32, 32)
    want = [(n, c.L) for n, c in fs_layers(m) if not n.startswith("auxiliary_head")]
    for name, wq in (("m.pt", False), ("q.pt", True)):
        save_exported(m, spec, data, tmp_path / name, wq=wq)
        loaded = load_exported(tmp_path / name)
        assert [(n, c.L) for n, c in fs_layers(loaded)] == want
        if not wq:
            with torch.no_grad():
                assert torch.equal(loaded(x)[0], m(x)[0])
    assert NetSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["fs"]["reduce_ratios"] == [8.0, 4.0, 2.0, 1.0, None, 4.0, None, 8.0]


def test_old_netspec_dicts_still_load():
    """Checkpoints and exports from before per-op ratios: fs with three keys."""
    spec = _spec(FSSpec(2.0, True, 4), C=8, layers=5)
    d = spec.to_dict()
    assert d["fs"] == {"ratio": 2.0, "dfs": True, "num_offsets": 4}  # unchanged form
    assert NetSpec.from_dict(d) == spec
    assert NetSpec.from_dict({**d, "fs": None}).fs is None


def test_per_op_ratios_must_fit_the_genotype():
    fs = dataclasses.replace(PER_OP_G.fs, normal_ratios=(2.0,) * 7)
    with pytest.raises(ValueError, match="normal_ratios has 7 entries"):
        NetSpec(PER_OP_G, 8, 5, 10, (32, 32), fs=fs)


def _fs_cfg(mode="genotype", ratio=None):
    return RetrainFs(mode=mode, ratio=ratio, num_offsets=None)


def test_retrain_fs_settings_carry_or_override_per_op_ratios():
    g = PER_OP_G
    # A null ratio (the default) keeps the genotype's per-op ratios, in every FS mode.
    for mode in ("genotype", "dfs", "fs"):
        fs = fs_spec(_fs_cfg(mode), g.fs)
        assert (fs.normal_ratios, fs.reduce_ratios) == (g.fs.normal_ratios, g.fs.reduce_ratios)
        assert fs.ratio == 2.0 and fs.dfs == (mode != "fs")
    # An explicit ratio (--ratio R, fs.ratio) is the one ratio of every FS layer.
    fs = fs_spec(_fs_cfg("dfs", 4), g.fs)
    assert fs == FSSpec(4.0, True, 4) and not fs.per_op
    assert fs_spec(_fs_cfg("off"), g.fs) is None
    cfg = RetrainConfig(init_channels=8, layers=5, auxiliary=False, fs=_fs_cfg("dfs", 4))
    m = build_network(netspec.make_spec(cfg, g, 10, (32, 32)))
    assert {c.ratio for _, c in fs_layers(m)} == {4.0}
    spec = netspec.make_spec(dataclasses.replace(cfg, fs=_fs_cfg()), g, 10, (32, 32))
    assert spec.fs == g.fs
    # FS off: the DARTS network, whatever the genotype's FS spec says.
    off = build_network(netspec.make_spec(dataclasses.replace(cfg, fs=_fs_cfg("off")), g, 10, (32, 32)))
    assert fs_layers(off) == []
    plain = NetworkCIFAR(8, 10, 5, False, dataclasses.replace(g, fs=None), None)
    assert [(k, v.shape) for k, v in off.state_dict().items()] == \
        [(k, v.shape) for k, v in plain.state_dict().items()]


def test_grad_rule_and_offset_learning_rate_from_the_config(tmp_path):
    """retrain's fs.grad_reduce reaches every FS layer, and fs.offset_lr_scale the offset
    logits' SGD group (the weights keep optimizer.lr)."""
    from common.distributed import DistInfo
    from retrain.setup import resolve
    from retrain.trainer import Trainer
    from space.layers.fs_model import fs_layers, set_grad_reduce

    net = _net("DARTS_V2", 8, 5, 10, False, FSSpec(2.0, True, 4))
    set_grad_reduce(net, "sum")
    assert {m.grad_reduce for _, m in fs_layers(net)} == {"sum"}
    with pytest.raises(ValueError, match="mean' or 'sum"):
        set_grad_reduce(net, "avg")
    cfg = resolve("smoke", ["fs.offset_lr_scale=20", "data.workers=0"], lambda cfg: False)
    trainer = Trainer(cfg, _spec(FSSpec(2.0, True, 4), C=8, layers=5), net, DistInfo(),
                      torch.device("cpu"), [], [])
    weights, logits = trainer.optimizer.param_groups
    assert logits["lr"] == pytest.approx(20 * weights["lr"]) and logits["weight_decay"] == 0.0
