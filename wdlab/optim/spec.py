"""The optimizer schema: what configs write (:class:`OptimizerConfig`), what an entry is (:class:`OptimizerSpec`),
and their validation: a spec's fields (:func:`check_fields`) and a run's hyperparameters (:func:`resolve`).

No registry and no construction here: :mod:`wdlab.optim.factory` builds a spec, :mod:`wdlab.optim.store` holds
entries by name and :mod:`wdlab.optim.registry` is the default store with the built-in entries.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypedDict

from torch.optim import Optimizer

from wdlab.optim.decay import DECAY_KEYS, check_weight_decay_norm, check_weight_decay_timescale
from wdlab.optim.schedules import SCHEDULE_NAMES, SCHEDULES
from wdlab.optim.validation import (
    check_betas,
    check_decay_mask,
    check_decay_scaling,
    check_eps,
    check_lr,
    check_momentum,
    check_weight_decay,
)


class OptimizerConfig(TypedDict, total=False):
    """An optimizer as configs write it under ``model.optimizer``: a registry ``name`` and overrides.

    Every key but ``name`` is optional; a missing key takes the entry's default, and so does a key set to
    ``None`` (``--model.optimizer.weight_decay_norm null`` on the command line unsets what a config file set,
    e.g. to give ``weight_decay`` instead).
    """

    name: str
    lr: float | None
    weight_decay: float | None
    weight_decay_norm: float | None
    weight_decay_timescale: float | None
    decay_scaling: str | None
    decay_mask: str | None
    momentum: float | None
    nesterov: bool | None
    betas: tuple[float, float] | None
    eps: float | None
    schedule: str | None
    milestones: list[int] | None
    t0_epochs: int | None
    t_mult: float | None
    eta_min: float | None
    warmup_epochs: float | None


#: Every hyperparameter name build_optimizer accepts (and configs use under ``model.optimizer``).
HYPERPARAMETERS = tuple(key for key in OptimizerConfig.__annotations__ if key != "name")

_SCHEDULE_HYPERPARAMETERS = tuple(dict.fromkeys(key for _, keys in SCHEDULES.values() for key in keys))
#: Hyperparameters every entry takes: learning rate, decay, schedule.
_COMMON = ("lr", "weight_decay", "weight_decay_norm", "schedule", "warmup_epochs", *_SCHEDULE_HYPERPARAMETERS)
#: Hyperparameters of decoupled entries only.
_DECOUPLED_ONLY = ("decay_scaling", "weight_decay_timescale", "decay_mask")
#: What an entry may list in ``OptimizerSpec.hyperparameters``: the class's own ones that configs can set
#: (a key configs do not know would be refused by the config schema, OptimizerConfig).
CLASS_HYPERPARAMETERS = tuple(k for k in HYPERPARAMETERS if k not in _COMMON and k not in _DECOUPLED_ONLY)


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
    ("decay_mask", lambda hp: check_decay_mask(hp["decay_mask"])),
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

    The capability fields (``decoupled``, ``hyperparameters``, ``defaults``) are all the factory, the config
    checks and :func:`wdlab.testing.check_optimizer` read: a third-party entry declares itself the same way
    (see :func:`register`). ``defaults`` is copied into a read-only mapping, so the entry cannot change later.
    """

    name: str
    optimizer_class: type[Optimizer]
    decoupled: bool
    hyperparameters: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        # Frozen means frozen: a caller's dict (or list) mutated after registration must not change the entry.
        if isinstance(self.defaults, Mapping):
            object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        if isinstance(self.hyperparameters, list):
            object.__setattr__(self, "hyperparameters", tuple(self.hyperparameters))

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
        if key == "decay_mask":  # a third-party decoupled class may not mask its decay
            return self.decoupled and takes_argument(self.optimizer_class, "decay_mask")
        if key in _DECOUPLED_ONLY:
            return self.decoupled
        return key in _COMMON or key in self.hyperparameters


_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


def takes_argument(cls: type, argument: str) -> bool:
    """Whether ``cls(...)`` accepts the keyword ``argument`` (True when the signature cannot be read)."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True
    return argument in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def check_fields(spec: OptimizerSpec) -> None:
    """Refuse (ValueError, one line naming the problem and the fix) a spec whose fields contradict each other.

    What the capability fields imply: a valid name; an ``optimizer_class`` that is a torch Optimizer taking
    ``lr``, ``weight_decay`` and each of ``hyperparameters`` (some of :data:`CLASS_HYPERPARAMETERS`), and
    ``decay_scaling`` when ``decoupled``; ``defaults`` with ``lr``, ``schedule``, exactly one decay key,
    ``decay_scaling`` for decoupled entries, a value for each hyperparameter and nothing the entry does not
    take; and values that pass the same checks as user overrides. (:func:`wdlab.optim.factory.check_spec` adds
    one construction with those defaults.)
    """
    if not isinstance(spec, OptimizerSpec):
        raise ValueError(f"expected a wdlab.optim.OptimizerSpec, got {type(spec).__name__}: build one with "
                         f"OptimizerSpec(name, optimizer_class, decoupled, hyperparameters, defaults, description)")
    name = spec.name
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise ValueError(f"optimizer name {name!r} is not valid: use 1-40 lowercase letters, digits, '_' or '-', "
                         f"starting with a letter (it is typed on command lines and in sweep grids)")
    where = f"optimizer entry {name!r}"
    cls = spec.optimizer_class
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise ValueError(f"{where}: optimizer_class must be a torch.optim.Optimizer subclass, got {cls!r}")
    if not isinstance(spec.decoupled, bool):
        raise ValueError(f"{where}: decoupled must be True (decoupled decay) or False (L2 in the gradient), "
                         f"got {spec.decoupled!r}")
    if not (isinstance(spec.description, str) and spec.description.strip() and "\n" not in spec.description):
        raise ValueError(f"{where}: description must be one non-empty line (wdlab optimizers and error messages "
                         f"show it), got {spec.description!r}")
    hps = spec.hyperparameters
    if not (isinstance(hps, tuple) and all(isinstance(k, str) for k in hps)) or len(set(hps)) != len(hps):
        raise ValueError(f"{where}: hyperparameters must be a tuple of distinct names, e.g. ('betas', 'eps'), "
                         f"got {hps!r}")
    for key in hps:
        if key not in CLASS_HYPERPARAMETERS:
            raise ValueError(
                f"{where}: hyperparameter {key!r} cannot be an entry's own: configs can set only "
                f"{', '.join(CLASS_HYPERPARAMETERS)} (lr, decay and schedule keys are every entry's); give the "
                f"class a default for anything else"
            )
    defaults = spec.defaults
    if not isinstance(defaults, Mapping):
        raise ValueError(f"{where}: defaults must be a mapping of hyperparameter names to values, got {defaults!r}")
    for key in defaults:
        if key in _DECOUPLED_ONLY and not spec.decoupled:
            raise ValueError(f"{where}: default {key!r} applies only to decoupled entries (decoupled=True); drop it")
        if key in CLASS_HYPERPARAMETERS and key not in hps:
            raise ValueError(f"{where}: default {key!r} is not declared in hyperparameters; add it there "
                             f"(the class is then given it) or drop it")
        if key not in HYPERPARAMETERS:
            raise ValueError(f"{where}: default {key!r} is not a hyperparameter; known: {', '.join(HYPERPARAMETERS)}")
    required = ["lr", "schedule", *(["decay_scaling"] if spec.decoupled else []), *hps]
    missing = [key for key in required if key not in defaults]
    if missing:
        raise ValueError(f"{where}: defaults lack {', '.join(missing)}: every entry gives lr and schedule, a decoupled "
                         f"one decay_scaling, and each declared hyperparameter its default")
    decay = [key for key in DECAY_KEYS if key in defaults]
    if len(decay) != 1:
        raise ValueError(f"{where}: defaults must give exactly one of {', '.join(DECAY_KEYS)} (the decay "
                         f"parameterization), got {', '.join(decay) or 'none'}")
    if spec.decoupled and not takes_argument(cls, "decay_scaling"):
        raise ValueError(
            f"{where} is decoupled, but {cls.__name__} does not take decay_scaling=: a decoupled entry's class takes "
            f"decay_scaling ('schedule', 'lr' or 'corrected'), e.g. through wdlab.optim.DecoupledWeightDecayMixin; "
            f"or declare decoupled=False"
        )
    for argument in ("lr", "weight_decay", *hps, *(["decay_mask"] if "decay_mask" in defaults else [])):
        if not takes_argument(cls, argument):
            raise ValueError(f"{where}: {cls.__name__} does not take {argument}=, which build_optimizer passes it")
    try:
        resolve(spec, {})
    except ValueError as error:
        raise ValueError(f"{where}: bad defaults: {error}") from None

def resolve(spec: OptimizerSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's hyperparameters after ``overrides`` (``None`` unsets), each checked (ValueError, one line)."""
    name = spec.name
    overrides = {key: value for key, value in overrides.items() if value is not None}  # None: unset
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
    # A config file's decay key and another one given on top: the fix is to unset the file's one.
    unset = "to replace the one a config file sets, unset it with " + " or ".join(
        f"--model.optimizer.{key} null" for key in decay_given)
    if set(decay_given) == {"weight_decay", "weight_decay_norm"}:
        raise ValueError(
            "give either weight_decay (raw lambda) or weight_decay_norm (normalized lambda), not both; " + unset
        )
    if len(decay_given) > 1:
        raise ValueError(
            "give only one of weight_decay (raw lambda), weight_decay_norm (normalized lambda) or "
            f"weight_decay_timescale (tau in epochs); got {' and '.join(decay_given)}; {unset}"
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
    return hp
