"""Seeds, threads, devices and mixed precision."""

from __future__ import annotations

import contextlib
import random

import torch

from common.errors import UserError


def seed_everything(seed: int) -> None:
    """Seed Python and torch; CPU runs are then bit-for-bit repeatable."""
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a clear error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def autocast(device: torch.device, enabled: bool):
    """torch.amp autocast on CUDA (fp16/bf16 as the GPU supports); a no-op elsewhere, since
    CPU autocast slows these small convolutions down."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A GradScaler that only scales for fp16 autocast on CUDA (bf16 needs none)."""
    use = enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda" if device.type == "cuda" else "cpu", enabled=use)


def channels_last(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """`runtime.channels_last`, one meaning on every device and in both pipelines: the
    network's weights (here) and its input batches (`to_memory_format`) are NHWC.

    Why on both devices: cuDNN's and oneDNN's convolutions are faster in NHWC. The search
    supernet's fast path also turns its activations NHWC itself (its CPU kernels are written
    for that layout), whatever this key says; the key decides the weights and inputs."""
    return model.to(memory_format=torch.channels_last) if enabled else model


def to_memory_format(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """An input batch in NHWC when `runtime.channels_last` is on (see `channels_last`)."""
    return x.contiguous(memory_format=torch.channels_last) if enabled else x
