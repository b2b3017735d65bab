"""Optimizers, schedules and weight-decay parameterizations of the paper. No Lightning here.

- :class:`AdamW`, :class:`SGDW`: decoupled weight decay (Loshchilov & Hutter 2019), decay
  ``eta_t * lambda`` per step by default (``decay_scaling="lr"`` for PyTorch's ``lr_t * lambda``).
- :mod:`wdlab.optim.schedules`: eta_t as a pure function of the step (cosine, warm restarts, ...).
- :func:`normalized_weight_decay`: lambda = lambda_norm * sqrt(b / (B * T)).
- :data:`REGISTRY` and :func:`build_optimizer`: ``adam``, ``adamw``, ``adamwr``, ``sgd``, ``sgdw``, ``sgdwr``.
"""

from wdlab.optim import schedules
from wdlab.optim.decay import NormalizedDecay, normalized_weight_decay, param_groups
from wdlab.optim.decoupled import SGDW, AdamW, DecoupledWeightDecayMixin
from wdlab.optim.registry import (
    HYPERPARAMETERS,
    REGISTRY,
    OptimizerConfig,
    OptimizerSpec,
    build_optimizer,
    resolve_hyperparameters,
)
from wdlab.optim.schedules import ScheduledLR, make_schedule
from wdlab.optim.validation import DECAY_SCALINGS

__all__ = [
    "DECAY_SCALINGS",
    "HYPERPARAMETERS",
    "REGISTRY",
    "SGDW",
    "AdamW",
    "DecoupledWeightDecayMixin",
    "NormalizedDecay",
    "OptimizerConfig",
    "OptimizerSpec",
    "ScheduledLR",
    "build_optimizer",
    "make_schedule",
    "normalized_weight_decay",
    "param_groups",
    "resolve_hyperparameters",
    "schedules",
]
