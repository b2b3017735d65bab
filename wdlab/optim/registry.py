"""The built-in optimizer entries (the paper's six setups, the corrected-decay variants) and the default registry.

========  =====================  ==============  ==================  ========================
entry     optimizer              decay           schedule            defaults
========  =====================  ==============  ==================  ========================
adam      torch.optim.Adam       L2 (coupled)    cosine              lr 1e-3, wd 5e-4
adamw     wdlab AdamW            decoupled       cosine              lr 1e-3, wd 1.25e-4
adamwr    wdlab AdamW            normalized      warm restarts       lr 1e-3, wd_norm 0.025
sgd       torch.optim.SGD        L2 (coupled)    cosine              lr 0.05, mom 0.9, wd 5e-4
sgdw      wdlab SGDW             decoupled       cosine              lr 0.05, mom 0.9, wd 1.25e-4
sgdwr     wdlab SGDW             normalized      warm restarts       lr 0.05, mom 0.9, wd_norm 0.025
adamc     wdlab AdamW            corrected       cosine              lr 1e-3, wd 1.25e-4
sgdc      wdlab SGDW             corrected       cosine              lr 0.05, mom 0.9, wd 1.25e-4
radamw    torch RAdam, wrapped   decoupled       cosine              lr 1e-3, wd 1.25e-4
nadamw    torch NAdam, wrapped   decoupled       cosine              lr 1e-3, wd 1.25e-4
muonw     Muon + wdlab AdamW     normalized      warm restarts       lr 1e-3, mom 0.95, wd_norm 0.025
========  =====================  ==============  ==================  ========================

``adamc`` / ``sgdc`` (AdamC / SGDC, Defazio et al. 2025) are ``adamw`` / ``sgdw`` with
``decay_scaling="corrected"``: per-step decay eta_t^2 * lambda instead of eta_t * lambda (see
:mod:`wdlab.optim.decoupled`). They come after the paper's six, which keep their order in listings.

``radamw``, ``nadamw`` and ``muonw`` give torch's RAdam, NAdam and Muon the paper's decay
(:func:`wdlab.optim.wrapped.decoupled`; ``muonw``: :class:`wdlab.optim.muon.MuonW`, Muon on the weight matrices
and AdamW on the rest). ``muonw`` takes ``adamwr``'s schedule and decay, so a config written for ``adamwr`` runs it
by its name alone; its lr is AdamW's because torch's Muon scales its update to AdamW's RMS (``match_rms_adamw``).

Learning rates, momentum and lambda_norm = 0.025 are the paper's. The raw decoupled default
1.25e-4 is lambda_norm = 0.025 at the paper's CIFAR-10 setup (b = 128, B = 50,000, T = 100
epochs; 1.26e-4) rounded onto the paper's Fig. 2 grid (1/8 x 0.001). Warm restarts default to
the paper's CIFAR-10 periods (t0_epochs = 100, t_mult = 2: ends at 100, 300, 700, 1500).

Decay is set by exactly one of ``weight_decay`` (raw lambda), ``weight_decay_norm`` (lambda_norm,
recomputed per period) or ``weight_decay_timescale`` (tau in epochs, lambda = 1 / (tau * steps_per_epoch),
decoupled entries only); see :mod:`wdlab.optim.decay`.

**Third-party entries.** :func:`register` adds an :class:`OptimizerSpec` (checked by :func:`check_spec`) to
:data:`REGISTRY`, and packages declare entries in the entry-point group ``wdlab.optimizers``::

    [project.entry-points."wdlab.optimizers"]
    lion = "my_package.optim:LION"          # an OptimizerSpec, or a function returning one

How entry points are loaded, and what happens to a broken one: :mod:`wdlab.optim.store`. This module holds
the built-in entries (:data:`BUILTIN`) and the default registry (:data:`REGISTRY`, an
:class:`~wdlab.optim.store.OptimizerRegistry`), with its methods as functions. Every lookup
(:func:`build_optimizer`, :func:`resolve_hyperparameters`, configs, sweeps, ``wdlab optimizers``)
reads the same :data:`REGISTRY`. :func:`wdlab.testing.check_optimizer` runs the built-in entries' test
battery on any entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch.optim import Optimizer

from wdlab.optim.decoupled import SGDW, AdamW
from wdlab.optim.factory import check_spec
from wdlab.optim.muon import MuonW
from wdlab.optim.schedules import ScheduledLR
from wdlab.optim.spec import (
    CLASS_HYPERPARAMETERS,
    HYPERPARAMETERS,
    OptimizerConfig,
    OptimizerSpec,
    takes_argument,
)
from wdlab.optim.store import ENTRY_POINT_GROUP, OptimizerRegistry
from wdlab.optim.wrapped import NAdamW, RAdamW

__all__ = [
    "BUILTIN",
    "CLASS_HYPERPARAMETERS",
    "ENTRY_POINT_GROUP",
    "HYPERPARAMETERS",
    "REGISTRY",
    "OptimizerConfig",
    "OptimizerRegistry",
    "OptimizerSpec",
    "build_optimizer",
    "check_spec",
    "origin_of",
    "register",
    "resolve_hyperparameters",
    "takes_argument",
    "unavailable_entries",
]

_ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}
_SGD = {"lr": 0.05, "momentum": 0.9, "nesterov": False}
_COSINE = {"schedule": "cosine", "eta_min": 0.0, "warmup_epochs": 0.0}
_RESTARTS = {"schedule": "warm_restarts", "t0_epochs": 100, "t_mult": 2, "eta_min": 0.0, "warmup_epochs": 0.0}
_DECOUPLED_RAW = {"weight_decay": 1.25e-4, "decay_scaling": "schedule"}
_DECOUPLED_NORM = {"weight_decay_norm": 0.025, "decay_scaling": "schedule"}
_CORRECTED_RAW = {"weight_decay": 1.25e-4, "decay_scaling": "corrected"}
_L2 = {"weight_decay": 5e-4}
_ADAM_HP = ("betas", "eps")
_MUON = {"momentum": 0.95, "nesterov": True}
_SGD_HP = ("momentum", "nesterov")


def _spec(name: str, cls: type[Optimizer], decoupled: bool, hyperparameters: tuple[str, ...], description: str,
          **defaults: Any) -> OptimizerSpec:
    return OptimizerSpec(name, cls, decoupled, hyperparameters, MappingProxyType(defaults), description)


#: The entries wdlab ships: never replaced, always listed first.
BUILTIN: Mapping[str, OptimizerSpec] = MappingProxyType(
    {
        "adam": _spec("adam", torch.optim.Adam, False, _ADAM_HP, "Adam with L2 regularization (baseline)",
                      **_ADAM, **_L2, **_COSINE),
        "adamw": _spec("adamw", AdamW, True, _ADAM_HP, "Adam with decoupled weight decay (Algorithm 2)",
                       **_ADAM, **_DECOUPLED_RAW, **_COSINE),
        "adamwr": _spec("adamwr", AdamW, True, _ADAM_HP, "AdamW + warm restarts + normalized weight decay",
                        **_ADAM, **_DECOUPLED_NORM, **_RESTARTS),
        "sgd": _spec("sgd", torch.optim.SGD, False, _SGD_HP, "SGD with momentum and L2 regularization (baseline)",
                     **_SGD, **_L2, **_COSINE),
        "sgdw": _spec("sgdw", SGDW, True, _SGD_HP, "SGD with momentum and decoupled weight decay",
                      **_SGD, **_DECOUPLED_RAW, **_COSINE),
        "sgdwr": _spec("sgdwr", SGDW, True, _SGD_HP, "SGDW + warm restarts + normalized weight decay",
                       **_SGD, **_DECOUPLED_NORM, **_RESTARTS),
        "adamc": _spec("adamc", AdamW, True, _ADAM_HP,
                       "AdamC: AdamW with corrected decay eta_t^2 * lambda (Defazio et al. 2025)",
                       **_ADAM, **_CORRECTED_RAW, **_COSINE),
        "sgdc": _spec("sgdc", SGDW, True, _SGD_HP,
                      "SGDC: SGDW with corrected decay eta_t^2 * lambda (Defazio et al. 2025)",
                      **_SGD, **_CORRECTED_RAW, **_COSINE),
        "radamw": _spec("radamw", RAdamW, True, _ADAM_HP, "RAdam (torch) with decoupled weight decay",
                        **_ADAM, **_DECOUPLED_RAW, **_COSINE),
        "nadamw": _spec("nadamw", NAdamW, True, _ADAM_HP, "NAdam (torch) with decoupled weight decay",
                        **_ADAM, **_DECOUPLED_RAW, **_COSINE),
        "muonw": _spec("muonw", MuonW, True, (*_ADAM_HP, *_MUON),
                       "Muon (torch) on weight matrices + AdamW on the rest, decoupled decay, as adamwr",
                       **_ADAM, **_MUON, **_DECOUPLED_NORM, **_RESTARTS),
    }
)

#: Every entry by name: :data:`BUILTIN`, then the entry points and :func:`register` calls, in the order added.
REGISTRY = OptimizerRegistry(BUILTIN)


def register(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add ``spec`` to :data:`REGISTRY` (:meth:`wdlab.optim.store.OptimizerRegistry.register`: checked, never
    over a built-in, over another entry only with ``replace=True``). Returns ``spec``."""
    return REGISTRY.register(spec, replace=replace)


def origin_of(name: str) -> str:
    """Where entry ``name`` comes from: ``built-in``, ``register()`` or ``entry point <distribution> <version>``."""
    return REGISTRY.origin_of(name)


def unavailable_entries() -> Mapping[str, str]:
    """The ``wdlab.optimizers`` entry points that could not be added, by name, with the reason (one line each)."""
    return REGISTRY.unavailable_entries()


def resolve_hyperparameters(name: str, overrides: Mapping[str, Any]) -> tuple[OptimizerSpec, dict[str, Any]]:
    """The entry and its hyperparameters after ``overrides``, validated (ValueError on bad input)."""
    return REGISTRY.resolve_hyperparameters(name, overrides)


def build_optimizer(
    name: str | OptimizerSpec,
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    *,
    steps_per_epoch: int,
    max_epochs: int,
    batch_size: int,
    num_train: int,
    fused: bool | None = None,
    **overrides: Any,
) -> tuple[Optimizer, ScheduledLR]:
    """Build the registry entry ``name`` and its LR scheduler (step it once per batch).

    ``name`` may also be an :class:`OptimizerSpec` itself (one not registered is checked by :func:`check_spec`).
    ``overrides`` are hyperparameters by name (see :data:`HYPERPARAMETERS`). The arguments, the decay
    parameterizations and ``fused``: :func:`wdlab.optim.factory.build`.
    """
    return REGISTRY.build_optimizer(name, params, steps_per_epoch=steps_per_epoch, max_epochs=max_epochs,
                                    batch_size=batch_size, num_train=num_train, fused=fused, **overrides)
