"""FSNet-WQ: 8-bit FS quantisation, quantized state dicts and their on-disk size."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn

from space.layers.fs import DFSConv2d, FSConv2d
from space.layers.fs_model import fs_layers
from space.layers.wq import (
    dequantize_tensor,
    load_quantized_state_dict,
    quantize_model_,
    quantize_tensor,
    quantized_state_dict,
)


def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        FSConv2d(16, 32, 1, ratio=2.0, bias=True),
        nn.Sequential(DFSConv2d(32, 32, 3, padding=1, ratio=4.0)), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


@pytest.mark.parametrize("scale", [1e-3, 1.0, 50.0])
def test_codes_are_nearest_levels_and_error_bound(scale):
    t = torch.randn(5000) * scale + 0.3
    codes, lo, hi = quantize_tensor(t)
    assert codes.dtype == torch.uint8 and codes.shape == t.shape
    assert lo.dtype == torch.float32 and hi.dtype == torch.float32
    assert lo.item() == t.min().item() and hi.item() == t.max().item()
    assert codes.min().item() == 0 and codes.max().item() == 255
    deq = dequantize_tensor(codes, lo, hi)
    levels = lo + torch.arange(256, dtype=torch.float32) * ((hi - lo) / 255)
    assert torch.equal(deq, levels[codes.long()])
    # Nearest level: no other level is closer (beyond float32 rounding).
    dist = (t.unsqueeze(1) - levels.unsqueeze(0)).abs()
    eps = 1e-6 * scale
    assert (dist.gather(1, codes.long().unsqueeze(1)).squeeze(1) <= dist.min(1).values + eps).all()
    assert (deq - t).abs().max() <= (hi - lo) / 510 + eps


def test_constant_and_tiny_tensors():
    for t in (torch.full((7,), 0.25), torch.zeros(3), torch.tensor([-2.0])):
        codes, lo, hi = quantize_tensor(t)
        assert lo == hi and torch.equal(codes, torch.zeros(t.shape, dtype=torch.uint8))
        deq = dequantize_tensor(codes, lo, hi)
        assert torch.isfinite(deq).all() and torch.equal(deq, t)
    codes, lo, hi = quantize_tensor(torch.tensor([1.0, 3.0]))
    assert codes.tolist() == [0, 255]
    assert torch.equal(dequantize_tensor(codes, lo, hi), torch.tensor([1.0, 3.0]))


def test_quantized_state_dict_keys_and_dtypes():
    model = _model()
    sd, qsd = model.state_dict(), quantized_state_dict(model)
    fs_keys = {"3.fs", "4.0.fs"}
    assert fs_keys <= set(sd)
    assert set(qsd) == (set(sd) - fs_keys) | {
        f"{p}.{s}" for p in ("3", "4.0") for s in ("fs_q", "fs_min", "fs_max")}
    for p in ("3", "4.0"):
        assert qsd[f"{p}.fs_q"].dtype == torch.uint8 and qsd[f"{p}.fs_q"].element_size() == 1
        assert qsd[f"{p}.fs_min"].dtype == torch.float32
    assert qsd["4.0.offset_logits"].dtype == torch.float32  # logits stay float
    for key in set(sd) - fs_keys:
        assert torch.equal(qsd[key], sd[key])


def test_round_trip_through_file_equals_quantize_in_place():
    torch.manual_seed(1)
    model = _model()
    with torch.no_grad():
        model[4][0].offset_logits.normal_()
    model.eval()
    buf = io.BytesIO()
    torch.save(quantized_state_dict(model), buf)
    buf.seek(0)
    loaded = torch.load(buf)
    fresh = _model().eval()
    assert load_quantized_state_dict(fresh, loaded) is fresh
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = model(x)
        assert quantize_model_(model) is model
        after = model(x)  # the eval cache must notice the in-place snap
        assert not torch.equal(before, after)
        assert torch.equal(fresh(x), after)
    for (_, a), (_, b) in zip(fs_layers(model), fs_layers(fresh), strict=True):
        assert torch.equal(a.fs, b.fs)
        assert a.fs.unique().numel() <= 256
    # Quantising already-quantised values is a fixed point.
    snapshot = [m.fs.clone() for _, m in fs_layers(model)]
    quantize_model_(model)
    assert all(torch.equal(s, m.fs) for s, (_, m) in zip(snapshot, fs_layers(model), strict=True))


def test_missing_quantized_keys_raise():
    qsd = quantized_state_dict(_model())
    del qsd["3.fs_max"]
    with pytest.raises(KeyError, match="3.fs_max"):
        load_quantized_state_dict(_model(), qsd)


def test_saved_file_is_one_byte_per_fs_element():
    model = nn.Sequential(FSConv2d(256, 256, 1, ratio=2.0), DFSConv2d(256, 256, 1, ratio=2.0))
    n_fs = sum(m.fs.numel() for _, m in fs_layers(model))
    f_buf, q_buf = io.BytesIO(), io.BytesIO()
    torch.save(model.state_dict(), f_buf)
    torch.save(quantized_state_dict(model), q_buf)
    f_size, q_size = len(f_buf.getvalue()), len(q_buf.getvalue())
    saved = f_size - q_size
    # FS bytes drop from 4 to 1 per element (up to container overhead).
    assert saved == pytest.approx(3 * n_fs, rel=0.02)
    assert q_size < 0.35 * f_size
