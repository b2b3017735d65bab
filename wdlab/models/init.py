"""Initialisation and the depth check shared by every wdlab model.

The initialisation follows fb.resnet.torch (the code base the Shake-Shake and Wide ResNet
reference implementations grew out of), so that results are comparable with the papers:

* convolutions: He normal with fan_out, ``std = sqrt(2 / (k * k * out_channels))``, bias 0;
* batch norm: weight 1, bias 0;
* linear: torch's default weight init, bias 0.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from wdlab._checks import check_int

__all__ = ["blocks_per_stage", "init_weights"]


def blocks_per_stage(depth: int, layers_outside_stages: int) -> int:
    """n for a three-stage ResNet of ``depth = 6 n + layers_outside_stages`` layers (n >= 1).

    Each block holds two convolutions: Shake-Shake and PreActResNet count 2 more layers (stem and
    classifier), WRN 4 (stem, classifier and the two projection shortcuts).
    """
    minimum = 6 + layers_outside_stages
    allowed = ", ".join(str(minimum + 6 * i) for i in range(4))
    rule = f"(depth - {layers_outside_stages}) % 6 == 0"
    check_int("depth", depth, minimum, extra=f" with {rule} ({allowed}, ...)")
    if (depth - layers_outside_stages) % 6 != 0:
        raise ValueError(f"depth must satisfy {rule} and depth >= {minimum} ({allowed}, ...), got {depth}")
    return (depth - layers_outside_stages) // 6


def init_weights(model: nn.Module) -> None:
    """Initialise ``model`` in place as fb.resnet.torch does (see the module docstring)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BatchNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

