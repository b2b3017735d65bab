"""Schedules: eta as a pure function of the step, periods, normalized decay per period."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from optim_reference import sgdr_eta

from wdlab.optim.decay import NormalizedDecay, normalized_weight_decay
from wdlab.optim.schedules import (
    ConstantSchedule,
    CosineSchedule,
    MultiStepSchedule,
    ScheduledLR,
    WarmRestartsSchedule,
    make_schedule,
)


def _scheduled(schedule, lr=0.1, normalized=None, weight_decay_norm=None):
    group = {"params": [torch.nn.Parameter(torch.zeros(1))]}
    if weight_decay_norm is not None:
        group["weight_decay_norm"] = weight_decay_norm
    opt = torch.optim.SGD([group], lr=lr)
    return opt, ScheduledLR(opt, schedule, normalized)


def _advance(opt, sched, n):
    for _ in range(n):
        opt.step()
        sched.step()


def test_paper_restart_periods_end_at_100_300_700_1500():
    s = WarmRestartsSchedule(steps_per_epoch=391, max_epochs=1800, t0_epochs=100, t_mult=2)
    assert s.period_end_epochs(1800) == [100, 300, 700, 1500]
    assert [s.period_of_epoch(e).epochs for e in (0, 99, 100, 299, 300, 700, 1500)] == [
        100, 100, 200, 200, 400, 800, 1600]
    # ImageNet32x32: restarts at 10/30/70/150
    s = WarmRestartsSchedule(steps_per_epoch=10010, max_epochs=150, t0_epochs=10, t_mult=2)
    assert s.period_end_epochs() == [10, 30, 70, 150]


def test_period_queries_at_the_boundaries():
    spe = 7
    s = WarmRestartsSchedule(steps_per_epoch=spe, max_epochs=14, t0_epochs=2, t_mult=2)
    last_of_first = 2 * spe - 1
    assert s.is_period_end(last_of_first) and not s.is_period_end(last_of_first - 1)
    assert s.period_index(last_of_first) == 0 and s.period_index(last_of_first + 1) == 1
    assert s.period_epochs(last_of_first) == 2 and s.period_epochs(last_of_first + 1) == 4
    assert s.eta(last_of_first + 1) == 1.0  # eta restarts at 1 on the first update of a period
    assert s.eta(last_of_first) < 0.02
    ends = [step for step in range(14 * spe) if s.is_period_end(step)]
    assert ends == [2 * spe - 1, 6 * spe - 1, 14 * spe - 1]


def test_schedules_without_restarts_are_one_period():
    s = CosineSchedule(steps_per_epoch=5, max_epochs=4)
    assert [s.period_index(t) for t in (0, 19)] == [0, 0]
    assert s.period_epochs(7) == 4
    assert [t for t in range(20) if s.is_period_end(t)] == [19]
    assert s.period_end_epochs() == [4]


@pytest.mark.parametrize("t_mult", [1, 2, 3])
def test_warm_restarts_match_the_sgdr_formula_and_torch(t_mult):
    """Against the independent formula, and against torch's CosineAnnealingWarmRestarts stepped per batch."""
    spe, t0, eta_min = 13, 3, 0.05
    s = WarmRestartsSchedule(steps_per_epoch=spe, max_epochs=40, t0_epochs=t0, t_mult=t_mult, eta_min=eta_min)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    torch_sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=t0 * spe, T_mult=t_mult,
                                                                       eta_min=eta_min)
    for step in range(1500):
        assert s.eta(step) == pytest.approx(sgdr_eta(step, spe, t0, t_mult, eta_min), abs=1e-12)
        assert s.eta(step) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9)
        opt.step()
        torch_sched.step()


def test_eta_at_large_steps_equals_stepping_there_one_by_one():
    s = WarmRestartsSchedule(steps_per_epoch=50, max_epochs=1500, t0_epochs=10, t_mult=2, eta_min=0.01)
    opt, sched = _scheduled(s, lr=0.3)
    n = 37_123
    _advance(opt, sched, n)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.3 * s.eta(n), rel=1e-12)
    # A fresh scheduler loaded at step n gives the same next values, bit for bit.
    opt2, sched2 = _scheduled(s, lr=0.3)
    sched2.load_state_dict(sched.state_dict())
    for _ in range(200):
        _advance(opt, sched, 1)
        _advance(opt2, sched2, 1)
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


def test_huge_steps_are_cheap_and_exact():
    for t_mult in (1, 2):
        s = WarmRestartsSchedule(steps_per_epoch=1000, max_epochs=10, t0_epochs=10, t_mult=t_mult)
        step = 10**12 + 12345
        period = s.period(step)
        assert period.start_epoch <= step // 1000 < period.end_epoch
        assert 0.0 <= s.eta(step) <= 1.0


def test_multistep_is_the_papers_fig1_schedule():
    s = MultiStepSchedule(steps_per_epoch=10, max_epochs=100, milestones=[30, 60, 80])
    assert [s.eta(e * 10) for e in (0, 29)] == [1.0, 1.0]
    assert s.eta(299) == 1.0 and s.eta(300) == pytest.approx(0.1)
    assert s.eta(600) == pytest.approx(0.01) and s.eta(800) == pytest.approx(0.001)


def test_cosine_over_the_run():
    s = CosineSchedule(steps_per_epoch=10, max_epochs=10)
    assert s.eta(0) == 1.0
    assert s.eta(50) == pytest.approx(0.5)
    etas = [s.eta(t) for t in range(100)]
    assert all(a > b for a, b in itertools.pairwise(etas))
    assert s.eta(100) == s.eta(99) > 0


def test_constant_and_warmup():
    s = ConstantSchedule(steps_per_epoch=10, max_epochs=5, warmup_epochs=2)
    assert [s.eta(t) for t in (0, 9, 19, 20, 49)] == [pytest.approx(0.05), pytest.approx(0.5), 1.0, 1.0, 1.0]
    w = make_schedule("warm_restarts", steps_per_epoch=10, max_epochs=6, t0_epochs=2, warmup_epochs=0.5)
    assert w.eta(0) == pytest.approx(0.2 * sgdr_eta(0, 10, 2, 2))
    assert w.eta(5) == pytest.approx(sgdr_eta(5, 10, 2, 2))


def test_normalized_weight_decay_formula():
    assert normalized_weight_decay(0.025, 128, 50_000, 100) == pytest.approx(0.025 * math.sqrt(128 / 5e6))
    # Doubling the period shrinks lambda by sqrt(2); doubling the batch grows it by sqrt(2).
    base = normalized_weight_decay(0.05, 128, 50_000, 100)
    assert normalized_weight_decay(0.05, 128, 50_000, 200) == pytest.approx(base / math.sqrt(2))
    assert normalized_weight_decay(0.05, 256, 50_000, 100) == pytest.approx(base * math.sqrt(2))
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        normalized_weight_decay(0.05, 0, 50_000, 100)


def test_normalized_decay_is_recomputed_for_every_period():
    spe, b, n = 4, 32, 128
    s = WarmRestartsSchedule(steps_per_epoch=spe, max_epochs=14, t0_epochs=2, t_mult=2)
    opt, sched = _scheduled(s, normalized=NormalizedDecay(batch_size=b, num_train=n), weight_decay_norm=0.05)
    per_step = []
    for _ in range(14 * spe):
        per_step.append(opt.param_groups[0]["weight_decay"])
        _advance(opt, sched, 1)
    expected = {0: 0.05 * math.sqrt(b / (n * 2)), 1: 0.05 * math.sqrt(b / (n * 4)), 2: 0.05 * math.sqrt(b / (n * 8))}
    for step, lam in enumerate(per_step):
        assert lam == pytest.approx(expected[s.period_index(step)], rel=1e-12)
    assert per_step[0] > per_step[2 * spe] > per_step[6 * spe]  # shrinks with t_mult > 1


def test_scheduler_state_dict_is_plain_data():
    s = WarmRestartsSchedule(steps_per_epoch=4, max_epochs=6, t0_epochs=2)
    _, sched = _scheduled(s, normalized=NormalizedDecay(8, 16), weight_decay_norm=0.05)
    state = sched.state_dict()
    assert "schedule" not in state and "normalized_decay" not in state
    assert set(map(type, state.values())) <= {int, float, bool, list}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"schedule": "multistep"}, "needs milestones"),
        ({"schedule": "warm_restarts"}, "needs t0_epochs"),
        ({"schedule": "warm_restarts", "t0_epochs": 2.5}, "t0_epochs must be a whole number"),
        ({"schedule": "multistep", "milestones": [0, 5]}, "milestones must be"),
        ({"schedule": "cosine", "eta_min": -0.1}, "eta_min must be"),
        ({"schedule": "linear"}, "schedule must be one of"),
    ],
)
def test_make_schedule_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(steps_per_epoch=5, max_epochs=10, **kwargs)
