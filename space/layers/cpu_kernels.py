"""Two CPU backward passes that oneDNN/ATen compute slowly for the search network's shapes,
replaced by the same sums computed another way, and batch statistics accurate in float32.

* Dilated depthwise convolution, stride 1, 'same' padding (dil_conv's depthwise convs on
  maps larger than the dilated kernel): the input gradient is the correlation of the output
  gradient with the flipped kernel, i.e. a forward depthwise convolution, which oneDNN runs
  several times faster than its dilated backward-data kernel in channels_last. The weight
  gradient is the native one. (Undilated ones, sep_conv's, keep the native backward: as fast.)
* Training-mode batch norm on channels_last tensors whose channel count is not a multiple of
  the CPU's vector width (C=8 or 24 on AVX-512: the bench's and smoke preset's widths): ATen's
  channels_last backward falls to a scalar tail loop there and is 2-3x slower than its
  contiguous-format kernel plus the two layout copies this path pays.

Batch statistics (`exact=True`, which the search supernet asks for): ATen's channels_last
kernel sums them in one float32 pass, with a relative variance error of ~2e-6 at a search
batch, 20x its contiguous kernel's; through the ~500 batch norms of the supernet that put
1e-4 into the architecture gradients. `_batch_stats` takes two torch reductions instead
(~4e-8). That makes a training step 1.09-1.15x slower (bench/batch_stats.py), and training
weights gains nothing from it, so everything else (retrain's networks) keeps ATen's
statistics: `exact=False`, the default.

`depthwise` routes the search ops' depthwise convolutions on CPU: strided and small-map
dilated ones are rewritten as undilated convolutions (the same sums), other dilated ones take
`depthwise_same`. `conv1x1` runs 1x1 convolutions as matrix products on CPU. Every rewrite
here applies on CPU only, where it was measured (bench/search_step.py); on CUDA the native
kernels run.

The two backward passes apply only to float32 CPU tensors in channels_last that need
gradients, the exact statistics to float32 CPU tensors in channels_last (with or without
gradients). The rewritten backward passes are once-differentiable (double backprop through
them raises; torch.func transforms work, as the Functions define setup_context); everything
else takes the native path, which is also what float64 gradient checks exercise. Results
equal the native ones up to float rounding (tests/test_cpu_kernels.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

_CL = torch.channels_last


def _vector_width() -> int:
    cap = torch.backends.cpu.get_cpu_capability()
    return 16 if "512" in cap else 8


_WIDTH = _vector_width()


def _channels_last_f32(x: Tensor) -> bool:
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4):
        return False
    try:
        return x.is_contiguous(memory_format=_CL)
    except RuntimeError:  # inside torch.func.vmap the layout cannot be queried: native path
        return False


def _eligible(x: Tensor) -> bool:
    """A float32 CPU channels_last tensor whose gradient will be computed."""
    return _channels_last_f32(x) and x.requires_grad and torch.is_grad_enabled()


class _DepthwiseSame(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, weight: Tensor, padding: int, dilation: int) -> Tensor:
        return F.conv2d(x, weight, None, 1, padding, dilation, x.shape[1])

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, padding, dilation = inputs
        ctx.save_for_backward(x, weight)
        ctx.conf = (padding, dilation)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        padding, dilation = ctx.conf
        groups = x.shape[1]
        grad = grad.contiguous(memory_format=_CL)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = F.conv2d(grad, weight.flip(-1, -2), None, 1, padding, dilation, groups)
        if ctx.needs_input_grad[1]:
            gw = torch.ops.aten.convolution_backward(
                grad, x, weight, None, (1, 1), (padding, padding), (dilation, dilation),
                False, (0, 0), groups, (False, True, False),
            )[1]
        return gx, gw, None, None


def depthwise_same(x: Tensor, weight: Tensor, padding: int, dilation: int) -> Tensor:
    """A stride-1 depthwise conv (weight (C, 1, k, k), k odd) with padding dilation*(k-1)/2,
    so the output has the input's size; no bias."""
    if _eligible(x):
        return _DepthwiseSame.apply(x, weight, padding, dilation)
    return F.conv2d(x, weight, None, 1, padding, dilation, x.shape[1])


def _batch_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of an NCHW tensor in two passes, each a torch
    reduction (pairwise/cascade sums): accurate in float32 in any memory format. The
    activation-sized temporary is the price: torch.var_mean (Welford, no temporary) took
    4-10x longer on these channels_last shapes (C=8..64, 8..32 px, batch 32)."""
    mean = x.mean((0, 2, 3))
    var = (x - mean[:, None, None]).square_().mean((0, 2, 3))
    return mean, var


def _update_running(running_mean: Tensor | None, running_var: Tensor | None, mean: Tensor,
                    var: Tensor, momentum: float, n: int) -> None:
    """What training-mode batch norm does to its running statistics (unbiased variance)."""
    with torch.no_grad():
        if running_mean is not None:
            running_mean.lerp_(mean, momentum)
        if running_var is not None:
            running_var.lerp_(var * (n / max(n - 1, 1)), momentum)


class _BatchNormCL(torch.autograd.Function):
    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, momentum: float, eps: float,
                exact: bool):
        if not exact:
            return torch.ops.aten.native_batch_norm(
                x, weight, bias, running_mean, running_var, True, momentum, eps)
        mean, var = _batch_stats(x)
        _update_running(running_mean, running_var, mean, var, momentum, x.numel() // x.shape[1])
        # Eval-mode batch norm with the batch's own statistics: the training-mode output,
        # one elementwise pass in the input's layout.
        y = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        return y, mean, (var + eps).rsqrt()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, _, _, _, _, eps, _ = inputs
        _, mean, invstd = output
        ctx.mark_non_differentiable(mean, invstd)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor, _gmean: Tensor | None = None, _ginvstd: Tensor | None = None):
        x, weight, mean, invstd = ctx.saved_tensors
        mask = list(ctx.needs_input_grad[:3])
        if x.shape[1] % _WIDTH:  # a vector tail: the contiguous kernel is the fast one
            grad, x = grad.contiguous(), x.contiguous()
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, None, None, mean, invstd, True, ctx.eps, mask
        )
        if gx is not None:
            gx = gx.contiguous(memory_format=_CL)
        return gx, gw, gb, None, None, None, None, None


def batch_norm_train(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    momentum: float,
    eps: float,
    exact: bool = False,
) -> Tensor:
    """`F.batch_norm(x, ..., training=True, ...)`: on float32 CPU channels_last tensors, with
    `exact` the batch statistics ATen's kernel gets wrong in float32 taken in two accurate
    passes, and the backward in the faster memory format (see the module docstring)."""
    if not _channels_last_f32(x) or x.numel() <= x.shape[1]:  # <= 1 value per channel: ATen's
        return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)
    if x.requires_grad and torch.is_grad_enabled() and (exact or x.shape[1] % _WIDTH):
        return _BatchNormCL.apply(x, weight, bias, running_mean, running_var, momentum, eps,
                                  exact)[0]
    if not exact:
        return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)
    mean, var = _batch_stats(x)
    _update_running(running_mean, running_var, mean, var, momentum, x.numel() // x.shape[1])
    return F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)


def conv1x1(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.conv2d(x, weight, bias)` for a 1x1 kernel, stride 1, one group. On CPU, with channels
    innermost in memory (channels_last, or a strided view of it), this is a matrix product over
    the pixels: F.linear on the NHWC view runs forward and backward 1.5-3x faster than
    oneDNN's 1x1 convolution at these widths, and its output is channels_last again."""
    if x.device.type == "cpu" and x.dim() == 4 and x.stride(1) == 1:
        return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
    return F.conv2d(x, weight, bias)


def depthwise(dw: torch.nn.Conv2d, x: Tensor) -> Tensor:
    """`dw(x)` for a depthwise conv with dilation d and 'same'-style padding d*(k-1)/2,
    rewritten where oneDNN's CPU kernels are slow; every rewrite is the same sums.

    * stride d: only every d-th pixel is read, so it is an undilated stride-1 conv of
      x[::d, ::d] (any size). The strided dilated backward is ~8x slower than this.
    * stride 1 on a map smaller than the dilated kernel (5x5 dilation 2 on 8x8): the d*d
      polyphase components are independent undilated convs, batched as channels by
      pixel_unshuffle (~2.5x faster there; slower on larger maps, so only there).
    * other stride-1 dilated convs: `depthwise_same` (a faster input gradient). Undilated
      ones keep the native kernels, which are as fast there.

    Off the CPU it is `dw(x)`: the rewrites were measured against oneDNN only.
    """
    if x.device.type != "cpu":
        return dw(x)
    (k, _), (d, _), (s, _) = dw.kernel_size, dw.dilation, dw.stride
    regular = (dw.kernel_size[0] == dw.kernel_size[1] and dw.dilation[0] == dw.dilation[1]
               and dw.stride[0] == dw.stride[1] and dw.padding == (d * (k - 1) // 2,) * 2
               and dw.groups == dw.in_channels == dw.out_channels and k % 2 == 1)
    if not regular or (s > 1 and d == 1):
        return dw(x)
    if s == d:
        return F.conv2d(x[:, :, ::d, ::d], dw.weight, dw.bias, 1, (k - 1) // 2, 1, dw.groups)
    H, W = x.shape[-2:]
    if s == 1 and d * (k - 1) + 1 > min(H, W) and H % d == 0 and W % d == 0 and dw.bias is None:
        y = F.conv2d(F.pixel_unshuffle(x, d), dw.weight.repeat_interleave(d * d, 0), None, 1,
                     (k - 1) // 2, 1, dw.groups * d * d)
        return F.pixel_shuffle(y, d)
    if s == 1 and dw.bias is None:
        return depthwise_same(x, dw.weight, dw.padding[0], d)
    return dw(x)
