"""Shake-Shake-Image ResNet for 32x32 inputs (Gastaldi, "Shake-Shake regularization", 2017).

Architecture of ``ShakeShake(depth, base_width=k)`` ("depth 2xkd"), n = (depth - 2) / 6 blocks per stage::

    stem:    conv3x3(3 -> 16, no bias) - BN
    stage 1: n blocks, width k,  stride 1
    stage 2: n blocks, width 2k, stride 2 (first block)
    stage 3: n blocks, width 4k, stride 2 (first block)
    head:    ReLU - global average pool (8x8 for 32x32 inputs) - linear(4k -> num_classes)

Each block has two identical residual branches ``ReLU-conv3x3(stride)-BN-ReLU-conv3x3-BN`` and
combines them as

    y = shortcut(x) + alpha * branch1(x) + (1 - alpha) * branch2(x)

The shortcut is the identity unless channels or stride change; then it is ReLU, two paths
``AvgPool2d(1, stride) - conv1x1(-> out/2, no bias)``, the second one on the input shifted by one
pixel (see :func:`shift_one_pixel`), concatenated along channels, then BN. The leading ReLU of
the two branches and of that shortcut is the same function of x, so the block computes it once
(``branch1``/``branch2`` modules start at the first conv).

Shake-Shake-Image ("Image" = one coefficient per image, not per batch) in training mode:

* forward:  alpha ~ U(0, 1), drawn independently for every image of the batch;
* backward: dL/dbranch1 = beta * dL/dy, dL/dbranch2 = (1 - beta) * dL/dy, with beta ~ U(0, 1)
  per image and independent of alpha;
* eval:     alpha = beta = 0.5 (deterministic).

Parameter counts (10 classes, exact; Gastaldi 2017 reports 2.9M / 11.7M / 26.2M):

* ``ShakeShake(26, 32)``: 2,923,162  (26 2x32d)
* ``ShakeShake(26, 64)``: 11,653,978 (26 2x64d)
* ``ShakeShake(26, 96)``: 26,192,922 (26 2x96d)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wdlab._checks import check_int

from .init import blocks_per_stage, init_weights

__all__ = ["ShakeShake", "ShakeShakeBlock", "ShakeShakeFunction", "shake_shake", "shift_one_pixel"]


class ShakeShakeFunction(torch.autograd.Function):
    """``y = alpha * b1 + (1 - alpha) * b2`` forward; gradients ``beta * g`` and ``(1 - beta) * g``.

    ``alpha`` and ``beta`` are given (broadcastable to the branches, e.g. shape (N, 1, 1, 1)) and
    receive no gradient. Only ``beta`` is saved, so the mix costs no extra activation memory.
    """

    @staticmethod
    def forward(ctx: Any, b1: Tensor, b2: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
        ctx.save_for_backward(beta)
        # lerp(b2, b1, alpha) = b2 + alpha * (b1 - b2): one fused kernel instead of three.
        return torch.lerp(b2, b1, alpha)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        (beta,) = ctx.saved_tensors
        g1 = grad * beta if ctx.needs_input_grad[0] else None
        g2 = grad * (1 - beta) if ctx.needs_input_grad[1] else None
        return g1, g2, None, None


def shake_shake(b1: Tensor, b2: Tensor, training: bool) -> Tensor:
    """Combine two branch outputs of shape (N, C, H, W) as Shake-Shake-Image does.

    Training: per-image alpha (forward) and an independent per-image beta (backward), both U(0, 1)
    and shaped (N, 1, 1, 1) from the *actual* batch size, so a smaller last batch works. They come
    from torch's global generator on the input's device, so seeding and RNG-state restore make
    runs reproducible. They are drawn in float32 and then cast, so the random stream does not
    depend on autocast. Eval: the deterministic mean ``0.5 * (b1 + b2)``.
    """
    if not training:
        return (b1 + b2) * 0.5
    shape = (b1.shape[0],) + (1,) * (b1.dim() - 1)
    alpha = torch.rand(shape, device=b1.device).to(b1.dtype)
    beta = torch.rand(shape, device=b1.device).to(b1.dtype)
    return ShakeShakeFunction.apply(b1, b2, alpha, beta)


def shift_one_pixel(x: Tensor) -> Tensor:
    """Shift the image content by one pixel up-left: ``out[..., i, j] = x[..., i + 1, j + 1]``.

    The last row and column become zeros (crop top-left, zero-pad bottom/right, as in the
    reference code; padding the other side is a known porting bug, xgastaldi/shake-shake #3).
    Combined with the stride-2 sampling of the shortcut, the second path sees the odd pixels
    the first one skips.
    """
    return F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def _branch(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    # The leading ReLU of the branch is applied once in ShakeShakeBlock and shared.
    return nn.Sequential(
        _conv3x3(in_ch, out_ch, stride),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        _conv3x3(out_ch, out_ch),
        nn.BatchNorm2d(out_ch),
    )


class _ShiftedShortcut(nn.Module):
    """[AvgPool(1, s)-conv1x1 on x ; AvgPool(1, s)-conv1x1 on the shifted x], then BN.

    Expects the already ReLU-ed block input (the block shares one ReLU with both branches).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        half = out_ch // 2
        self.pool = nn.AvgPool2d(kernel_size=1, stride=stride)
        self.conv1 = nn.Conv2d(in_ch, half, 1, bias=False)
        self.conv2 = nn.Conv2d(in_ch, out_ch - half, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv1(self.pool(x))
        b = self.conv2(self.pool(shift_one_pixel(x)))
        return self.bn(torch.cat((a, b), dim=1))


class ShakeShakeBlock(nn.Module):
    """One Shake-Shake residual block: ``shortcut(x) + alpha * branch1(x) + (1 - alpha) * branch2(x)``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.branch1 = _branch(in_ch, out_ch, stride)
        self.branch2 = _branch(in_ch, out_ch, stride)
        self.projection = in_ch != out_ch or stride != 1
        self.shortcut: nn.Module = (
            _ShiftedShortcut(in_ch, out_ch, stride) if self.projection else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        # Both branches and the projection shortcut start with ReLU(x): compute it once.
        h = F.relu(x)
        shortcut = self.shortcut(h) if self.projection else x
        return shortcut + shake_shake(self.branch1(h), self.branch2(h), self.training)


class ShakeShake(nn.Module):
    """Shake-Shake-Image ResNet "depth 2x{base_width}d" for 32x32 images (see the module docstring).

    Args:
        depth: total depth, ``6 n + 2`` with n >= 1 blocks per stage (26 -> 4 blocks, as in the paper).
        base_width: width k of the first stage (stages are k, 2k, 4k); must be even because the
            shifted shortcut concatenates two halves.
        num_classes: number of output logits.
    """

    def __init__(self, depth: int = 26, base_width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        n = blocks_per_stage(depth, 2)
        check_int("base_width", base_width, 2, extra=" and even")
        if base_width % 2 != 0:
            raise ValueError(f"base_width must be even (2, 4, ..., 32, 64, 96), got {base_width}")
        check_int("num_classes", num_classes, 1)

        self.depth, self.base_width, self.num_classes = depth, base_width, num_classes
        self.stem = nn.Sequential(_conv3x3(3, 16), nn.BatchNorm2d(16))
        blocks: list[nn.Module] = []
        in_ch = 16
        for width, stride in ((base_width, 1), (2 * base_width, 2), (4 * base_width, 2)):
            for i in range(n):
                blocks.append(ShakeShakeBlock(in_ch, width, stride if i == 0 else 1))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        # The paper pools 8x8; a mean over H, W is the same there and also handles other sizes.
        x = F.relu(x).mean(dim=(2, 3))
        return self.fc(x)
