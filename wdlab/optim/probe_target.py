"""The optimizer under test of :func:`wdlab.optim.decay_probe.decay_of`, built from what the user names.

A registry name (built by :func:`wdlab.optim.build_optimizer` with its schedule), a dotted path to an
optimizer class or factory (``torch.optim.AdamW``), or the class itself, with its keyword arguments and an
optional schedule (a wdlab schedule name, a torch LR scheduler class or path, or a function). Everything the
user can get wrong -- an unimportable path, a class that is not an optimizer, an unknown keyword, a group
without ``lr`` or ``weight_decay`` -- is refused here, before any run, with a one-line ``ValueError``.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from wdlab.optim import REGISTRY, build_optimizer
from wdlab.optim.schedules import SCHEDULE_NAMES, ScheduledLR, make_schedule

__all__ = ["PROBE_SHAPE", "ProbeTarget", "StepFailed", "probe_target", "resolve_object"]

PROBE_SHAPE = (4, 4)  # 2-D, so optimizers of matrices (Muon) run too
# Registry entries: one step per epoch; b and B of the paper's CIFAR-10 setup (normalized decay reads them).
_BATCH_SIZE, _NUM_TRAIN = 128, 50_000


class StepFailed(RuntimeError):
    """The optimizer's step() raised on this dtype (the probe tries float32 after float64)."""


@dataclass
class ProbeTarget:
    """How to build the optimizer (and scheduler) under test for one run: ``make(groups, lr_scale, decay)``."""

    name: str
    make: Callable[[list[dict[str, Any]], float, bool], tuple[Optimizer, LRScheduler | None]]
    lr: float  # group 0's initial lr, at lr scale 1
    weight_decay: float  # group 0's weight decay (as built)
    constant_schedule: bool


def resolve_object(path: str) -> Any:
    """The object at a dotted path (``torch.optim.AdamW``): the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ValueError(f"cannot import {path!r}: give an importable optimizer class path (e.g. torch.optim.AdamW) "
                     f"or a registry name ({', '.join(REGISTRY)})")


def _check_keywords(target: Callable[..., Any], name: str, keys: list[str], what: str) -> None:
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    known = [k for k, p in parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    unknown = [k for k in keys if k not in parameters]
    if unknown:
        raise ValueError(f"{name} takes no {what} {', '.join(map(repr, unknown))}; its keyword arguments: "
                         f"{', '.join(known) or 'none'}")


def _construct(call: Callable[[], Any], name: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call()
    except (ValueError, TypeError, RuntimeError, KeyError) as error:
        raise ValueError(f"{name} could not be built: {type(error).__name__}: {' '.join(str(error).split())}; "
                         f"fix its keyword arguments") from None


def probe_target(optimizer: Any, schedule: Any, schedule_kwargs: dict[str, Any], steps: int,
             kwargs: dict[str, Any]) -> ProbeTarget:
    if isinstance(optimizer, str) and "." not in optimizer:
        if optimizer not in REGISTRY:
            raise ValueError(f"unknown optimizer {optimizer!r}: give a registry name ({', '.join(REGISTRY)}) or an "
                             f"importable class path (e.g. torch.optim.AdamW)")
        return _registry_target(optimizer, schedule, schedule_kwargs, steps, kwargs)
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__qualname__", repr(optimizer))
    target = resolve_object(optimizer) if isinstance(optimizer, str) else optimizer
    if isinstance(target, type) and not issubclass(target, Optimizer):
        raise ValueError(f"{name} is not an optimizer (not a torch.optim.Optimizer subclass): give an optimizer "
                         f"class such as torch.optim.AdamW, or a function returning one")
    if not callable(target):
        raise ValueError(f"{name} is not an optimizer class or a function returning one")
    _check_keywords(target, name, list(kwargs), "keyword argument(s)")
    make_scheduler, constant = _scheduler(schedule, schedule_kwargs, steps)

    def build(kw: dict[str, Any], groups: list[dict[str, Any]]) -> Optimizer:
        opt = _construct(lambda: target(groups, **kw), name)
        if not isinstance(opt, Optimizer):
            raise ValueError(f"{name} returned {type(opt).__name__}, not a torch.optim.Optimizer: give an optimizer "
                             f"class or a function returning an optimizer")
        return opt

    first = build(dict(kwargs), [{"params": [torch.nn.Parameter(torch.zeros(PROBE_SHAPE, dtype=torch.float64))]}])
    group = first.param_groups[0]
    if "lr" not in group or "weight_decay" not in group:
        raise ValueError(f"{name} keeps no {'lr' if 'lr' not in group else 'weight_decay'} in its parameter groups; "
                         f"decay-of varies the lr and compares runs with and without weight_decay")
    lr, wd = float(group["lr"]), float(group["weight_decay"])

    def make(groups: list[dict[str, Any]], scale: float, decay: bool) -> tuple[Optimizer, LRScheduler | None]:
        kw = {**kwargs, "lr": lr * scale, **({} if decay else {"weight_decay": 0.0})}
        opt = build(kw, groups)
        return opt, make_scheduler(opt)

    return ProbeTarget(name, make, lr, wd, constant)


def _scheduler(schedule: Any, schedule_kwargs: dict[str, Any], steps: int,
               ) -> tuple[Callable[[Optimizer], LRScheduler | None], bool]:
    """A function building the probe's LR scheduler for an optimizer, and whether the schedule is constant."""
    schedule = "cosine" if schedule is None else schedule
    if isinstance(schedule, str) and schedule in SCHEDULE_NAMES:
        try:
            sched = make_schedule(schedule, steps_per_epoch=1, max_epochs=steps, **schedule_kwargs)
        except TypeError as error:
            raise ValueError(f"schedule {schedule!r}: {error}; its keywords: milestones, t0_epochs, t_mult, "
                             f"eta_min, warmup_epochs") from None
        if schedule == "constant":
            return (lambda opt: None), True
        return (lambda opt: ScheduledLR(opt, sched)), False
    where = schedule if isinstance(schedule, str) else getattr(schedule, "__qualname__", repr(schedule))
    if isinstance(schedule, str):
        if "." not in schedule:
            raise ValueError(f"unknown schedule {schedule!r}: give one of {', '.join(SCHEDULE_NAMES)} or a torch LR "
                             f"scheduler class path (e.g. torch.optim.lr_scheduler.StepLR)")
        schedule = resolve_object(schedule)
    if isinstance(schedule, type) and not issubclass(schedule, LRScheduler):
        raise ValueError(f"schedule {where} is not a torch LR scheduler (torch.optim.lr_scheduler.LRScheduler)")
    if not callable(schedule):
        raise ValueError(f"schedule {where} is not a torch LR scheduler class or a function returning one")
    if isinstance(schedule, type):
        _check_keywords(schedule, where, list(schedule_kwargs), "schedule keyword(s)")
    factory = schedule

    def make(opt: Optimizer) -> LRScheduler:
        sched = _construct(lambda: factory(opt, **schedule_kwargs), f"schedule {where}")
        if not hasattr(sched, "step"):
            raise ValueError(f"schedule {where} returned {type(sched).__name__}, which has no step()")
        return sched

    return make, False


def _registry_target(name: str, schedule: Any, schedule_kwargs: dict[str, Any], steps: int,
                      kwargs: dict[str, Any]) -> ProbeTarget:
    overrides = dict(kwargs)
    if schedule is not None:
        if not (isinstance(schedule, str) and schedule in SCHEDULE_NAMES):
            raise ValueError(f"registry entry {name!r} runs a wdlab schedule: give one of {', '.join(SCHEDULE_NAMES)}, "
                             f"got {schedule!r}")
        overrides["schedule"] = schedule
    overrides.update(schedule_kwargs)

    def build(groups: list[dict[str, Any]], over: dict[str, Any]) -> tuple[Optimizer, LRScheduler]:
        with warnings.catch_warnings():  # the probe's run ends inside a schedule period on purpose
            warnings.simplefilter("ignore")
            return build_optimizer(name, groups, steps_per_epoch=1, max_epochs=steps, batch_size=_BATCH_SIZE,
                                   num_train=_NUM_TRAIN, **over)

    first, _ = build([{"params": [torch.nn.Parameter(torch.zeros(PROBE_SHAPE, dtype=torch.float64))]}], overrides)
    lr, wd = float(first.param_groups[0]["lr"]), float(first.param_groups[0]["weight_decay"])

    def make(groups: list[dict[str, Any]], scale: float, decay: bool) -> tuple[Optimizer, LRScheduler | None]:
        over = {**overrides, "lr": lr * scale}
        if not decay:  # the run without decay: a raw 0 replaces whichever decay key was given
            over = {k: v for k, v in over.items() if not k.startswith("weight_decay")} | {"weight_decay": 0.0}
        return build(groups, over)

    return ProbeTarget(name, make, lr, wd, overrides.get("schedule", REGISTRY[name].schedule) == "constant")
