"""Weight-decay helpers: the paper's normalized decay and parameter groups."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

# Parameters of these modules scale activations that a following layer (or the loss) is
# invariant to; the common practice of exempting them from decay is offered, not imposed.
_NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def normalized_weight_decay(lambda_norm: float, batch_size: int, num_train: int, period_epochs: float) -> float:
    """Raw decay lambda from the normalized one (Appendix B.1 of the paper).

        lambda = lambda_norm * sqrt(b / (B * T))

    b = ``batch_size`` (the *global* batch, across all data-parallel ranks), B = ``num_train``
    (training points), T = ``period_epochs`` (epochs of the current restart period, or of the
    whole run without restarts). Normalizing makes a good lambda_norm transfer across run
    lengths and batch sizes; the paper recommends lambda_norm = 0.025 to 0.05.
    """
    if not (isinstance(lambda_norm, int | float) and lambda_norm >= 0):
        raise ValueError(f"weight_decay_norm must be a number >= 0, got {lambda_norm!r}")
    for name, value in (("batch_size", batch_size), ("num_train", num_train), ("period_epochs", period_epochs)):
        if not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be > 0, got {value!r}")
    return lambda_norm * math.sqrt(batch_size / (num_train * period_epochs))


def param_groups(model: nn.Module, decay_bias_and_norm: bool = True) -> list[dict[str, Any]]:
    """Parameter groups for an optimizer.

    ``decay_bias_and_norm=True`` (default, the paper's setup) returns one group with every
    trainable parameter, all decayed. ``False`` puts biases and the weights of normalization
    layers (BatchNorm, GroupNorm, LayerNorm, ...) into a second group with ``weight_decay=0``;
    the optimizer's other hyperparameters apply to both groups.
    """
    if decay_bias_and_norm:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}]
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue  # shared parameters are grouped once, by their first owner
            seen.add(id(param))
            exempt = isinstance(module, _NORM_LAYERS) or param_name == "bias"
            (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "name": "decay"}, {"params": no_decay, "name": "no_decay", "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
