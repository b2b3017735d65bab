"""Optimizers, schedules and weight-decay parameterizations of the paper. No Lightning here.

- :class:`AdamW`, :class:`SGDW`: decoupled weight decay (Loshchilov & Hutter 2019), decay
  ``eta_t * lambda`` per step by default (``decay_scaling="lr"`` for PyTorch's ``lr_t * lambda``,
  ``"corrected"`` for AdamC/SGDC's ``eta_t**2 * lambda``, Defazio et al. 2025).
- :mod:`wdlab.optim.schedules`: eta_t as a pure function of the step (cosine, warm restarts, ...).
- :func:`normalized_weight_decay`: lambda = lambda_norm * sqrt(b / (B * T)).
- :func:`timescale_weight_decay`: lambda = 1 / (tau * S), tau in epochs (Wang & Aitchison 2025).
- :func:`convert_decay`: one run's decay as weight_decay, weight_decay_norm, weight_decay_timescale and
  torch's weight_decay (= lambda / lr).
- :func:`predicted_angular_update`, :func:`angular_update`: the rotational equilibrium (Kosson et al. 2024),
  predicted and measured (:mod:`wdlab.optim.equilibrium`).
- :func:`decoupled`: the paper's decay for any torch optimizer class; :class:`RAdamW`, :class:`NAdamW` and
  :class:`MuonW` (Muon on the matrices, AdamW on the rest) built with it.
- :data:`REGISTRY` and :func:`build_optimizer`: ``adam``, ``adamw``, ``adamwr``, ``sgd``, ``sgdw``, ``sgdwr``,
  ``adamc``, ``sgdc``, ``radamw``, ``nadamw``, ``muonw``, and third-party entries added with :func:`register` or
  through the entry-point group ``wdlab.optimizers`` (:mod:`wdlab.optim.registry`);
  :func:`wdlab.testing.check_optimizer` tests them.
"""

from wdlab.optim import schedules
from wdlab.optim.decay import (
    DecayForms,
    NormalizedDecay,
    convert_decay,
    decay_table,
    normalized_weight_decay,
    param_groups,
    timescale_weight_decay,
)
from wdlab.optim.decoupled import SGDW, AdamW
from wdlab.optim.decoupling import DecoupledWeightDecayMixin
from wdlab.optim.equilibrium import (
    adamw_equilibrium_angle,
    angular_update,
    decayed_matrices,
    equilibrium_angle,
    predicted_angular_update,
    sgd_l2_equilibrium_angle,
    sgdw_equilibrium_angle,
)
from wdlab.optim.muon import MuonW
from wdlab.optim.registry import (
    HYPERPARAMETERS,
    REGISTRY,
    OptimizerConfig,
    OptimizerRegistry,
    OptimizerSpec,
    build_optimizer,
    register,
    resolve_hyperparameters,
)
from wdlab.optim.schedules import ScheduledLR, make_schedule
from wdlab.optim.validation import DECAY_MASKS, DECAY_SCALINGS
from wdlab.optim.wrapped import NAdamW, RAdamW, decoupled

__all__ = [
    "DECAY_MASKS",
    "DECAY_SCALINGS",
    "HYPERPARAMETERS",
    "REGISTRY",
    "SGDW",
    "AdamW",
    "DecayForms",
    "DecoupledWeightDecayMixin",
    "MuonW",
    "NAdamW",
    "NormalizedDecay",
    "OptimizerConfig",
    "OptimizerRegistry",
    "OptimizerSpec",
    "RAdamW",
    "ScheduledLR",
    "adamw_equilibrium_angle",
    "angular_update",
    "build_optimizer",
    "convert_decay",
    "decay_table",
    "decayed_matrices",
    "decoupled",
    "equilibrium_angle",
    "make_schedule",
    "normalized_weight_decay",
    "param_groups",
    "predicted_angular_update",
    "register",
    "resolve_hyperparameters",
    "schedules",
    "sgd_l2_equilibrium_angle",
    "sgdw_equilibrium_angle",
    "timescale_weight_decay",
]
