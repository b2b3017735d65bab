"""The schedule multiplier eta_t as a pure function of the global step.

Every schedule here answers ``eta(step)`` for the optimizer update with index ``step``
(0-based: the first update of a run uses ``eta(0)``), plus the questions the rest of wdlab
asks about warm-restart periods: which period a step is in, how many epochs long that period
is, and whether a step is the last one of its period. Nothing is accumulated between calls,
so a run resumed at any step computes exactly the multiplier an uninterrupted run would
(torch's ``CosineAnnealingWarmRestarts`` keeps ``T_cur`` as running state and is known to
drift on resume: pytorch #88791, #49630).

Schedules know the number of optimizer steps per epoch, so "epochs" below may be fractional
(``T_cur`` of SGDR advances every batch) while restarts always fall on epoch boundaries.

:class:`ScheduledLR` turns a schedule into a torch LR scheduler (stepped once per batch)
that sets ``lr = initial_lr * eta_t`` for every parameter group and, under normalized weight
decay, the group's ``weight_decay`` for the current period.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from wdlab._checks import check_int
from wdlab.optim.decay import NormalizedDecay
from wdlab.optim.validation import check_eta_min

#: Multi-step decay factor: the paper's Fig. 1 multiplies the learning rate by 0.1 at each milestone.
MULTISTEP_FACTOR = 0.1


@dataclass(frozen=True)
class Period:
    """One schedule period (for warm restarts: from one restart to the next), in whole epochs."""

    index: int
    start_epoch: int
    epochs: int

    @property
    def end_epoch(self) -> int:
        """The epoch at whose end the period ends (exclusive bound of the period)."""
        return self.start_epoch + self.epochs


class Schedule:
    """Base class: a schedule multiplier eta(step) in [0, 1] with optional linear warm-up.

    Subclasses implement :meth:`_base_eta` and, if they restart, :meth:`period_of_epoch`.
    Without restarts the whole run (``max_epochs``) is a single period.
    """


    def __init__(self, *, steps_per_epoch: int, max_epochs: int, warmup_epochs: float = 0.0) -> None:
        check_int("steps_per_epoch", steps_per_epoch, 1)
        check_int("max_epochs", max_epochs, 1)
        if not (isinstance(warmup_epochs, int | float) and 0 <= warmup_epochs < max_epochs):
            raise ValueError(
                f"warmup_epochs must be a number in [0, max_epochs={max_epochs}), got {warmup_epochs!r}"
            )
        self.steps_per_epoch = steps_per_epoch
        self.max_epochs = max_epochs
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_steps = round(self.warmup_epochs * steps_per_epoch)

    # -- the multiplier -------------------------------------------------------------------
    def eta(self, step: int) -> float:
        """Schedule multiplier for the update with index ``step`` (0-based).

        With warm-up: ``eta(step) = base_eta(step) * min(1, (step + 1) / warmup_steps)``, so the
        first update uses a small but non-zero multiplier and warm-up composes with every schedule.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        eta = self._base_eta(step)
        if step < self.warmup_steps:
            eta *= (step + 1) / self.warmup_steps
        return eta

    def _base_eta(self, step: int) -> float:
        raise NotImplementedError

    # -- periods ----------------------------------------------------------------------------
    def period_of_epoch(self, epoch: int) -> Period:
        """The period containing (0-based) ``epoch``. Without restarts: the whole run."""
        return Period(index=0, start_epoch=0, epochs=self.max_epochs)

    def period(self, step: int) -> Period:
        """The period containing the update with index ``step``."""
        return self.period_of_epoch(step // self.steps_per_epoch)

    def period_index(self, step: int) -> int:
        """Which period (0-based) the update with index ``step`` belongs to."""
        return self.period(step).index

    def period_epochs(self, step: int) -> int:
        """Length in epochs of the period containing the update with index ``step``."""
        return self.period(step).epochs

    def is_period_end(self, step: int) -> bool:
        """True if the update with index ``step`` is the last update of its period."""
        return (step + 1) == self.period(step).end_epoch * self.steps_per_epoch

    def period_end_epochs(self, max_epochs: int | None = None) -> list[int]:
        """Epoch counts at which periods end, up to and including ``max_epochs`` (default: the run).

        For warm restarts with ``t0_epochs=100, t_mult=2``: ``[100, 300, 700, 1500]`` for 1800 epochs.
        """
        limit = self.max_epochs if max_epochs is None else max_epochs
        ends: list[int] = []
        epoch = 0
        while True:
            end = self.period_of_epoch(epoch).end_epoch
            if end > limit or end <= epoch:  # past the limit, or past a schedule without restarts
                return ends
            ends.append(end)
            epoch = end

    @property
    def total_steps(self) -> int:
        return self.max_epochs * self.steps_per_epoch

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "warmup_steps")
        return f"{type(self).__name__}({fields})"


class ConstantSchedule(Schedule):
    """eta_t = 1."""


    def _base_eta(self, step: int) -> float:
        return 1.0


class MultiStepSchedule(Schedule):
    """eta_t = 0.1 ** (number of milestones <= the epoch of step t); milestones in epochs."""


    def __init__(
        self, *, steps_per_epoch: int, max_epochs: int, milestones: Sequence[int], warmup_epochs: float = 0.0
    ) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, warmup_epochs=warmup_epochs)
        milestones = list(milestones)
        if not milestones or any(not isinstance(m, int) or m < 1 for m in milestones):
            raise ValueError(f"milestones must be a non-empty list of whole epochs >= 1, got {milestones!r}")
        if any(b <= a for a, b in itertools.pairwise(milestones)):
            raise ValueError(f"milestones must be strictly increasing, got {milestones!r}")
        self.milestones = tuple(milestones)

    def _base_eta(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return MULTISTEP_FACTOR ** sum(1 for m in self.milestones if epoch >= m)


class CosineSchedule(Schedule):
    """Cosine annealing over the whole run, advanced every batch:

    eta_t = eta_min + (1 - eta_min) * 0.5 * (1 + cos(pi * t / (max_epochs * steps_per_epoch))).
    Steps past the end of the run stay at the last value.
    """


    def __init__(
        self, *, steps_per_epoch: int, max_epochs: int, eta_min: float = 0.0, warmup_epochs: float = 0.0
    ) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, warmup_epochs=warmup_epochs)
        check_eta_min(eta_min)
        self.eta_min = float(eta_min)

    def _base_eta(self, step: int) -> float:
        return _cosine(min(step, self.total_steps - 1), self.total_steps, self.eta_min)


class WarmRestartsSchedule(Schedule):
    """SGDR (Loshchilov & Hutter 2017): cosine annealing with warm restarts.

    eta_t = eta_min + (1 - eta_min) * 0.5 * (1 + cos(pi * T_cur / T_i)), where T_cur (in
    fractional epochs) counts the batches since the last restart and T_i is the length of the
    current period: T_0 = ``t0_epochs``, T_{i+1} = T_i * ``t_mult`` (rounded to whole epochs, so
    restarts fall on epoch boundaries). eta is 1 at the first update of every period.
    Periods continue past ``max_epochs``; ``max_epochs`` only matters for warm-up validation.
    """


    def __init__(
        self,
        *,
        steps_per_epoch: int,
        max_epochs: int,
        t0_epochs: int,
        t_mult: float = 2.0,
        eta_min: float = 0.0,
        warmup_epochs: float = 0.0,
    ) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, warmup_epochs=warmup_epochs)
        check_int("t0_epochs", t0_epochs, 1)
        if not (isinstance(t_mult, int | float) and math.isfinite(t_mult) and t_mult >= 1):
            raise ValueError(f"t_mult must be a number >= 1, got {t_mult!r}")
        check_eta_min(eta_min)
        self.t0_epochs = t0_epochs
        self.t_mult = float(t_mult)
        self.eta_min = float(eta_min)

    def period_of_epoch(self, epoch: int) -> Period:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self.t_mult == 1.0:  # closed form, so huge step counts cost nothing
            index = epoch // self.t0_epochs
            return Period(index=index, start_epoch=index * self.t0_epochs, epochs=self.t0_epochs)
        # Period lengths grow geometrically, so this loop runs O(log(epoch)) times.
        index, start, length = 0, 0, self.t0_epochs
        while epoch >= start + length:
            index, start, length = index + 1, start + length, max(1, round(length * self.t_mult))
        return Period(index=index, start_epoch=start, epochs=length)

    def _base_eta(self, step: int) -> float:
        period = self.period(step)
        steps_into_period = step - period.start_epoch * self.steps_per_epoch
        return _cosine(steps_into_period, period.epochs * self.steps_per_epoch, self.eta_min)


#: Every schedule by the name configs use, with its class and the hyperparameters it takes (all take
#: ``warmup_epochs``). The registry reads the names and their hyperparameters from here.
SCHEDULES: dict[str, tuple[type[Schedule], tuple[str, ...]]] = {
    "constant": (ConstantSchedule, ()),
    "multistep": (MultiStepSchedule, ("milestones",)),
    "cosine": (CosineSchedule, ("eta_min",)),
    "warm_restarts": (WarmRestartsSchedule, ("t0_epochs", "t_mult", "eta_min")),
}
SCHEDULE_NAMES = tuple(SCHEDULES)
_REQUIRED = {
    "milestones": "schedule 'multistep' needs milestones (whole epochs, e.g. [30, 60, 80])",
    "t0_epochs": "schedule 'warm_restarts' needs t0_epochs (whole epochs >= 1)",
}


def make_schedule(
    schedule: str,
    *,
    steps_per_epoch: int,
    max_epochs: int,
    milestones: Sequence[int] | None = None,
    t0_epochs: int | None = None,
    t_mult: float = 2.0,
    eta_min: float = 0.0,
    warmup_epochs: float = 0.0,
) -> Schedule:
    """Build a schedule by name (a key of :data:`SCHEDULES`); hyperparameters it does not take are ignored."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULE_NAMES)}; got {schedule!r}")
    cls, names = SCHEDULES[schedule]
    given = {"milestones": milestones, "t0_epochs": t0_epochs, "t_mult": t_mult, "eta_min": eta_min}
    kwargs = {name: given[name] for name in names}
    for name, value in kwargs.items():
        if value is None:
            raise ValueError(_REQUIRED[name])
    return cls(steps_per_epoch=steps_per_epoch, max_epochs=max_epochs, warmup_epochs=warmup_epochs, **kwargs)


class ScheduledLR(LRScheduler):
    """A torch LR scheduler driven by a :class:`Schedule`, to be stepped once per optimizer update.

    After ``k`` calls of :meth:`step` every group has ``lr = initial_lr * schedule.eta(k)``, the
    multiplier of the update with index ``k``. Groups that carry a ``weight_decay_norm`` key
    (set by :func:`wdlab.optim.build_optimizer` under normalized decay) also get
    ``weight_decay = lambda_norm * sqrt(b / (B * T_i))`` for the current period's length T_i,
    so the decay is recomputed at every restart.

    Its ``state_dict`` holds only the step counter and the base learning rates: the schedule
    itself comes from the configuration, and as a pure function of the step it cannot drift.
    """

    def __init__(
        self, optimizer: Optimizer, schedule: Schedule, normalized_decay: NormalizedDecay | None = None
    ) -> None:
        self.schedule = schedule
        self.normalized_decay = normalized_decay
        super().__init__(optimizer, last_epoch=-1)

    def get_lr(self) -> list[float]:
        eta = self.schedule.eta(self.last_epoch)
        return [base_lr * eta for base_lr in self.base_lrs]

    # torch uses the closed form when step() is given an explicit position; ours is always closed.
    _get_closed_form_lr = get_lr

    def step(self, epoch: int | None = None) -> None:
        super().step(epoch)
        if self.normalized_decay is not None:
            period_epochs = self.schedule.period_epochs(self.last_epoch)
            self.normalized_decay.update_groups(self.optimizer.param_groups, period_epochs)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.pop("schedule", None)
        state.pop("normalized_decay", None)
        return state


def _cosine(step: int, period_steps: int, eta_min: float) -> float:
    return eta_min + (1.0 - eta_min) * 0.5 * (1.0 + math.cos(math.pi * step / period_steps))
