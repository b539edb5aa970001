"""Parameter accounting against hand counts."""

from __future__ import annotations

import pytest
import torch.nn as nn

from space.layers.fs import DFSConv2d, FSConv2d
from space.layers.report import param_report, size_bytes
from space.layers.wq import quantized_state_dict


def _tiny() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=True),  # 8*3*9 + 8 = 224
        FSConv2d(8, 8, 1, ratio=2.0, bias=True),  # K=8, n=8: L=32 (+8 bias); as conv 64
        DFSConv2d(8, 16, 3, padding=1, ratio=4.0, num_offsets=4),  # K=16, n=72: L=288, s=18
        nn.BatchNorm2d(16),  # 32
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),  # 170
    )


def test_param_report_hand_count():
    model = _tiny()
    # DFS shifts floor(m*18/4) = 0, 4, 9, 13: four candidates -> 16*4 = 64 logits.
    assert model[2].offset_logits.numel() == 64
    r = param_report(model)
    total = 224 + (32 + 8) + (288 + 64) + 32 + 170
    assert r["total"] == total == sum(p.numel() for p in model.parameters()) == 818
    assert r["fs"] == 320 and r["fs_bias"] == 8 and r["offset_logits"] == 64
    assert r["plain_conv"] == 224 and r["other"] == 32 + 170
    assert r["fs"] + r["fs_bias"] + r["offset_logits"] + r["plain_conv"] + r["other"] == total
    assert r["effective"] == total and r["effective_wq"] == total - 320 + 80 == 578
    assert r["uncompressed"] == total - 320 - 64 + 64 + 16 * 72 == 1650
    assert r["compression"] == pytest.approx(1650 / 818)
    assert r["compression_wq"] == pytest.approx(1650 / 578)
    assert all(type(r[k]) is int for k in ("total", "fs", "effective", "uncompressed"))
    rq = param_report(model, wq=True)
    assert rq["effective"] == rq["effective_wq"] == 578
    assert {k: v for k, v in rq.items() if k != "effective"} == {
        k: v for k, v in r.items() if k != "effective"}


def test_non_integral_effective_and_shared_layers():
    fs = FSConv2d(3, 2, 1, ratio=1.0)  # L = 6
    model = nn.Sequential(fs, nn.ReLU(), fs)  # the same layer twice: counted once
    r = param_report(model, wq=True)
    assert r["total"] == 6 and r["fs"] == 6 and r["uncompressed"] == 6
    assert r["effective"] == 1.5 and type(r["effective"]) is float
    assert r["compression"] == 1 and r["compression_wq"] == 4


def test_plain_network_is_uncompressed():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    r = param_report(model)
    assert r == {"total": 20, "fs": 0, "fs_bias": 0, "offset_logits": 0, "plain_conv": 12,
                 "other": 8, "effective": 20, "effective_wq": 20, "uncompressed": 20,
                 "compression": 1, "compression_wq": 1}


def test_size_bytes():
    model = _tiny()
    # float params + BN running stats (2*16 float, 1 int64) + FS/DFS offsets (8 + 16 int64).
    want = 818 * 4 + 32 * 4 + 8 + 24 * 8
    assert size_bytes(model) == size_bytes(model.state_dict()) == want
    # 8-bit FS: 320 elements drop from 4 to 1 byte, plus float32 min and max per layer.
    assert size_bytes(quantized_state_dict(model)) == want - 320 * 3 + 2 * 2 * 4
