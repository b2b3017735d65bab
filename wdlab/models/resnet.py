"""Pre-activation ResNets for 32x32 inputs: Wide ResNet and a small ResNet for CPU runs.

Both are built from the same pre-activation basic block (He et al. 2016, "Identity Mappings"),
written as in the reference Wide ResNet code (Zagoruyko & Komodakis 2016)::

    h = ReLU(BN(x))
    y = conv3x3(stride)(h) -> BN -> ReLU -> [dropout] -> conv3x3
    out = y + (conv1x1(stride)(h) if the shape changes else x)

The projection shortcut takes the *pre-activated* input h, like the reference code. Dropout sits
between the ReLU and the second convolution, as in the reference code (``nn.Dropout`` after the
BN-ReLU), so that BN never sees dropped-out statistics.

Network: conv3x3(3 -> w0) - three stages of n blocks (strides 1, 2, 2) - BN - ReLU - global
average pool - linear.

* ``WideResNet(depth, widen_factor=k)``: WRN-depth-k, w0 = 16, stage widths 16k, 32k, 64k,
  n = (depth - 4) / 6 (as used on ImageNet32x32 by Chrabaszcz, Loshchilov & Hutter 2017).
* ``PreActResNet(depth, base_width=w)``: w0 = w, stage widths w, 2w, 4w, n = (depth - 2) / 6.

Parameter counts (exact):

* WRN-28-2:  1,467,610 (10 classes; published ~1.5M), 1,595,320 (1000 classes)
* WRN-28-10: 36,479,194 (10 classes; published 36.5M), 37,113,784 (1000 classes)
* ``PreActResNet()`` (depth 8, width 16, 10 classes): 77,850; depth 14: 175,066; depth 14 width 32: 696,234
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from wdlab._checks import check_int

from .init import blocks_per_stage, init_weights

__all__ = ["PreActBlock", "PreActResNet", "WideResNet"]


class PreActBlock(nn.Module):
    """Pre-activation basic block: ``conv(ReLU(BN(conv(ReLU(BN(x)))))) + shortcut`` (see module docstring)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.shortcut: nn.Conv2d | None = None
        if in_ch != out_ch or stride != 1:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # In place is safe: BN backward needs its input, not its output; saves one activation.
        h = F.relu(self.bn1(x), inplace=True)
        y = self.conv1(h)
        y = self.conv2(self.dropout(F.relu(self.bn2(y), inplace=True)))
        return y + (x if self.shortcut is None else self.shortcut(h))


class _PreActNet(nn.Module):
    def __init__(self, stem_width: int, widths: tuple[int, int, int], n: int, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, stem_width, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        in_ch = stem_width
        for width, stride in zip(widths, (1, 2, 2), strict=True):
            for i in range(n):
                blocks.append(PreActBlock(in_ch, width, stride if i == 0 else 1, dropout))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        # The last block ends with a residual sum, not an activation: pre-act nets need a final BN-ReLU.
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        x = F.relu(self.bn(x), inplace=True).mean(dim=(2, 3))
        return self.fc(x)


class WideResNet(_PreActNet):
    """Pre-activation Wide ResNet WRN-depth-widen_factor for 32x32 images.

    Args:
        depth: ``6 n + 4`` with n >= 1 blocks per stage (28 -> 4 blocks).
        widen_factor: k; stage widths 16k, 32k, 64k.
        num_classes: number of output logits (10 for CIFAR-10, 1000 for ImageNet32x32).
        dropout: dropout probability inside each block, in [0, 1).
    """

    def __init__(self, depth: int, widen_factor: int, num_classes: int, dropout: float = 0.0) -> None:
        n = blocks_per_stage(depth, 4)
        check_int("widen_factor", widen_factor, 1)
        check_int("num_classes", num_classes, 1)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
        k = widen_factor
        super().__init__(16, (16 * k, 32 * k, 64 * k), n, num_classes, float(dropout))
        self.depth, self.widen_factor, self.num_classes = depth, widen_factor, num_classes
        self.dropout_p = float(dropout)


class PreActResNet(_PreActNet):
    """Small pre-activation ResNet for quick CPU runs (depth 8 = one block per stage).

    Args:
        depth: ``6 n + 2`` with n >= 1 blocks per stage (8, 14, 20, ...).
        base_width: stem and first-stage width w; stages are w, 2w, 4w.
        num_classes: number of output logits.
    """

    def __init__(self, depth: int = 8, base_width: int = 16, num_classes: int = 10) -> None:
        n = blocks_per_stage(depth, 2)
        check_int("base_width", base_width, 1)
        check_int("num_classes", num_classes, 1)
        w = base_width
        super().__init__(w, (w, 2 * w, 4 * w), n, num_classes, 0.0)
        self.depth, self.base_width, self.num_classes = depth, base_width, num_classes
