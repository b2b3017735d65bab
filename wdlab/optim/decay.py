"""Weight-decay helpers: the paper's normalized decay (its one home) and parameter groups."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from wdlab.optim.validation import is_number

# Parameters of these modules scale activations that a following layer (or the loss) is
# invariant to; the common practice of exempting them from decay is offered, not imposed.
_NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def check_weight_decay_norm(lambda_norm: object) -> None:
    """The one check of a normalized decay value (configs, the registry and the formula all use it)."""
    if not (is_number(lambda_norm) and lambda_norm >= 0):
        raise ValueError(f"weight_decay_norm must be a number >= 0, got {lambda_norm!r}")


def normalized_weight_decay(lambda_norm: float, batch_size: int, num_train: int, period_epochs: float) -> float:
    """Raw decay lambda from the normalized one (Appendix B.1 of the paper).

        lambda = lambda_norm * sqrt(b / (B * T))

    b = ``batch_size`` (the *global* batch, across all data-parallel ranks), B = ``num_train``
    (training points), T = ``period_epochs`` (epochs of the current restart period, or of the
    whole run without restarts). Normalizing makes a good lambda_norm transfer across run
    lengths and batch sizes; the paper recommends lambda_norm = 0.025 to 0.05.
    """
    check_weight_decay_norm(lambda_norm)
    for name, value in (("batch_size", batch_size), ("num_train", num_train), ("period_epochs", period_epochs)):
        if not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be > 0, got {value!r}")
    return lambda_norm * math.sqrt(batch_size / (num_train * period_epochs))


@dataclass(frozen=True)
class NormalizedDecay:
    """Normalized decay for one run: lambda_norm per parameter group, turned into the raw lambda of a period.

    ``batch_size`` is the global batch and ``num_train`` the training-set size (see
    :func:`normalized_weight_decay`). A group under normalized decay carries its ``weight_decay_norm``;
    its ``weight_decay`` is the raw lambda of the current period, rewritten at every restart.
    """

    batch_size: int
    num_train: int

    def weight_decay(self, lambda_norm: float, period_epochs: float) -> float:
        return normalized_weight_decay(lambda_norm, self.batch_size, self.num_train, period_epochs)

    def init_groups(self, groups: Iterable[dict[str, Any]], lambda_norm: float, period_epochs: float) -> None:
        """Give every group its ``weight_decay_norm`` (default ``lambda_norm``) and the first period's lambda.

        A group that sets a raw ``weight_decay`` and no ``weight_decay_norm`` (e.g. the zero-decay
        group) keeps that value for the whole run.
        """
        for group in groups:
            if "weight_decay" in group and "weight_decay_norm" not in group:
                continue
            group.setdefault("weight_decay_norm", lambda_norm)
            group["weight_decay"] = self.weight_decay(group["weight_decay_norm"], period_epochs)

    def update_groups(self, groups: Iterable[dict[str, Any]], period_epochs: float) -> None:
        """Set each normalized group's ``weight_decay`` to the lambda of a period ``period_epochs`` long."""
        for group in groups:
            if "weight_decay_norm" in group:
                group["weight_decay"] = self.weight_decay(group["weight_decay_norm"], period_epochs)

    def first_group_weight_decay(self, groups: Iterable[dict[str, Any]], period_epochs: float) -> float | None:
        """The lambda the first normalized group gets in a period ``period_epochs`` long (``None``: no such group)."""
        for group in groups:
            if "weight_decay_norm" in group:
                return self.weight_decay(group["weight_decay_norm"], period_epochs)
        return None


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
