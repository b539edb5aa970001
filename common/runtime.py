"""Seeds, threads, devices, mixed precision and the CUDA numerics settings."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import torch

from common.errors import UserError


def seed_everything(seed: int) -> None:
    """Seed Python and torch (every CUDA device too); CPU runs are then bit-for-bit
    repeatable. Leaves cuDNN's algorithm choice alone: that is `set_determinism`'s."""
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_determinism(deterministic: bool) -> None:
    """`runtime.deterministic`. Off (the default): cuDNN tunes its algorithms per shape
    (benchmark mode), which the NHWC depthwise and dilated convolutions need to be fast, and
    the FS gathers' backward (index_add_ / index_select) accumulates with atomics, so CUDA
    runs repeat only up to float rounding. On: deterministic cuDNN algorithms, no tuning,
    `torch.use_deterministic_algorithms` (deterministic index_add_ and index_select backward;
    cuBLAS with a fixed workspace), and ops without a deterministic CUDA kernel warn instead
    of failing (see `deterministic_pooling` for the one the networks hold). CPU runs are
    deterministic either way."""
    deterministic = bool(deterministic)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; read when its handle is made.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


class GlobalMeanPool(torch.nn.Module):
    """Global average pooling as a mean over H and W: the same values as
    nn.AdaptiveAvgPool2d(1), and a backward without atomics on CUDA (whose adaptive pooling
    backward has no deterministic kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def deterministic_pooling(model: torch.nn.Module) -> int:
    """Replace every nn.AdaptiveAvgPool2d(1) of `model` by GlobalMeanPool (no parameters or
    buffers, so state_dicts are unchanged); returns how many were replaced. Only under
    `runtime.deterministic` on CUDA: the two sum in different orders, so they may differ
    in the last bit, and CPU figures stay those of the default networks."""
    swaps = [(parent, name) for parent in model.modules()
             for name, child in parent.named_children()
             if isinstance(child, torch.nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1))]
    for parent, name in swaps:
        setattr(parent, name, GlobalMeanPool())
    return len(swaps)


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """TF32 off for cuDNN convolutions and CUDA matmuls inside the block, restored after.

    The second-order architecture step perturbs the weights by about 1e-6 of their size,
    below TF32's rounding step (2^-11 relative): under TF32, w+ and w- would mostly round to
    the same filters and the Hessian term would be rounding noise. The flags do nothing on
    CPU, so CPU figures are unchanged."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


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


def amp_dtype() -> torch.dtype:
    """The autocast dtype on this machine's GPU: bf16 where the GPU computes it natively
    (Ampere and later), fp16 with a GradScaler elsewhere (V100, T4). torch's default check
    also counts bf16 that is only emulated (slowly) on older GPUs."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def precision(device: torch.device, amp: bool) -> str:
    """What a run computes in: "fp32", or "bf16"/"fp16" under autocast on CUDA. Checkpoints
    record it, so a resume on other hardware is refused instead of silently changing it."""
    if not (amp and device.type == "cuda"):
        return "fp32"
    return "bf16" if amp_dtype() == torch.bfloat16 else "fp16"


def autocast(device: torch.device, enabled: bool):
    """torch.amp autocast on CUDA (`amp_dtype`); a no-op elsewhere, since CPU autocast slows
    these small convolutions down."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=amp_dtype())
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A GradScaler that only scales for fp16 autocast on CUDA (bf16 needs none)."""
    use = enabled and device.type == "cuda" and amp_dtype() == torch.float16
    return torch.amp.GradScaler("cuda" if device.type == "cuda" else "cpu", enabled=use)


def channels_last(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """`runtime.channels_last`, one meaning on every device and in both pipelines: the
    network's weights (here) and its input batches (`to_memory_format`) are NHWC.

    Why on both devices: cuDNN's and oneDNN's convolutions are faster in NHWC. On CPU the
    search supernet's fast path also turns its activations NHWC itself (its CPU kernels are
    written for that layout), whatever this key says; on CUDA the key decides."""
    return model.to(memory_format=torch.channels_last) if enabled else model


def to_memory_format(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """An input batch in NHWC when `runtime.channels_last` is on (see `channels_last`)."""
    return x.contiguous(memory_format=torch.channels_last) if enabled else x
