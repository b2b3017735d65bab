"""The optimizer registry: the paper's six setups by name, and one factory.

========  =====================  ==============  ==================  ========================
entry     optimizer              decay           schedule            defaults
========  =====================  ==============  ==================  ========================
adam      torch.optim.Adam       L2 (coupled)    cosine              lr 1e-3, wd 5e-4
adamw     wdlab AdamW            decoupled       cosine              lr 1e-3, wd 1.25e-4
adamwr    wdlab AdamW            normalized      warm restarts       lr 1e-3, wd_norm 0.025
sgd       torch.optim.SGD        L2 (coupled)    cosine              lr 0.05, mom 0.9, wd 5e-4
sgdw      wdlab SGDW             decoupled       cosine              lr 0.05, mom 0.9, wd 1.25e-4
sgdwr     wdlab SGDW             normalized      warm restarts       lr 0.05, mom 0.9, wd_norm 0.025
========  =====================  ==============  ==================  ========================

Learning rates, momentum and lambda_norm = 0.025 are the paper's. The raw decoupled default
1.25e-4 is lambda_norm = 0.025 at the paper's CIFAR-10 setup (b = 128, B = 50,000, T = 100
epochs; 1.26e-4) rounded onto the paper's Fig. 2 grid (1/8 x 0.001). Warm restarts default to
the paper's CIFAR-10 periods (t0_epochs = 100, t_mult = 2: ends at 100, 300, 700, 1500).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypedDict

import torch
from torch.optim import Optimizer

from wdlab._checks import check_int
from wdlab.optim.decoupled import SGDW, AdamW
from wdlab.optim.schedules import NormalizedDecay, ScheduledLR, make_schedule
from wdlab.optim.validation import (
    check_betas,
    check_decay_scaling,
    check_eps,
    check_lr,
    check_momentum,
    check_weight_decay,
)

#: Every hyperparameter name build_optimizer accepts (and configs use under ``model.optimizer``).
HYPERPARAMETERS = (
    "lr",
    "weight_decay",
    "weight_decay_norm",
    "decay_scaling",
    "momentum",
    "nesterov",
    "betas",
    "eps",
    "schedule",
    "milestones",
    "t0_epochs",
    "t_mult",
    "eta_min",
    "warmup_epochs",
)



class OptimizerConfig(TypedDict, total=False):
    """An optimizer as configs write it under ``model.optimizer``: a registry ``name`` and overrides.

    Every key but ``name`` is optional; a missing key takes the entry's default.
    """

    name: str
    lr: float
    weight_decay: float
    weight_decay_norm: float
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


_FAMILY_PARAMETERS = {"adam": ("betas", "eps"), "sgd": ("momentum", "nesterov")}
_SCHEDULE_PARAMETERS = {
    "constant": (),
    "multistep": ("milestones",),
    "cosine": ("eta_min",),
    "warm_restarts": ("t0_epochs", "t_mult", "eta_min"),
}
_ALL_SCHEDULE_PARAMETERS = ("milestones", "t0_epochs", "t_mult", "eta_min")


@dataclass(frozen=True)
class OptimizerSpec:
    """A registry entry: the optimizer class, its defaults, its schedule and decay parameterization."""

    name: str
    optimizer_class: type[Optimizer]
    family: str  # "adam" or "sgd": which of betas/eps or momentum/nesterov apply
    decoupled: bool  # False: L2 added to the gradient (the paper's baselines)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def decay_parameterization(self) -> str:
        """``normalized`` (lambda from lambda_norm per period) or ``raw`` (lambda as given)."""
        return "normalized" if "weight_decay_norm" in self.defaults else "raw"

    @property
    def schedule(self) -> str:
        return self.defaults["schedule"]

    def accepts(self, key: str) -> bool:
        """Whether ``key`` is a hyperparameter of this entry (schedule keys: of some schedule)."""
        if key in ("betas", "eps", "momentum", "nesterov"):
            return key in _FAMILY_PARAMETERS[self.family]
        if key == "decay_scaling":
            return self.decoupled
        return key in HYPERPARAMETERS


_ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}
_SGD = {"lr": 0.05, "momentum": 0.9, "nesterov": False}
_COSINE = {"schedule": "cosine", "eta_min": 0.0, "warmup_epochs": 0.0}
_RESTARTS = {"schedule": "warm_restarts", "t0_epochs": 100, "t_mult": 2, "eta_min": 0.0, "warmup_epochs": 0.0}
_DECOUPLED_RAW = {"weight_decay": 1.25e-4, "decay_scaling": "schedule"}
_DECOUPLED_NORM = {"weight_decay_norm": 0.025, "decay_scaling": "schedule"}
_L2 = {"weight_decay": 5e-4}


def _spec(name: str, cls: type[Optimizer], family: str, decoupled: bool, description: str, **d: Any) -> OptimizerSpec:
    return OptimizerSpec(name, cls, family, decoupled, MappingProxyType(d), description)


REGISTRY: Mapping[str, OptimizerSpec] = MappingProxyType(
    {
        "adam": _spec("adam", torch.optim.Adam, "adam", False, "Adam with L2 regularization (baseline)",
                      **_ADAM, **_L2, **_COSINE),
        "adamw": _spec("adamw", AdamW, "adam", True, "Adam with decoupled weight decay (Algorithm 2)",
                       **_ADAM, **_DECOUPLED_RAW, **_COSINE),
        "adamwr": _spec("adamwr", AdamW, "adam", True, "AdamW + warm restarts + normalized weight decay",
                        **_ADAM, **_DECOUPLED_NORM, **_RESTARTS),
        "sgd": _spec("sgd", torch.optim.SGD, "sgd", False, "SGD with momentum and L2 regularization (baseline)",
                     **_SGD, **_L2, **_COSINE),
        "sgdw": _spec("sgdw", SGDW, "sgd", True, "SGD with momentum and decoupled weight decay",
                      **_SGD, **_DECOUPLED_RAW, **_COSINE),
        "sgdwr": _spec("sgdwr", SGDW, "sgd", True, "SGDW + warm restarts + normalized weight decay",
                       **_SGD, **_DECOUPLED_NORM, **_RESTARTS),
    }
)


def resolve_hyperparameters(name: str, overrides: Mapping[str, Any]) -> tuple[OptimizerSpec, dict[str, Any]]:
    """The entry and its hyperparameters after ``overrides``, validated (ValueError on bad input)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(REGISTRY)}")
    spec = REGISTRY[name]
    unknown = [k for k in overrides if k not in HYPERPARAMETERS]
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for optimizer {name!r}; "
            f"known: {', '.join(HYPERPARAMETERS)}"
        )
    for key in overrides:
        if not spec.accepts(key):
            raise ValueError(f"hyperparameter {key!r} does not apply to optimizer {name!r} ({spec.description})")
    if "weight_decay" in overrides and "weight_decay_norm" in overrides:
        raise ValueError(
            "give either weight_decay (raw lambda) or weight_decay_norm (normalized lambda), not both"
        )

    hp = dict(spec.defaults)
    if "weight_decay" in overrides:
        hp.pop("weight_decay_norm", None)
    if "weight_decay_norm" in overrides:
        hp.pop("weight_decay", None)
    hp.update(overrides)

    schedule = hp["schedule"]
    if schedule not in _SCHEDULE_PARAMETERS:
        raise ValueError(f"schedule must be one of {', '.join(_SCHEDULE_PARAMETERS)}; got {schedule!r}")
    for key in _ALL_SCHEDULE_PARAMETERS:
        if key not in _SCHEDULE_PARAMETERS[schedule]:
            if key in overrides:
                raise ValueError(f"hyperparameter {key!r} does not apply to schedule {schedule!r}")
            hp.pop(key, None)

    check_lr(hp["lr"])
    if "weight_decay" in hp:
        check_weight_decay(hp["weight_decay"])
    else:
        lam = hp["weight_decay_norm"]
        if isinstance(lam, bool) or not isinstance(lam, int | float) or lam < 0:
            raise ValueError(f"weight_decay_norm must be a number >= 0, got {lam!r}")
    if spec.family == "adam":
        check_betas(hp["betas"])
        hp["betas"] = tuple(hp["betas"])
        check_eps(hp["eps"])
    else:
        if not isinstance(hp["nesterov"], bool):
            raise ValueError(f"nesterov must be true or false, got {hp['nesterov']!r}")
        check_momentum(hp["momentum"], 0.0, hp["nesterov"])
    if spec.decoupled:
        check_decay_scaling(hp["decay_scaling"])
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
    normalized = None
    if "weight_decay_norm" in hp:
        normalized = NormalizedDecay(batch_size=batch_size, num_train=num_train)
        first_period = schedule.period_epochs(0)
        for group in groups:
            if "weight_decay" in group and "weight_decay_norm" not in group:
                continue  # an explicit raw decay (e.g. the zero-decay group) is kept as given
            group.setdefault("weight_decay_norm", hp["weight_decay_norm"])
            group["weight_decay"] = normalized.weight_decay(group["weight_decay_norm"], first_period)
        weight_decay = normalized.weight_decay(hp["weight_decay_norm"], first_period)
    else:
        weight_decay = hp["weight_decay"]

    kwargs: dict[str, Any] = {"lr": hp["lr"], "weight_decay": weight_decay}
    if spec.family == "adam":
        kwargs.update(betas=hp["betas"], eps=hp["eps"])
    else:
        kwargs.update(momentum=hp["momentum"], nesterov=hp["nesterov"])
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
