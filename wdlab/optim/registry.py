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

**Third-party entries.** :func:`register` adds an :class:`OptimizerSpec` (checked by :func:`check_spec`), and
packages declare entries in the entry-point group ``wdlab.optimizers``::

    [project.entry-points."wdlab.optimizers"]
    lion = "my_package.optim:LION"          # an OptimizerSpec, or a function returning one

Entry points are loaded once, the first time the registry is used (looked up, listed, or registered into).
A broken entry point (its module fails to import, it gives no valid spec, its name is taken) is skipped
with one warning naming the entry point and its distribution, so the built-in entries and every other
entry keep working; asking for that name then fails with the same reason (see :func:`unavailable_entries`).
Every lookup (:func:`build_optimizer`, :func:`resolve_hyperparameters`, configs, sweeps, ``wdlab optimizers``)
reads the same :data:`REGISTRY`. :func:`wdlab.testing.check_optimizer` runs the built-in entries' test
battery on any entry.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
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
_DECOUPLED_ONLY = ("decay_scaling", "weight_decay_timescale")
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
        if key in _DECOUPLED_ONLY:
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
    }
)

#: The entry-point group packages declare their entries in.
ENTRY_POINT_GROUP = "wdlab.optimizers"

_entries: dict[str, OptimizerSpec] = dict(BUILTIN)
_origins: dict[str, str] = dict.fromkeys(BUILTIN, "built-in")
_unavailable: dict[str, str] = {}  # entry-point name -> why it is not in the registry
_entry_points_loaded = False


class _Registry(Mapping[str, OptimizerSpec]):
    """A read-only view of the entries; the first use loads the ``wdlab.optimizers`` entry points."""

    def __getitem__(self, name: str) -> OptimizerSpec:
        _load_entry_points()
        return _entries[name]

    def __iter__(self) -> Iterator[str]:
        _load_entry_points()
        return iter(list(_entries))  # a copy: registering while iterating must not break the loop

    def __len__(self) -> int:
        _load_entry_points()
        return len(_entries)

    def __contains__(self, name: object) -> bool:
        _load_entry_points()
        return name in _entries

    def __repr__(self) -> str:
        return f"REGISTRY({', '.join(self)})"


#: Every entry by name: :data:`BUILTIN`, then the entry points and :func:`register` calls, in the order added.
REGISTRY: Mapping[str, OptimizerSpec] = _Registry()

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


def register(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add ``spec`` to :data:`REGISTRY` under ``spec.name``; every lookup by name sees it from then on.

    The spec is checked first (:func:`check_spec`: name, class, capability fields, defaults, and one
    construction with its defaults). A name already taken is refused unless ``replace=True``; a built-in
    name is always refused. Returns ``spec``, so ``LION = register(OptimizerSpec(...))`` works.
    Raises ValueError (one line: the problem and the fix).
    """
    _load_entry_points()  # so a clash with an installed entry point is found now, not later
    _add(spec, replace=replace, origin="register()")
    return spec


def origin_of(name: str) -> str:
    """Where entry ``name`` comes from: ``built-in``, ``register()`` or ``entry point <distribution> <version>``."""
    _load_entry_points()
    return _origins[name]


def unavailable_entries() -> Mapping[str, str]:
    """The ``wdlab.optimizers`` entry points that could not be added, by name, with the reason (one line each)."""
    _load_entry_points()
    return MappingProxyType(_unavailable)


def _add(spec: OptimizerSpec, *, replace: bool, origin: str) -> None:
    check_spec(spec)
    name = spec.name
    if name in BUILTIN:
        raise ValueError(f"optimizer name {name!r} is a built-in entry and cannot be replaced; "
                         f"register yours under another name")
    if name in _entries and not replace:
        raise ValueError(f"optimizer name {name!r} is already registered ({_origins[name]}); "
                         f"pass replace=True to replace it, or choose another name")
    _entries[name] = spec
    _origins[name] = origin
    _unavailable.pop(name, None)


def check_spec(spec: OptimizerSpec) -> None:
    """Refuse (ValueError, one line naming the problem and the fix) a spec the factory could not build right.

    What the capability fields imply: a valid name; an ``optimizer_class`` that is a torch Optimizer taking
    ``lr``, ``weight_decay`` and each of ``hyperparameters`` (some of :data:`CLASS_HYPERPARAMETERS`), and
    ``decay_scaling`` when ``decoupled``; ``defaults`` with ``lr``, ``schedule``, exactly one decay key,
    ``decay_scaling`` for decoupled entries, a value for each hyperparameter and nothing the entry does not
    take; values that pass the same checks as user overrides; and one construction with those defaults.
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
    for argument in ("lr", "weight_decay", *hps):
        if not takes_argument(cls, argument):
            raise ValueError(f"{where}: {cls.__name__} does not take {argument}=, which build_optimizer passes it")
    try:
        _resolve(spec, {})
    except ValueError as error:
        raise ValueError(f"{where}: bad defaults: {error}") from None
    try:  # the class itself may refuse what the checks above cannot see
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _build(spec, [torch.nn.Parameter(torch.zeros(1))], steps_per_epoch=1, max_epochs=1000, batch_size=1,
                   num_train=1, fused=None, overrides={})
    except Exception as error:
        raise ValueError(f"{where}: {cls.__name__} cannot be built with the entry's defaults: "
                         f"{type(error).__name__}: {' '.join(str(error).split())}") from None


def takes_argument(cls: type, argument: str) -> bool:
    """Whether ``cls(...)`` accepts the keyword ``argument`` (True when the signature cannot be read)."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True
    return argument in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _load_entry_points() -> None:
    """Add the ``wdlab.optimizers`` entry points, once per process; a broken one is skipped with a warning."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True  # first: an entry point's module may use the registry (or register()) as it loads
    by_name: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found = by_name.setdefault(ep.name, [])
        if all(ep.value != other.value for other in found):  # one distribution seen twice on sys.path is one
            found.append(ep)
    for name, eps in by_name.items():
        if len(eps) > 1:
            declared = "; ".join(f"{ep.value} ({_distribution(ep)})" for ep in eps)
            _skip(name, f"several distributions declare entry point {name!r} ({declared}); uninstall all but one")
            continue
        (ep,) = eps
        where = f"entry point {name!r} = {ep.value!r} of distribution {_distribution(ep)}"
        try:
            loaded = ep.load()
            spec = loaded if isinstance(loaded, OptimizerSpec) or not callable(loaded) else loaded()
            if not isinstance(spec, OptimizerSpec):
                raise ValueError(f"it gives {type(spec).__name__}, not an OptimizerSpec (or a function returning one)")
            if spec.name != name:
                raise ValueError(f"it gives an entry named {spec.name!r}; name the entry point after the entry")
            origin = f"entry point {_distribution(ep)}"
            if _entries.get(name) is spec:  # its module registered it while being imported
                _origins[name] = origin
            else:
                _add(spec, replace=False, origin=origin)
        except Exception as error:  # any failure of a third party's code must not break wdlab's own entries
            _skip(name, f"{where} failed: {type(error).__name__}: {' '.join(str(error).split())}")


def _skip(name: str, reason: str) -> None:
    _unavailable[name] = reason
    warnings.warn(f"wdlab skipped optimizer {name!r}: {reason}", stacklevel=4)


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "(unknown distribution)"
    return f"{dist.metadata['Name'] or dist.name} {dist.version}"


def _lookup(name: str) -> OptimizerSpec:
    if name not in REGISTRY:
        if name in _unavailable:
            raise ValueError(f"optimizer {name!r} is not available: {_unavailable[name]}")
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def resolve_hyperparameters(name: str, overrides: Mapping[str, Any]) -> tuple[OptimizerSpec, dict[str, Any]]:
    """The entry and its hyperparameters after ``overrides``, validated (ValueError on bad input)."""
    spec = _lookup(name)
    return spec, _resolve(spec, overrides)


def _resolve(spec: OptimizerSpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
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
    the optimizer class only when it is not ``None`` and the class takes a ``fused`` argument (a third-party
    class without one runs its own kernel: the choice is about speed, never the math).
    """
    if isinstance(name, OptimizerSpec):
        spec = name
        if _entries.get(spec.name) is not spec:
            check_spec(spec)
    else:
        spec = _lookup(name)
    return _build(spec, params, steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, batch_size=batch_size,
                  num_train=num_train, fused=fused, overrides=overrides)


def _build(
    spec: OptimizerSpec,
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    *,
    steps_per_epoch: int,
    max_epochs: int,
    batch_size: int,
    num_train: int,
    fused: bool | None,
    overrides: Mapping[str, Any],
) -> tuple[Optimizer, ScheduledLR]:
    name = spec.name
    for arg, value in (("steps_per_epoch", steps_per_epoch), ("max_epochs", max_epochs),
                       ("batch_size", batch_size), ("num_train", num_train)):
        check_int(arg, value, 1)
    hp = _resolve(spec, overrides)
    schedule = make_schedule(
        hp["schedule"],
        steps_per_epoch=steps_per_epoch,
        max_epochs=max_epochs,
        milestones=hp.get("milestones"),
        t0_epochs=hp.get("t0_epochs"),
        t_mult=hp.get("t_mult", 2.0),
        eta_min=hp.get("eta_min", 0.0),
        warmup_epochs=hp.get("warmup_epochs", 0.0),  # optional in a third-party entry's defaults
    )
    if max_epochs not in schedule.period_end_epochs():
        warnings.warn(
            f"the run ends after {max_epochs} epochs, inside a schedule period (periods end at epochs "
            f"{schedule.period_end_epochs(max_epochs) or 'none yet'}; next at "
            f"{schedule.period_of_epoch(max_epochs - 1).end_epoch}): the last model is not a period-end "
            f"snapshot; set max_epochs to a period end or adjust t0_epochs/t_mult",
            stacklevel=3,
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
    if fused is not None and takes_argument(spec.optimizer_class, "fused"):
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
