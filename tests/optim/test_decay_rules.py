"""Decay rules beyond the paper's: AdamC/SGDC's corrected decay (Defazio et al. 2025), the decay timescale
(Wang & Aitchison, ICML 2025), :func:`wdlab.optim.convert_decay` and ``wdlab optimizers --convert``.

The registry battery in test_optim.py covers ``adamc`` and ``sgdc`` like every entry (float64 reference,
low precision, state_dict round trip, convergence); here: timm's implementation, warm-up, and the timescale.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from optim_reference import adam_reference, sgd_reference
from paths import QUICKSTART
from tiny_runs import builtin_data

from wdlab.cli import main
from wdlab.optim import REGISTRY, SGDW, AdamW, build_optimizer, convert_decay, normalized_weight_decay, param_groups
from wdlab.optim.schedules import ScheduledLR, make_schedule

# Warm restarts (periods of 20, 40, 80, 160 steps) after a 10-step linear warm-up: eta_t < 1 at the start,
# where a corrected decay (eta^2) and the paper's (eta) differ most, and back at 1 after every restart.
SPE = 10
SCHEDULE = {"schedule": "warm_restarts", "t0_epochs": 2, "t_mult": 2, "warmup_epochs": 1.0}
STEPS = 300
ALPHA, LAMBDA = 0.01, 0.05


def _schedule():
    return make_schedule("warm_restarts", steps_per_epoch=SPE, max_epochs=30, t0_epochs=2, t_mult=2, warmup_epochs=1.0)


def _pair(dtype):
    torch.manual_seed(0)
    base = [torch.randn(20, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)]
    return ([torch.nn.Parameter(t.clone().to(dtype)) for t in base],
            [torch.nn.Parameter(t.clone().to(dtype)) for t in base])


def _timm(kind: str, params, alpha: float, lam: float, foreach: bool):
    """timm's corrected decay for wdlab's (alpha, lambda) per group.

    timm (1.0.31, ``_single_tensor_adamw`` / ``_single_tensor_sgdw``): ``theta *= 1 - lr_t**2 / max_lr * wd``,
    with ``max_lr = group['max_lr_snapshot']`` (the constructor lr unless the group sets it). wdlab:
    ``theta *= 1 - eta_t**2 * lambda`` with eta_t = lr_t / alpha_group. So each group gets
    ``lr = max_lr_snapshot = alpha_group`` and ``weight_decay = lambda / alpha_group``:
    lr_t**2 / alpha_g * lambda / alpha_g = eta_t**2 * lambda.
    """
    from timm.optim import SGDW as TimmSGDW
    from timm.optim import AdamWLegacy

    groups = [
        {"params": [params[0]]},
        {"params": [params[1]], "lr": alpha / 2, "max_lr_snapshot": alpha / 2, "weight_decay": lam / (alpha / 2)},
    ]
    if kind == "adam":
        return AdamWLegacy(groups, lr=alpha, weight_decay=lam / alpha, corrected_weight_decay=True, foreach=foreach)
    return TimmSGDW(groups, lr=alpha, momentum=0.9, weight_decay=lam / alpha, corrected_weight_decay=True,
                    foreach=foreach)


def _max_relative_error_against_timm(name: str, dtype, kernel: dict, timm_foreach: bool) -> float:
    """Run a registry entry (2 groups, the second at half the lr) and timm side by side on the same gradients."""
    ours_params, timm_params = _pair(dtype)
    kind = "adam" if "betas" in REGISTRY[name].hyperparameters else "sgd"
    overrides = {"lr": ALPHA, "weight_decay": LAMBDA, **SCHEDULE} | ({"momentum": 0.9} if kind == "sgd" else {})
    groups = [{"params": [ours_params[0]]}, {"params": [ours_params[1]], "lr": ALPHA / 2}]
    ours, ours_sched = build_optimizer(name, groups, steps_per_epoch=SPE, max_epochs=30, batch_size=10, num_train=100,
                                       **overrides, **kernel)
    ref = _timm(kind, timm_params, ALPHA, LAMBDA, timm_foreach)
    ref_sched = ScheduledLR(ref, _schedule())
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for _ in range(STEPS):
        for p, q in zip(ours_params, timm_params, strict=True):
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64) + 0.5 * p.detach().double()
            p.grad, q.grad = g.to(dtype), g.to(dtype)
        ours.step()
        ref.step()
        ours_sched.step()
        ref_sched.step()
        x = torch.cat([p.detach().double().flatten() for p in ours_params])
        y = torch.cat([p.detach().double().flatten() for p in timm_params])
        worst = max(worst, ((x - y).abs().max() / y.abs().max()).item())
    return worst


# float64: the two implementations compute the same update with the scalars in a different order (timm
# lr**2/max_lr*wd, wdlab lr*(eta*lambda/alpha); timm's lerp_ for the first moment), so they differ by
# rounding only: measured max 4.5e-16 over 300 steps. 1e-12 leaves ~3 orders of headroom for other
# platforms and is still ~7 orders below what the paper's eta_t decay in place of eta_t^2 gives (checked
# below). float32: identical bits on the per-tensor/multi-tensor kernels; torch's fused kernels round
# differently (measured 2.4e-7 Adam, 4.0e-7 SGD, a few float32 ulps): 1e-5.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}
KERNELS = [{}, {"fused": True}]


@pytest.mark.parametrize("timm_foreach", [False, True], ids=["timm-single", "timm-foreach"])
@pytest.mark.parametrize("kernel", KERNELS, ids=["wdlab-default", "wdlab-fused"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["adamc", "sgdc"])
def test_corrected_decay_matches_timm(name, dtype, kernel, timm_foreach):
    """adamc = timm.optim.AdamWLegacy(corrected_weight_decay=True), sgdc = timm.optim.SGDW(same), with
    lr = alpha, weight_decay = lambda / alpha per group, under warm-up and warm restarts."""
    rel = _max_relative_error_against_timm(name, dtype, kernel, timm_foreach)
    assert rel <= TOLERANCE[dtype], f"{name}: max relative error {rel:.3g}"


@pytest.mark.parametrize("name,uncorrected", [("adamc", "adamw"), ("sgdc", "sgdw")])
def test_timm_comparison_detects_the_uncorrected_decay(name, uncorrected):
    """The tolerance discriminates: the paper's eta_t * lambda (adamw/sgdw) is far from timm's corrected decay."""
    assert _max_relative_error_against_timm(uncorrected, torch.float64, {}, False) > 1e-5
    assert _max_relative_error_against_timm(name, torch.float64, {}, False) <= TOLERANCE[torch.float64]


def _eta(step: int) -> float:
    return _schedule().eta(step)


@pytest.mark.parametrize("fused", [None, True], ids=["default-kernel", "fused-kernel"])
@pytest.mark.parametrize("name", ["adamc", "sgdc"])
def test_corrected_decay_follows_the_float64_reference_through_warmup(name, fused):
    """theta_t = theta_{t-1} - eta_t * alpha * u_t - eta_t^2 * lambda * theta_{t-1}, eta_t with a linear warm-up
    (the registry battery has none), rel. err <= 1e-9."""
    rng = np.random.default_rng(5)
    theta0 = rng.normal(size=12)
    noise = rng.normal(scale=0.3, size=(STEPS, 12))

    def grad(theta, step):
        return 0.5 * theta + noise[step]

    kind = "adam" if "betas" in REGISTRY[name].hyperparameters else "sgd"
    p = torch.nn.Parameter(torch.tensor(theta0))
    opt, sched = build_optimizer(name, [p], steps_per_epoch=SPE, max_epochs=30, batch_size=10, num_train=100,
                                 fused=fused, lr=ALPHA, weight_decay=LAMBDA, **SCHEDULE)
    ours = []
    for step in range(STEPS):
        p.grad = torch.tensor(grad(p.detach().numpy(), step))
        opt.step()
        sched.step()
        ours.append(p.detach().numpy().copy())
    ref_fn = adam_reference if kind == "adam" else sgd_reference
    ref = ref_fn(theta0, grad, STEPS, alpha=ALPHA, eta=_eta, lam=lambda s: LAMBDA, decoupled=True, corrected=True)
    for step, (x, y) in enumerate(zip(ours, ref, strict=True)):
        rel = np.max(np.abs(x - y)) / np.max(np.abs(y))
        assert rel <= 1e-9, f"{name}: step {step}: relative error {rel:.3g}"
    # and the corrected decay is not the paper's: the eta_t reference is far away
    paper = ref_fn(theta0, grad, STEPS, alpha=ALPHA, eta=_eta, lam=lambda s: LAMBDA, decoupled=True)
    assert np.max(np.abs(paper[-1] - ref[-1])) / np.max(np.abs(ref[-1])) > 1e-4


def test_corrected_decay_coefficient_is_eta_squared_lambda():
    """decay_coefficient and the coefficient torch's Adam kernel gets (lr_t * wd) both give eta_t^2 * lambda."""
    p = torch.nn.Parameter(torch.ones(3))
    for cls, kw in ((AdamW, {}), (SGDW, {"momentum": 0.9})):
        opt = cls([p], lr=0.4, weight_decay=0.1, decay_scaling="corrected", **kw)
        group = opt.param_groups[0]
        group["lr"] = 0.1  # eta = 0.25
        assert cls.decay_coefficient(group) == pytest.approx(0.25**2 * 0.1, rel=1e-15)
    assert group["lr"] * AdamW._torch_weight_decay(group) == pytest.approx(0.25**2 * 0.1, rel=1e-15)


# -- the decay timescale ----------------------------------------------------------------------------


def _model():
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))


@pytest.mark.parametrize("name", ["adamw", "sgdw", "adamwr", "sgdwr", "adamc", "sgdc"])
def test_timescale_sets_lambda_to_one_over_tau_steps(name):
    """lambda = 1 / (tau * steps_per_epoch) per decayed group; the zero-decay group stays at 0; a timescale
    replaces an entry's normalized default, so lambda stays put across restarts."""
    tau, spe = 8.0, 25
    restarts = {"t0_epochs": 2, "t_mult": 2} if REGISTRY[name].schedule == "warm_restarts" else {}
    opt, sched = build_optimizer(name, param_groups(_model(), decay_bias_and_norm=False), steps_per_epoch=spe,
                                 max_epochs=6, batch_size=10, num_train=250, weight_decay_timescale=tau, **restarts)
    decay_group, no_decay_group = opt.param_groups
    assert decay_group["weight_decay"] == pytest.approx(1 / (8.0 * 25), rel=1e-15)
    assert decay_group["weight_decay_timescale"] == tau
    assert no_decay_group["weight_decay"] == 0.0
    assert sched.normalized_decay is None and "weight_decay_norm" not in decay_group
    for _ in range(spe * 6):  # across the restarts at epochs 2 and 6
        opt.step()
        sched.step()
        assert decay_group["weight_decay"] == pytest.approx(1 / 200, rel=1e-15)


def test_timescale_under_lr_scaling_divides_by_each_groups_lr():
    """decay_scaling='lr' decays by lr_t * wd, so wd = 1 / (tau * S * alpha_group); a group may set its own tau."""
    a, b, c = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
    groups = [{"params": [a]}, {"params": [b], "lr": 0.002}, {"params": [c], "weight_decay_timescale": 2.0}]
    opt, _ = build_optimizer("adamw", groups, steps_per_epoch=10, max_epochs=5, batch_size=10, num_train=100,
                             lr=0.01, decay_scaling="lr", weight_decay_timescale=4.0)
    wd = [g["weight_decay"] for g in opt.param_groups]
    assert wd == pytest.approx([1 / (4 * 10 * 0.01), 1 / (4 * 10 * 0.002), 1 / (2 * 10 * 0.01)], rel=1e-15)


@pytest.mark.parametrize("decay_scaling", ["schedule", "lr", "corrected"])
@pytest.mark.parametrize("cls,kwargs", [(AdamW, {}), (SGDW, {"momentum": 0.9})])
@pytest.mark.parametrize("lr", [1e-3, 0.1])
def test_timescale_is_the_same_decay_in_every_convention(cls, kwargs, lr, decay_scaling):
    """With g = 0 and a constant schedule, after tau epochs the weights are theta_0 * (1 - 1/(tau*S))^(tau*S)
    (about theta_0 / e) whatever the lr and the decay convention."""
    tau, spe = 3, 7
    p = torch.nn.Parameter(torch.full((5,), 2.0, dtype=torch.float64))
    opt, sched = build_optimizer("adamw" if cls is AdamW else "sgdw", [p], steps_per_epoch=spe, max_epochs=tau,
                                 batch_size=1, num_train=spe, lr=lr, schedule="constant", decay_scaling=decay_scaling,
                                 weight_decay_timescale=float(tau), **kwargs)
    for _ in range(tau * spe):
        p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
    expected = 2.0 * (1 - 1 / (tau * spe)) ** (tau * spe)
    torch.testing.assert_close(p.detach(), torch.full((5,), expected, dtype=torch.float64), rtol=1e-13, atol=0)
    assert expected == pytest.approx(2.0 / math.e, rel=0.03)


def test_timescale_group_errors():
    kwargs = {"steps_per_epoch": 5, "max_epochs": 10, "batch_size": 8, "num_train": 40}
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="sets both weight_decay_timescale and weight_decay"):
        build_optimizer("adamw", [{"params": [p], "weight_decay": 0.1, "weight_decay_timescale": 3.0}], **kwargs)
    with pytest.raises(ValueError, match="weight_decay_timescale must be a number of epochs > 0"):
        build_optimizer("sgdw", [{"params": [p], "weight_decay_timescale": -1.0}], **kwargs)
    with pytest.raises(ValueError, match="weight_decay_timescale does not apply to optimizer 'sgd'"):
        build_optimizer("sgd", [{"params": [p], "weight_decay_timescale": 3.0}], **kwargs)


# -- convert_decay -----------------------------------------------------------------------------------

RUN = {"lr": 0.001, "batch_size": 128, "num_train": 50000, "period_epochs": 100}
FORM_NAMES = ("weight_decay", "weight_decay_norm", "weight_decay_timescale", "torch_weight_decay")


def test_convert_decay_at_the_papers_cifar10_setup():
    """lambda_norm 0.05, b 128, B 50,000, T 100, S = ceil(50000/128) = 391, lr 1e-3, by hand."""
    forms = convert_decay(**RUN, weight_decay_norm=0.05)
    lam = 0.05 * math.sqrt(128 / (50000 * 100))
    assert forms.steps_per_epoch == 391
    assert forms.weight_decay == pytest.approx(lam, rel=1e-15)
    assert forms.weight_decay == pytest.approx(2.5298221281347e-4, rel=1e-12)
    assert forms.weight_decay_timescale == pytest.approx(1 / (lam * 391), rel=1e-14)
    assert forms.torch_weight_decay == pytest.approx(lam / 0.001, rel=1e-14)
    assert forms.weight_decay_norm == 0.05


@pytest.mark.parametrize("source", FORM_NAMES)
def test_convert_decay_round_trips(source):
    """Any form in, all four out; feeding any output back gives the same four."""
    start = convert_decay(**RUN, steps_per_epoch=400, weight_decay_timescale=12.5).forms()
    again = convert_decay(**RUN, steps_per_epoch=400, **{source: start[source]}).forms()
    assert again == pytest.approx(start, rel=1e-13)
    assert start["weight_decay"] == pytest.approx(1 / (12.5 * 400), rel=1e-15)


def test_convert_decay_agrees_with_what_the_optimizers_do():
    """The normalized and timescale forms are the lambda build_optimizer gives; the torch form is the
    torch.optim.AdamW run with the same per-step decay (theta <- theta - lr_t * wd * theta, lambda*eta_t = lr_t*wd)."""
    forms = convert_decay(lr=2e-3, batch_size=16, num_train=160, period_epochs=4, weight_decay_norm=0.3)
    assert forms.weight_decay == normalized_weight_decay(0.3, 16, 160, 4)
    p = torch.nn.Parameter(torch.ones(3))
    opt, _ = build_optimizer("adamw", [p], steps_per_epoch=forms.steps_per_epoch, max_epochs=4, batch_size=16,
                             num_train=160, lr=2e-3, weight_decay_timescale=forms.weight_decay_timescale)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(forms.weight_decay, rel=1e-14)

    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(10, dtype=torch.float64))
    b = torch.nn.Parameter(a.detach().clone())
    ours = AdamW([a], lr=2e-3, weight_decay=forms.weight_decay)
    ref = torch.optim.AdamW([b], lr=2e-3, weight_decay=forms.torch_weight_decay)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30) for o in (ours, ref)]
    for _ in range(30):
        g = torch.randn_like(a)
        for param, opt_, sched in ((a, ours, schedulers[0]), (b, ref, schedulers[1])):
            param.grad = g.clone()
            opt_.step()
            sched.step()
    torch.testing.assert_close(a, b, rtol=1e-13, atol=0)


def test_convert_decay_zero_decay_has_an_infinite_timescale():
    forms = convert_decay(**RUN, torch_weight_decay=0.0)
    assert (forms.weight_decay, forms.weight_decay_norm, forms.torch_weight_decay) == (0.0, 0.0, 0.0)
    assert forms.weight_decay_timescale == math.inf


@pytest.mark.parametrize(
    "changes,message",
    [
        ({}, "give exactly one of weight_decay, weight_decay_norm, weight_decay_timescale, torch_weight_decay; "
             "got none"),
        ({"weight_decay": 1e-4, "torch_weight_decay": 0.1}, "got weight_decay, torch_weight_decay"),
        ({"weight_decay": -1e-4}, "weight_decay must be a number >= 0"),
        ({"weight_decay_norm": -0.1}, "weight_decay_norm must be"),
        ({"weight_decay_timescale": 0}, "weight_decay_timescale must be a number of epochs > 0"),
        ({"torch_weight_decay": float("nan")}, "torch_weight_decay must be a number >= 0"),
        ({"lr": 0.0, "weight_decay": 1e-4}, "lr must be a number > 0"),
        ({"batch_size": 0, "weight_decay": 1e-4}, "batch_size must be a whole number >= 1"),
        ({"num_train": 1.5, "weight_decay": 1e-4}, "num_train must be a whole number >= 1"),
        ({"period_epochs": 0, "weight_decay": 1e-4}, "period_epochs must be a number > 0"),
        ({"steps_per_epoch": 0, "weight_decay": 1e-4}, "steps_per_epoch must be a whole number >= 1"),
    ],
)
def test_convert_decay_bad_input(changes, message):
    with pytest.raises(ValueError) as excinfo:
        convert_decay(**{**RUN, **changes})
    assert message in str(excinfo.value)


# -- wdlab optimizers ---------------------------------------------------------------------------------


def test_wdlab_optimizers_lists_every_entry_with_its_decay(capsys):
    assert main(["optimizers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines[1:]]
    assert names == list(REGISTRY)
    assert "adamc" in names and "sgdc" in names
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert "eta_t^2*lambda" in by_name["adamc"] and "eta_t^2*lambda" in by_name["sgdc"]
    assert "eta_t*lambda" in by_name["adamw"] and "eta_t^2" not in by_name["adamw"]


def test_wdlab_optimizers_convert_prints_the_four_forms(capsys):
    argv = ["optimizers", "--convert", "--lr", "0.001", "--weight_decay_norm", "0.05", "--batch_size", "128",
            "--num_train", "50000", "--epochs", "100"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.split()[:1] and
            line.split()[0] in FORM_NAMES}
    assert rows == {"weight_decay": "0.000252982", "weight_decay_norm": "0.05", "weight_decay_timescale": "10.1096",
                    "torch_weight_decay": "0.252982"}
    assert "S = 391 steps/epoch" in out and "<- given" in out
    assert main([*argv[:-2], "--epochs", "100", "--steps_per_epoch", "100"]) == 0
    assert "39.5285" in capsys.readouterr().out  # tau = 1 / (lambda * 100)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--convert"], "--convert needs --lr, --batch_size, --num_train, --epochs"),
        (["--convert", "--lr", "x"], "argument --lr: invalid float value: 'x'"),
        (["--convert", "--lr", "1e-3", "--batch_size", "128", "--num_train", "50000", "--epochs", "100"],
         "give exactly one of"),
        (["--convert", "--lr", "1e-3", "--batch_size", "128", "--num_train", "50000", "--epochs", "100",
          "--weight_decay", "1e-4", "--weight_decay_timescale", "10"], "got weight_decay, weight_decay_timescale"),
        (["--convert", "--lr", "-1", "--batch_size", "128", "--num_train", "50000", "--epochs", "100",
          "--weight_decay", "1e-4"], "lr must be a number > 0"),
        (["--convert", "--lr", "1e-3", "--batch_size", "128", "--num_train", "50000", "--epochs", "inf",
          "--weight_decay", "1e-4"], "--epochs must be a number > 0"),
        (["--lr", "0.1"], "--lr applies only with --convert"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_wdlab_optimizers_bad_input_is_one_line(capsys, argv, message):
    assert main(["optimizers", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wdlab optimizers: error: "), captured.err
    assert message in lines[0]


@pytest.mark.trains
def test_timescale_through_wdlab_fit(tmp_path, monkeypatch):
    """`--model.optimizer.weight_decay_timescale 5` in wdlab fit: the CLI's steps per epoch (320 images / batch 32
    = 10) give lambda = 1 / (5 * 10) in the decayed group, at every step of a run that has warm restarts."""
    from lightning.pytorch.callbacks import Callback

    from wdlab.cli import build_cli

    class Lambdas(Callback):
        def __init__(self) -> None:
            self.seen: list[float] = []

        def on_train_batch_start(self, trainer, *args) -> None:
            self.seen.append(trainer.optimizers[0].param_groups[0]["weight_decay"])

    monkeypatch.chdir(tmp_path)
    quickstart = QUICKSTART
    cli = build_cli(["--config", quickstart, "--model.optimizer.weight_decay_norm", "null",
                     "--model.optimizer.weight_decay_timescale", "5", "--model.optimizer.t0_epochs", "1",
                     *builtin_data(320, 32, 32), "--trainer.max_epochs", "3",
                     "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"], run=False)
    probe = Lambdas()
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert len(probe.seen) == 30 and all(lam == pytest.approx(1 / 50, rel=1e-15) for lam in probe.seen)
