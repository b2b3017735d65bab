"""Models (plain ``torch.nn.Module`` classes, no Lightning): Shake-Shake, Wide ResNet, small pre-act ResNet."""

from .init import init_weights
from .resnet import PreActResNet, WideResNet
from .shake_shake import ShakeShake

__all__ = ["PreActResNet", "ShakeShake", "WideResNet", "init_weights"]
