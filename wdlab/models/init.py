"""Initialisation and argument checks shared by every wdlab model.

The initialisation follows fb.resnet.torch (the code base the Shake-Shake and Wide ResNet
reference implementations grew out of), so that results are comparable with the papers:

* convolutions: He normal with fan_out, ``std = sqrt(2 / (k * k * out_channels))``, bias 0;
* batch norm: weight 1, bias 0;
* linear: torch's default weight init, bias 0.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["init_weights"]


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

