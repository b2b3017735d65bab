"""The optimizer registry: the paper's six setups and the corrected-decay variants by name, and one factory.

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
========  =====================  ==============  ==================  ========================

``adamc`` / ``sgdc`` (AdamC / SGDC, Defazio et al. 2025) are ``adamw`` / ``sgdw`` with
``decay_scaling="corrected"``: per-step decay eta_t^2 * lambda instead of eta_t * lambda (see
:mod:`wdlab.optim.decoupled`). They come last so the paper's six keep their order in listings.

Learning rates, momentum and lambda_norm = 0.025 are the paper's. The raw decoupled default
1.25e-4 is lambda_norm = 0.025 at the paper's CIFAR-10 setup (b = 128, B = 50,000, T = 100
epochs; 1.26e-4) rounded onto the paper's Fig. 2 grid (1/8 x 0.001). Warm restarts default to
the paper's CIFAR-10 periods (t0_epochs = 100, t_mult = 2: ends at 100, 300, 700, 1500).

Decay is set by exactly one of ``weight_decay`` (raw lambda), ``weight_decay_norm`` (lambda_norm,
recomputed per period) or ``weight_decay_timescale`` (tau in epochs, lambda = 1 / (tau * steps_per_epoch),
decoupled entries only); see :mod:`wdlab.optim.decay`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypedDict

import torch
from torch.optim import Optimizer

from wdlab._checks import check_int
from wdlab.optim.decay import (
    DECAY_KEYS,
    NormalizedDecay,
    check_weight_decay_norm,
    check_weight_decay_timescale,
    init_timescale_groups,
    timescale_group_weight_decay,
)
from wdlab.optim.decoupled import SGDW, AdamW
from wdlab.optim.schedules import SCHEDULE_NAMES, SCHEDULES, ScheduledLR, make_schedule
from wdlab.optim.validation import (
    check_betas,
    check_decay_scaling,
    check_eps,
    check_lr,
    check_momentum,
    check_weight_decay,
)


class OptimizerConfig(TypedDict, total=False):
    """An optimizer as configs write it under ``model.optimizer``: a registry ``name`` and overrides.

    Every key but ``name`` is optional; a missing key takes the entry's default.
    """

    name: str
    lr: float
    weight_decay: float
    weight_decay_norm: float
    weight_decay_timescale: float
    decay_scaling: str
    momentum: float
    nesterov: bool
    betas: tuple[float, float]
    eps: float
    schedule: str
    milestones: list[int]
    t0_epochs: int
    t_mult: float
    eta_min: float
    warmup_epochs: float


#: Every hyperparameter name build_optimizer accepts (and configs use under ``model.optimizer``).
HYPERPARAMETERS = tuple(key for key in OptimizerConfig.__annotations__ if key != "name")

_SCHEDULE_HYPERPARAMETERS = tuple(dict.fromkeys(key for _, keys in SCHEDULES.values() for key in keys))
#: Hyperparameters every entry takes: learning rate, decay, schedule.
_COMMON = ("lr", "weight_decay", "weight_decay_norm", "schedule", "warmup_epochs", *_SCHEDULE_HYPERPARAMETERS)


def _check_nesterov(hp: Mapping[str, Any]) -> None:
    if not isinstance(hp["nesterov"], bool):
        raise ValueError(f"nesterov must be true or false, got {hp['nesterov']!r}")


#: One check per hyperparameter, applied to the resolved values that are present, in this order.
_CHECKS: tuple[tuple[str, Callable[[Mapping[str, Any]], None]], ...] = (
    ("lr", lambda hp: check_lr(hp["lr"])),
    ("weight_decay", lambda hp: check_weight_decay(hp["weight_decay"])),
    ("weight_decay_norm", lambda hp: check_weight_decay_norm(hp["weight_decay_norm"])),
    ("weight_decay_timescale", lambda hp: check_weight_decay_timescale(hp["weight_decay_timescale"])),
    ("betas", lambda hp: check_betas(hp["betas"])),
    ("eps", lambda hp: check_eps(hp["eps"])),
    ("nesterov", _check_nesterov),
    ("momentum", lambda hp: check_momentum(hp["momentum"], 0.0, hp.get("nesterov", False))),
    ("decay_scaling", lambda hp: check_decay_scaling(hp["decay_scaling"])),
)


@dataclass(frozen=True)
class OptimizerSpec:
    """A registry entry: the optimizer class, its defaults and its capabilities (read generically by the factory).

    Args:
        name: the registry name configs use.
        optimizer_class: a ``torch.optim.Optimizer`` taking ``(params, lr=, weight_decay=, ...)``.
        decoupled: ``True`` for decoupled decay (the class also takes ``decay_scaling``, and the entry
            ``weight_decay_timescale``); ``False``: L2 added to the gradient (the paper's baselines).
        hyperparameters: the class's own hyperparameters beyond lr and decay, passed to it by name
            (``("betas", "eps")`` for Adam, ``("momentum", "nesterov")`` for SGD).
        defaults: every hyperparameter's default, including ``schedule`` and one of ``weight_decay``
            (raw lambda), ``weight_decay_norm`` (normalized) or ``weight_decay_timescale`` (tau in epochs);
            decoupled entries also ``decay_scaling``.
        description: one line for ``wdlab optimizers`` and error messages.
    """

    name: str
    optimizer_class: type[Optimizer]
    decoupled: bool
    hyperparameters: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def decay_parameterization(self) -> str:
        """``normalized`` (lambda from lambda_norm per period), ``timescale`` (lambda = 1 / (tau * S)) or
        ``raw`` (lambda as given)."""
        if "weight_decay_norm" in self.defaults:
            return "normalized"
        return "timescale" if "weight_decay_timescale" in self.defaults else "raw"

    @property
    def decay_scaling(self) -> str | None:
        """The default ``decay_scaling`` of a decoupled entry (``schedule``, ``lr`` or ``corrected``); None for L2."""
        return self.defaults.get("decay_scaling") if self.decoupled else None

    @property
    def schedule(self) -> str:
        return self.defaults["schedule"]

    def accepts(self, key: str) -> bool:
        """Whether ``key`` is a hyperparameter of this entry (schedule keys: of some schedule)."""
        if key in ("decay_scaling", "weight_decay_timescale"):
            return self.decoupled
        return key in _COMMON or key in self.hyperparameters


_ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}
_SGD = {"lr": 0.05, "momentum": 0.9, "nesterov": False}
_COSINE = {"schedule": "cosine", "eta_min": 0.0, "warmup_epochs": 0.0}
_RESTARTS = {"schedule": "warm_restarts", "t0_epochs": 100, "t_mult": 2, "eta_min": 0.0, "warmup_epochs": 0.0}
_DECOUPLED_RAW = {"weight_decay": 1.25e-4, "decay_scaling": "schedule"}
_DECOUPLED_NORM = {"weight_decay_norm": 0.025, "decay_scaling": "schedule"}
_CORRECTED_RAW = {"weight_decay": 1.25e-4, "decay_scaling": "corrected"}
_L2 = {"weight_decay": 5e-4}
_ADAM_HP = ("betas", "eps")
_SGD_HP = ("momentum", "nesterov")


def _spec(name: str, cls: type[Optimizer], decoupled: bool, hyperparameters: tuple[str, ...], description: str,
          **defaults: Any) -> OptimizerSpec:
    return OptimizerSpec(name, cls, decoupled, hyperparameters, MappingProxyType(defaults), description)


REGISTRY: Mapping[str, OptimizerSpec] = MappingProxyType(
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
    }
)


def resolve_hyperparameters(name: str, overrides: Mapping[str, Any]) -> tuple[OptimizerSpec, dict[str, Any]]:
    """The entry and its hyperparameters after ``overrides``, validated (ValueError on bad input)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(REGISTRY)}")
    spec = REGISTRY[name]
    unknown = [k for k in overrides if k not in HYPERPARAMETERS and k not in spec.hyperparameters]
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for optimizer {name!r}; "
            f"known: {', '.join(HYPERPARAMETERS)}"
        )
    for key in overrides:
        if not spec.accepts(key):
            raise ValueError(f"hyperparameter {key!r} does not apply to optimizer {name!r} ({spec.description})")
    decay_given = [key for key in DECAY_KEYS if key in overrides]
    if set(decay_given) == {"weight_decay", "weight_decay_norm"}:
        raise ValueError(
            "give either weight_decay (raw lambda) or weight_decay_norm (normalized lambda), not both"
        )
    if len(decay_given) > 1:
        raise ValueError(
            "give only one of weight_decay (raw lambda), weight_decay_norm (normalized lambda) or "
            f"weight_decay_timescale (tau in epochs); got {' and '.join(decay_given)}"
        )

    hp = dict(spec.defaults)
    if decay_given:  # the one given replaces the entry's default parameterization
        for key in DECAY_KEYS:
            hp.pop(key, None)
    hp.update(overrides)

    schedule = hp["schedule"]
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULE_NAMES)}; got {schedule!r}")
    takes = SCHEDULES[schedule][1]
    for key in _SCHEDULE_HYPERPARAMETERS:
        if key not in takes:
            if key in overrides:
                raise ValueError(f"hyperparameter {key!r} does not apply to schedule {schedule!r}")
            hp.pop(key, None)

    for key, check in _CHECKS:
        if key in hp:
            check(hp)
    if "betas" in hp:
        hp["betas"] = tuple(hp["betas"])
    return spec, hp


def build_optimizer(
    name: str,
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

    ``params``: parameters or parameter groups (e.g. :func:`wdlab.optim.param_groups`); a group
    may set its own ``lr`` and ``weight_decay``. ``batch_size`` is the *global* batch (per-device
    batch x data-parallel world size) and ``num_train`` the training-set size: both only matter
    for normalized decay, lambda = lambda_norm * sqrt(b / (B * T_i)), recomputed per period.
    Under normalized decay a group that sets ``weight_decay`` keeps that raw value (0 for the
    zero-decay group), and a group may set its own ``weight_decay_norm``.

    ``weight_decay_timescale`` (tau, in epochs; decoupled entries) is resolved here, once, into each
    group's raw lambda = 1 / (tau * ``steps_per_epoch``) (divided by the group's lr under
    ``decay_scaling="lr"``, so the per-step decay at eta_t = 1 is 1 / (tau * S) in every convention); a group
    that sets ``weight_decay`` keeps it, and a group may set its own ``weight_decay_timescale``.
    See :func:`wdlab.optim.decay.timescale_weight_decay`.

    ``overrides`` are hyperparameters by name (see :data:`HYPERPARAMETERS`); bad values raise
    ValueError naming the parameter and the allowed range.

    ``fused`` picks the kernel, not the math: ``True`` runs the optimizer's fused kernel (one launch
    per step for all parameters: what to use on CUDA), ``False`` forbids it, ``None`` (default)
    leaves the optimizer's own default (multi-tensor on CUDA, per-tensor on CPU). It is passed to
    the optimizer class only when it is not ``None``.
    """
    for arg, value in (("steps_per_epoch", steps_per_epoch), ("max_epochs", max_epochs),
                       ("batch_size", batch_size), ("num_train", num_train)):
        check_int(arg, value, 1)
    spec, hp = resolve_hyperparameters(name, overrides)
    schedule = make_schedule(
        hp["schedule"],
        steps_per_epoch=steps_per_epoch,
        max_epochs=max_epochs,
        milestones=hp.get("milestones"),
        t0_epochs=hp.get("t0_epochs"),
        t_mult=hp.get("t_mult", 2.0),
        eta_min=hp.get("eta_min", 0.0),
        warmup_epochs=hp["warmup_epochs"],
    )
    if max_epochs not in schedule.period_end_epochs():
        warnings.warn(
            f"the run ends after {max_epochs} epochs, inside a schedule period (periods end at epochs "
            f"{schedule.period_end_epochs(max_epochs) or 'none yet'}; next at "
            f"{schedule.period_of_epoch(max_epochs - 1).end_epoch}): the last model is not a period-end "
            f"snapshot; set max_epochs to a period end or adjust t0_epochs/t_mult",
            stacklevel=2,
        )

    groups = _as_groups(params)
    timescale = hp.get("weight_decay_timescale")
    if timescale is not None or any("weight_decay_timescale" in group for group in groups):
        if not spec.decoupled:
            raise ValueError(f"weight_decay_timescale does not apply to optimizer {name!r} ({spec.description})")
        init_timescale_groups(groups, steps_per_epoch, timescale=timescale, lr=hp["lr"],
                              decay_scaling=hp["decay_scaling"])
    normalized = None
    if "weight_decay_norm" in hp:
        normalized = NormalizedDecay(batch_size=batch_size, num_train=num_train)
        first_period = schedule.period_epochs(0)
        normalized.init_groups(groups, hp["weight_decay_norm"], first_period)
        weight_decay = normalized.weight_decay(hp["weight_decay_norm"], first_period)
    elif timescale is not None:
        weight_decay = timescale_group_weight_decay(timescale, steps_per_epoch, lr=hp["lr"],
                                                    decay_scaling=hp["decay_scaling"])
    else:
        weight_decay = hp["weight_decay"]

    kwargs: dict[str, Any] = {"lr": hp["lr"], "weight_decay": weight_decay}
    kwargs.update({key: hp[key] for key in spec.hyperparameters})
    if spec.decoupled:
        kwargs["decay_scaling"] = hp["decay_scaling"]
    if fused is not None:
        kwargs["fused"] = bool(fused)
    optimizer = spec.optimizer_class(groups, **kwargs)
    return optimizer, ScheduledLR(optimizer, schedule, normalized)


def _as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    params = list(params)
    if not params:
        raise ValueError("build_optimizer got an empty parameter list")
    if all(isinstance(p, dict) for p in params):
        return [dict(g) for g in params]
    if any(isinstance(p, dict) for p in params):
        raise ValueError("params must be all tensors or all parameter-group dicts, not a mix")
    return [{"params": params}]
