"""The factory: one :class:`~wdlab.optim.spec.OptimizerSpec` built for a run -- its schedule, its decay
(raw, normalized per period, or a timescale) per parameter group, and the optimizer class -- and the full check
of a spec (its fields, then one construction).

Lookup by name is the registry's (:mod:`wdlab.optim.store`, :data:`wdlab.optim.REGISTRY`); this module knows specs only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

from wdlab._checks import check_int
from wdlab.optim.decay import NormalizedDecay, init_timescale_groups, timescale_group_weight_decay
from wdlab.optim.schedules import ScheduledLR, make_schedule
from wdlab.optim.spec import OptimizerSpec, check_fields, resolve, takes_argument


def check_spec(spec: OptimizerSpec) -> None:
    """Refuse (ValueError, one line naming the problem and the fix) a spec the factory could not build right:
    :func:`wdlab.optim.spec.check_fields`, then one construction with the entry's defaults."""
    check_fields(spec)
    where = f"optimizer entry {spec.name!r}"
    cls = spec.optimizer_class
    try:  # the class itself may refuse what the checks above cannot see
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build(spec, [torch.nn.Parameter(torch.zeros(1))], steps_per_epoch=1, max_epochs=1000, batch_size=1,
                   num_train=1, fused=None, overrides={})
    except Exception as error:
        raise ValueError(f"{where}: {cls.__name__} cannot be built with the entry's defaults: "
                         f"{type(error).__name__}: {' '.join(str(error).split())}") from None


def build(
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
    """Build the entry ``spec`` and its LR scheduler (step it once per batch): what
    :func:`wdlab.optim.build_optimizer` does once it has found the entry by name.

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
    name = spec.name
    for arg, value in (("steps_per_epoch", steps_per_epoch), ("max_epochs", max_epochs),
                       ("batch_size", batch_size), ("num_train", num_train)):
        check_int(arg, value, 1)
    hp = resolve(spec, overrides)
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

    groups = as_groups(params)
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
    if "decay_mask" in hp:  # only given (or a default) where the class takes it: OptimizerSpec.accepts
        kwargs["decay_mask"] = hp["decay_mask"]
    if fused is not None and takes_argument(spec.optimizer_class, "fused"):
        kwargs["fused"] = bool(fused)
    optimizer = spec.optimizer_class(groups, **kwargs)
    return optimizer, ScheduledLR(optimizer, schedule, normalized)


def as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    """``params`` as a list of parameter-group dicts (copies), refusing an empty list or a mix."""
    params = list(params)
    if not params:
        raise ValueError("build_optimizer got an empty parameter list")
    if all(isinstance(p, dict) for p in params):
        return [dict(g) for g in params]
    if any(isinstance(p, dict) for p in params):
        raise ValueError("params must be all tensors or all parameter-group dicts, not a mix")
    return [{"params": params}]
