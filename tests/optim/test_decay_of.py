"""``wdlab decay-of`` / ``wdlab.testing.decay_of``: each optimizer's decay is named right, one verdict per group."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from wdlab.cli import main
from wdlab.optim import REGISTRY
from wdlab.testing import GroupVerdict, decay_of

LR, WD = 1e-3, 0.01


def _check(verdicts: list[GroupVerdict], status: str, convention: str | None) -> None:
    assert len(verdicts) == 2, "one verdict per parameter group"
    for v in verdicts:
        assert (v.status, v.convention) == (status, convention), v.line()
        assert v.dtype == torch.float64


def test_torch_adamw_decays_by_lr_times_wd():
    verdicts = decay_of(torch.optim.AdamW, lr=LR, weight_decay=WD)
    _check(verdicts, "match", "lr")
    first, second = verdicts
    assert first.fits == ("lr",)
    # group 1 has half the lr and 3 x the decay: its own lr_t * wd, not group 0's
    for v, lr, wd in ((first, LR, WD), (second, LR / 2, 3 * WD)):
        assert (v.lr, v.weight_decay) == (lr, wd)
        assert math.isclose(v.per_step_decay, lr * wd, rel_tol=1e-9)
        assert math.isclose(v.paper_lambda, lr * wd, rel_tol=1e-9)
        assert v.residual < 1e-9
    assert "torch lr_t*wd" in first.line() and "paper lambda 1e-05 (= lr*weight_decay)" in first.line()


def test_torch_adam_weight_decay_is_l2_through_the_moments():
    verdicts = decay_of("torch.optim.Adam", lr=LR, weight_decay=WD)
    _check(verdicts, "match", "l2")
    for v in verdicts:
        assert v.per_step_decay is None, "Adam normalizes the L2 term: not a multiplicative shrink"
        assert v.first_step_over_lr == pytest.approx(1.0, rel=1e-3), "zero gradients: the first step is lr*sign(theta)"
        assert v.paper_lambda is None and v.residual < 1e-9
        assert min(v.residuals[c] for c in ("schedule", "lr", "corrected", "corrected_lr")) > 0.1
    assert "L2 in the gradient" in verdicts[0].line() and "1 x lr" in verdicts[0].line()


def test_sgd_without_momentum_l2_is_the_same_arithmetic_as_torch_decoupled_decay():
    verdicts = decay_of(torch.optim.SGD, lr=0.05, weight_decay=5e-4)
    _check(verdicts, "equivalent", "lr")
    assert set(verdicts[0].fits) == {"lr", "l2"}
    assert math.isclose(verdicts[0].paper_lambda, 0.05 * 5e-4, rel_tol=1e-9)
    assert "= L2 in the gradient (the same steps for this optimizer)" in verdicts[0].line()


def test_sgd_with_momentum_l2_is_not_decoupled_decay():
    verdicts = decay_of(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=5e-4)
    _check(verdicts, "match", "l2")
    assert verdicts[0].fits == ("l2",)
    assert verdicts[0].residuals["lr"] > 0.1, "the momentum buffer carries the L2 term: not lr_t * wd"


def test_sgd_without_weight_decay_has_none():
    verdicts = decay_of(torch.optim.SGD, lr=0.05, momentum=0.9)
    _check(verdicts, "match", "none")
    assert verdicts[0].per_step_decay == 0.0 and "none -- weight_decay is 0" in verdicts[0].line()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registry_entry_applies_the_decay_it_declares(name):
    spec = REGISTRY[name]
    expected = spec.decay_scaling if spec.decoupled else "l2"
    verdicts = decay_of(name)
    _check(verdicts, "match", expected)
    if spec.decoupled:
        for v in verdicts:
            relation = v.lr if expected == "lr" else 1.0
            assert math.isclose(v.paper_lambda, relation * v.weight_decay, rel_tol=1e-9), v.line()


def test_timm_corrected_adamw_and_its_lr_max_per_group():
    pytest.importorskip("timm")
    verdicts = decay_of("timm.optim.AdamWLegacy", lr=LR, weight_decay=WD, corrected_weight_decay=True)
    first, second = verdicts
    assert (first.status, first.convention) == ("match", "corrected_lr"), first.line()
    assert math.isclose(first.paper_lambda, LR * WD, rel_tol=1e-9)
    # timm takes lr_max from the constructor's lr for every group: group 1 (lr / 2) decays by lr_t^2 / lr * wd,
    # half of what its own lr_max would give
    assert (second.status, second.closest) == ("no fit", "corrected_lr"), second.line()
    assert second.lambda_ratio == pytest.approx(0.5, rel=1e-9) and second.scaled_residual < 1e-9


def test_at_lr_1_the_paper_and_torch_are_told_apart_by_the_run_at_half_the_lr():
    # lr_t * wd = eta_t * wd when lr = 1: only a second lr separates the two
    verdicts = decay_of(torch.optim.AdamW, lr=1.0, weight_decay=WD, schedule="constant")
    assert (verdicts[0].status, verdicts[0].fits) == ("ambiguous", ("lr", "corrected_lr")), verdicts[0].line()
    verdicts = decay_of(torch.optim.AdamW, lr=1.0, weight_decay=WD)
    _check(verdicts, "match", "lr")
    assert verdicts[0].residuals["schedule"] > 0.1


def test_a_constant_schedule_cannot_tell_eta_from_eta_squared_and_says_so():
    verdicts = decay_of(torch.optim.AdamW, lr=LR, weight_decay=WD, schedule="constant")
    _check(verdicts, "ambiguous", None)
    assert set(verdicts[0].fits) == {"lr", "corrected_lr"}
    assert "the schedule is constant (eta_t = 1)" in verdicts[0].line()
    stepped = decay_of(torch.optim.AdamW, lr=LR, weight_decay=WD, schedule="torch.optim.lr_scheduler.StepLR",
                       schedule_kwargs={"step_size": 5, "gamma": 0.5})
    _check(stepped, "match", "lr")


class HandAdamW(torch.optim.Optimizer):
    """Adam with a decoupled decay applied in one of several ways, right or wrong (float64 by hand)."""

    def __init__(self, params, lr=1e-3, weight_decay=0.0, variant="paper"):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "variant": variant})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            eta = lr / group.setdefault("initial_lr", lr)
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                state["m"].lerp_(p.grad, 0.1)
                state["v"].mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
                update = lr * (state["m"] / (1 - 0.9 ** state["t"])) / (
                    (state["v"] / (1 - 0.999 ** state["t"])).sqrt() + 1e-8)
                variant = group["variant"]
                if variant == "paper":
                    p.mul_(1 - eta * wd).sub_(update)
                elif variant == "twice":
                    p.mul_(1 - lr * wd).mul_(1 - lr * wd).sub_(update)
                elif variant == "lr_squared":
                    p.mul_(1 - lr * lr * wd).sub_(update)
                elif variant == "after_update":
                    p.sub_(update).mul_(1 - lr * wd)


def test_a_correct_hand_written_adamw_is_the_paper_convention():
    _check(decay_of(HandAdamW, lr=LR, weight_decay=WD, variant="paper"), "match", "schedule")


class Float32AdamW(HandAdamW):
    """The same, refusing float64 weights (as some fused kernels do)."""

    def step(self):
        if any(p.dtype == torch.float64 for g in self.param_groups for p in g["params"]):
            raise RuntimeError("float64 is not supported")
        super().step()


def test_an_optimizer_that_refuses_float64_is_probed_in_float32():
    verdicts = decay_of(Float32AdamW, lr=LR, weight_decay=WD, variant="paper")
    assert [(v.status, v.convention, v.dtype) for v in verdicts] == [("match", "schedule", torch.float32)] * 2
    assert math.isclose(verdicts[0].paper_lambda, WD, rel_tol=1e-4)


@pytest.mark.parametrize(("variant", "closest", "ratio"), [("twice", "lr", 2.0), ("lr_squared", None, None),
                                                            ("after_update", None, None)])
def test_a_wrong_decoupled_decay_fits_no_convention(variant, closest, ratio):
    verdicts = decay_of(HandAdamW, lr=LR, weight_decay=WD, variant=variant)
    _check(verdicts, "no fit", None)
    v = verdicts[0]
    assert v.fits == () and "no convention fits" in v.line()
    if closest:  # applied twice: torch's shape, twice its decay
        assert (v.closest, v.lambda_ratio) == (closest, pytest.approx(ratio, rel=1e-4))
    if variant == "after_update":  # the zero-gradient shrink alone is torch's; only the crafted gradients see it
        assert math.isclose(v.per_step_decay, LR * WD, rel_tol=1e-9)
        assert v.residuals["lr"] > 1e-4


def test_the_command_prints_one_line_per_group():
    out = subprocess.run([sys.executable, "-m", "wdlab", "decay-of", "torch.optim.AdamW", "--lr", "1e-3",
                          "--weight_decay", "0.01"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 3, out
    assert lines[0].startswith("torch.optim.AdamW(lr=0.001, weight_decay=0.01): schedule cosine over 40 steps")
    assert lines[1].startswith("group 0 (lr 0.001, weight_decay 0.01): torch lr_t*wd (decay_scaling 'lr') -- "
                               "per-step decay 1e-05 at eta_t = 1, paper lambda 1e-05 (= lr*weight_decay)")
    assert lines[2].startswith("group 1 (lr 0.0005, weight_decay 0.03): torch lr_t*wd")


def test_the_command_takes_registry_names_literals_and_schedules(capsys):
    assert main(["decay-of", "adamc"]) == 0
    assert "corrected eta_t^2*lambda" in capsys.readouterr().out.splitlines()[1]
    assert main(["decay-of", "torch.optim.Adam", "--betas", "(0.8,0.99)", "--weight_decay=1e-3", "--schedule",
                 "torch.optim.lr_scheduler.StepLR", "--schedule.step_size", "5"]) == 0
    assert "L2 in the gradient" in capsys.readouterr().out.splitlines()[1]
    assert main(["decay-of", "--help"]) == 0
    assert "--schedule.KEY VALUE" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["torch.optim.AdamX"], "cannot import 'torch.optim.AdamX': give an importable optimizer class path"),
    (["torch.nn.Linear"], "torch.nn.Linear is not an optimizer (not a torch.optim.Optimizer subclass)"),
    (["torch.optim.AdamW", "--weight_decy", "0.1"], "torch.optim.AdamW takes no keyword argument(s) 'weight_decy'; "
                                                    "its keyword arguments: lr, betas"),
    (["torch.optim.AdamW", "--lr", "-1"], "torch.optim.AdamW could not be built: ValueError: Invalid learning rate"),
    (["adamx"], "unknown optimizer 'adamx': give a registry name (adam, adamw"),
    (["torch.optim.AdamW", "--betas", "(0.9"], "--betas: cannot read '(0.9' as a Python literal"),
    (["torch.optim.AdamW", "--lr"], "--lr needs a value"),
    (["--lr", "1e-3"], "give the optimizer first"),
    (["torch.optim.AdamW", "--schedule", "cyclic"], "unknown schedule 'cyclic': give one of constant"),
    (["torch.optim.LBFGS"], "keeps no weight_decay in its parameter groups"),
])
def test_bad_input_is_one_line_and_exit_status_2(argv, message, capsys):
    assert main(["decay-of", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("wdlab decay-of: error: "), captured.err
    assert message in captured.err, captured.err
