"""``check_optimizer``: the test battery every built-in registry entry passes, for any entry. No Lightning here.

Use it in a pytest test of your own entry (it raises ``AssertionError`` with a message saying what failed)::

    from wdlab.testing import check_optimizer

    def test_my_entry_passes_the_battery():
        check_optimizer("lion", reference=my_float64_lion, lr=0.01)

The checks (:data:`CHECKS`), all on CPU in float64 unless said otherwise:

``reference``
    Only with a ``reference``. 250 steps of a noisy quadratic under warm restarts (restarts after steps
    20, 60, 140) with two parameter groups (the second: half the learning rate, no decay) follow the
    float64 reference to a relative error <= 1e-9 at every step; the run moves; and the comparison can fail
    (a reference with a 1 % larger lambda differs by more than 1e-6).
``low_precision``
    Only with a ``reference``. The same run in float32 (40 steps, rel. error <= 1e-4) and bfloat16
    (<= 0.1) keeps the parameters' dtype.
``round_trip``
    A small network trained 37 steps, saved through ``torch.save`` / ``torch.load(weights_only=True)``
    (model, optimizer, scheduler) and resumed, ends bit-identical to an uninterrupted 60-step run; in float32
    and in bfloat16 (where wdlab's decoupled entries round the decayed weights stochastically).
``zero_gradient``
    Decoupled entries only. With zero gradients a parameter shrinks by exactly prod_t (1 - decay_t)
    (relative 1e-13), decay_t = eta_t * lambda, lr_t * lambda or eta_t^2 * lambda for ``decay_scaling``
    ``schedule``, ``lr``, ``corrected``, at lr 1e-4, 0.01 and 1, for two groups with their own lr and lambda;
    under every ``decay_mask`` the entry takes (a zero update ties with every weight: cautious decay decays it).
``param_groups``
    Per-group settings hold: a group with zero gradient and zero decay does not move at all, every group's lr
    follows the schedule from its own initial lr, and the weight decay stays each group's own (0 for the
    zero-decay group; lambda_norm * sqrt(b / (B * T_i)) per period under normalized decay).
``bad_values``
    Out-of-range hyperparameters, ones the entry does not take (by its capability fields) and
    contradictory decay settings are refused by ``build_optimizer`` with a ``ValueError`` saying which; the
    class itself refuses a negative lr and a negative weight decay.

The reference is a function ``reference(theta0, grad, steps, *, alpha, eta, lam)`` returning the parameters
after every step as float64 NumPy arrays: ``grad(theta, step)`` is the gradient at ``theta`` for the update
with index ``step`` (0-based), ``alpha`` the group's base learning rate, ``eta(step)`` the schedule multiplier
and ``lam(step)`` the group's lambda (the paper's parameterization; for L2 entries the coefficient added to
the gradient). The entry's own hyperparameters (momentum, betas, ...) are its defaults; bind yours to match
(``functools.partial``). Write it from the equations, not from the optimizer's code.

Why one module of ~500 lines: the six checks share the test problems, the builders and the failure messages,
and a user imports one name from one place; each check is one function below, in the order of :data:`CHECKS`.
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
import torch

from wdlab.optim import DECAY_MASKS, DECAY_SCALINGS, REGISTRY, OptimizerSpec, build_optimizer, param_groups
from wdlab.optim.decay_probe import GroupVerdict, decay_of  # which decay an optimizer applies (wdlab decay-of)
from wdlab.optim.registry import CLASS_HYPERPARAMETERS, check_spec, takes_argument
from wdlab.optim.schedules import ScheduledLR

__all__ = ["CHECKS", "GroupVerdict", "ReferenceRun", "check_optimizer", "decay_of", "noisy_quadratic", "sgdr_eta",
           "sgdr_period_epochs"]

#: ``reference(theta0, grad, steps, *, alpha, eta, lam) -> [theta after step 1, ..., theta after step steps]``.
ReferenceRun = Callable[..., Sequence[np.ndarray]]

#: The checks :func:`check_optimizer` runs, in order (see the module docstring).
CHECKS = ("reference", "low_precision", "round_trip", "zero_gradient", "param_groups", "bad_values")

# The battery's schedule: warm restarts with periods of 20, 40, 80, 160 steps (restarts after steps 20, 60, 140).
STEPS_PER_EPOCH, T0_EPOCHS, T_MULT = 10, 2, 2
MAX_EPOCHS = T0_EPOCHS * 15  # 30 = 2 + 4 + 8 + 16: a period end
STEPS = 250
BATCH_SIZE, NUM_TRAIN = 100, 1000  # only normalized decay reads them
SIZES = (7, 5)  # the two parameter groups of the reference run
SHAPES = ((7,), (5,))  # their default shapes (check_optimizer(shapes=...) may lay the same 12 numbers out otherwise)
WEIGHT_DECAY, WEIGHT_DECAY_NORM = 0.05, 0.5  # large enough that decay visibly acts within 250 steps
TOLERANCE = 1e-9
LOW_PRECISION = {torch.float32: 1e-4, torch.bfloat16: 0.1}
LOW_PRECISION_STEPS = 40


def check_optimizer(
    spec: OptimizerSpec | str,
    *,
    reference: ReferenceRun | None = None,
    lr: float | None = None,
    fused: bool | None = None,
    checks: Iterable[str] = CHECKS,
    shapes: tuple[tuple[int, ...], tuple[int, ...]] = SHAPES,
) -> None:
    """Run the battery on ``spec`` (an entry or a registry name); AssertionError with a clear message on failure.

    Args:
        spec: an :class:`~wdlab.optim.OptimizerSpec` (registered or not: an unregistered one is first checked
            as :func:`wdlab.optim.register` checks it, ValueError if it is refused) or a registry name.
        reference: the float64 reference run (see the module docstring); without it the ``reference`` and
            ``low_precision`` checks are skipped.
        lr: the base learning rate of the ``reference``, ``low_precision`` and ``param_groups`` runs (default:
            the entry's). Pick one at which 250 steps move the parameters by more than 0.1.
            ``round_trip`` uses the entry's defaults, ``zero_gradient`` its own lrs.
        fused: the kernel, as :func:`wdlab.optim.build_optimizer` takes it (``True``: the fused one, which
            torch also runs on CPU); every run uses it.
        checks: a subset of :data:`CHECKS` (default: all).
        shapes: the shapes of the two parameters of the ``reference`` and ``low_precision`` runs (default: vectors
            of 7 and 5), e.g. ``((2, 2, 1, 2), (4,))`` for an optimizer that treats matrices apart; 12 numbers in
            all. The reference is handed each parameter in its shape.
    """
    if isinstance(spec, str):
        if spec not in REGISTRY:
            raise ValueError(f"check_optimizer: unknown optimizer {spec!r}; known: {', '.join(REGISTRY)}")
        spec = REGISTRY[spec]
    else:
        check_spec(spec)
    checks = tuple(checks)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"check_optimizer: unknown check(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(CHECKS)}")
    lr = float(spec.defaults["lr"] if lr is None else lr)
    if fused is not None and not takes_argument(spec.optimizer_class, "fused"):
        raise ValueError(f"check_optimizer: fused={fused}, but {spec.optimizer_class.__name__} takes no fused "
                         f"argument (build_optimizer then runs its own kernel); check it with fused=None")
    shapes = tuple(tuple(shape) for shape in shapes)  # type: ignore[assignment]
    if len(shapes) != 2 or sum(math.prod(shape) for shape in shapes) != sum(SIZES) or any(
            not shape or min(shape) < 1 for shape in shapes):
        raise ValueError(f"check_optimizer: shapes must be two shapes of {sum(SIZES)} numbers in all, e.g. "
                         f"{SHAPES}; got {shapes!r}")
    if reference is not None and "reference" in checks:
        _check_reference(spec, reference, lr, fused, shapes)
    if reference is not None and "low_precision" in checks:
        _check_low_precision(spec, reference, lr, fused, shapes)
    if "round_trip" in checks:
        _check_round_trip(spec, fused)
    if spec.decoupled and "zero_gradient" in checks:
        _check_zero_gradient(spec, fused)
    if "param_groups" in checks:
        _check_param_groups(spec, lr, fused)
    if "bad_values" in checks:
        _check_bad_values(spec)


# -- the battery's problem and schedule, written from the papers (independent of wdlab.optim.schedules) ----------
def sgdr_eta(step: int) -> float:
    """SGDR's eta for the update with index ``step``: 0.5 * (1 + cos(pi * T_cur / T_i)), T_cur in fractional epochs."""
    epochs_done = step / STEPS_PER_EPOCH
    start, length = 0, T0_EPOCHS
    while epochs_done >= start + length:
        start, length = start + length, length * T_MULT
    return 0.5 * (1 + math.cos(math.pi * (epochs_done - start) / length))


def sgdr_period_epochs(step: int) -> int:
    """T_i, the length in epochs of the warm-restart period the update with index ``step`` falls in."""
    epochs_done = step / STEPS_PER_EPOCH
    start, length = 0, T0_EPOCHS
    while epochs_done >= start + length:
        start, length = start + length, length * T_MULT
    return length


def noisy_quadratic(seed: int = 0) -> tuple[np.ndarray, Callable[[np.ndarray, int], np.ndarray]]:
    """theta0 and grad(theta, step) of a noisy quadratic with curvatures from 0.01 to 10 (fixed noise per step)."""
    rng = np.random.default_rng(seed)
    n = sum(SIZES)
    curvature = 10.0 ** rng.uniform(-2, 1, size=n)
    target = rng.normal(size=n)
    noise = rng.normal(scale=0.3, size=(STEPS + 1, n))
    theta0 = rng.normal(size=n)

    def grad(theta: np.ndarray, step: int) -> np.ndarray:
        return curvature * (theta - target) + noise[step]

    return theta0, grad


def _fail(spec: OptimizerSpec, check: str, message: str) -> NoReturn:
    raise AssertionError(f"check_optimizer({spec.name!r}) [{check}]: {message}")


def _class_kwargs(spec: OptimizerSpec) -> dict[str, Any]:
    """The keyword arguments build_optimizer gives the class, from the entry's defaults (lambda 0)."""
    kwargs: dict[str, Any] = {"lr": spec.defaults["lr"], "weight_decay": 0.0}
    kwargs.update({key: spec.defaults[key] for key in spec.hyperparameters})
    if spec.decoupled:
        kwargs["decay_scaling"] = spec.defaults["decay_scaling"]
    return kwargs


def _restart_overrides(lr: float) -> dict[str, Any]:
    return {"lr": lr, "schedule": "warm_restarts", "t0_epochs": T0_EPOCHS, "t_mult": T_MULT, "eta_min": 0.0,
            "warmup_epochs": 0.0}


def _decay_overrides(spec: OptimizerSpec) -> tuple[dict[str, float], float]:
    """The battery's decay (normalized entries keep their parameterization, others get raw lambda) and its value."""
    if spec.decay_parameterization == "normalized":
        return {"weight_decay_norm": WEIGHT_DECAY_NORM}, WEIGHT_DECAY_NORM
    return {"weight_decay": WEIGHT_DECAY}, WEIGHT_DECAY


def _lambda(spec: OptimizerSpec, value: float, step: int) -> float:
    """The raw lambda of the battery's first group for the update with index ``step``."""
    if spec.decay_parameterization == "normalized":
        return value * math.sqrt(BATCH_SIZE / (NUM_TRAIN * sgdr_period_epochs(step)))
    return value


def _build(spec: OptimizerSpec, params: Any, *, fused: bool | None, **overrides: Any,
           ) -> tuple[torch.optim.Optimizer, ScheduledLR]:
    return build_optimizer(spec, params, steps_per_epoch=STEPS_PER_EPOCH, max_epochs=MAX_EPOCHS,
                           batch_size=BATCH_SIZE, num_train=NUM_TRAIN, fused=fused, **overrides)


# -- reference -------------------------------------------------------------------------------------------------
def _run(spec: OptimizerSpec, theta0: np.ndarray, grad: Callable[[np.ndarray, int], np.ndarray], lr: float,
         fused: bool | None, *, dtype: torch.dtype = torch.float64, steps: int = STEPS,
         shapes: Sequence[tuple[int, ...]] = SHAPES) -> tuple[list[np.ndarray], torch.optim.Optimizer]:
    k = math.prod(shapes[0])
    a = torch.tensor(theta0[:k], dtype=dtype).reshape(shapes[0])
    b = torch.tensor(theta0[k:], dtype=dtype).reshape(shapes[1])
    params = [torch.nn.Parameter(a), torch.nn.Parameter(b)]
    # Second group: half the learning rate, no decay (per-group settings must be honoured).
    groups = [{"params": [params[0]]}, {"params": [params[1]], "lr": lr / 2, "weight_decay": 0.0}]
    opt, sched = _build(spec, groups, fused=fused, **_restart_overrides(lr), **_decay_overrides(spec)[0])
    trajectory = []
    for step in range(steps):
        theta = torch.cat([p.detach().reshape(-1) for p in params]).double().numpy()
        g = torch.tensor(grad(theta, step))
        params[0].grad = g[:k].to(dtype).reshape(shapes[0])
        params[1].grad = g[k:].to(dtype).reshape(shapes[1])
        opt.step()
        sched.step()
        trajectory.append(torch.cat([p.detach().reshape(-1) for p in params]).double().numpy().copy())
    return trajectory, opt


def _reference_run(spec: OptimizerSpec, reference: ReferenceRun, theta0: np.ndarray,
                   grad: Callable[[np.ndarray, int], np.ndarray], lr: float, lam_value: float,
                   shapes: Sequence[tuple[int, ...]] = SHAPES) -> list[np.ndarray]:
    k, n = math.prod(shapes[0]), len(theta0)
    # The two groups are independent coordinates, so each is its own reference run.
    first = reference(theta0[:k].reshape(shapes[0]),
                      lambda th, s: grad(np.concatenate([th.ravel(), np.zeros(n - k)]), s)[:k].reshape(shapes[0]),
                      STEPS, alpha=lr, eta=sgdr_eta, lam=lambda s: _lambda(spec, lam_value, s))
    second = reference(theta0[k:].reshape(shapes[1]),
                       lambda th, s: grad(np.concatenate([np.zeros(k), th.ravel()]), s)[k:].reshape(shapes[1]),
                       STEPS, alpha=lr / 2, eta=sgdr_eta, lam=lambda s: 0.0)
    if len(first) != STEPS or len(second) != STEPS:
        _fail(spec, "reference", f"the reference returned {len(first)} and {len(second)} states for {STEPS} steps; "
                                 f"it must return theta after every step")
    return [np.concatenate([np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()])
            for x, y in zip(first, second, strict=True)]


def _relative_error(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.max(np.abs(x - y)) / np.max(np.abs(y)))


def _check_reference(spec: OptimizerSpec, reference: ReferenceRun, lr: float, fused: bool | None,
                     shapes: Sequence[tuple[int, ...]]) -> None:
    theta0, grad = noisy_quadratic()
    lam_value = _decay_overrides(spec)[1]
    ours, opt = _run(spec, theta0, grad, lr, fused, shapes=shapes)
    if fused is not None and not all(group.get("fused") == fused for group in opt.param_groups):
        _fail(spec, "reference", f"fused={fused} did not reach the parameter groups")
    ref = _reference_run(spec, reference, theta0, grad, lr, lam_value, shapes)
    for step, (x, y) in enumerate(zip(ours, ref, strict=True)):
        rel = _relative_error(x, y)
        if not rel <= TOLERANCE:
            _fail(spec, "reference", f"step {step}: relative error {rel:.3g} against the float64 reference "
                                     f"(tolerance {TOLERANCE:g}; lr {lr:g}, fused={fused})")
    moved = float(np.max(np.abs(ours[-1] - theta0)))
    if not moved > 0.1:
        _fail(spec, "reference", f"the run barely moved (max |theta_T - theta_0| = {moved:.3g} <= 0.1), so the "
                                 f"comparison proves little: pass a larger lr=")
    wrong = _reference_run(spec, reference, theta0, grad, lr, lam_value * 1.01, shapes)
    if not _relative_error(ours[-1], wrong[-1]) > 1e-6:
        _fail(spec, "reference", "a reference with a 1 % larger lambda matches as well: the comparison cannot see "
                                 "the decay (does the reference use lam(step)?)")


def _check_low_precision(spec: OptimizerSpec, reference: ReferenceRun, lr: float, fused: bool | None,
                         shapes: Sequence[tuple[int, ...]]) -> None:
    theta0, grad = noisy_quadratic()
    ref = _reference_run(spec, reference, theta0, grad, lr, _decay_overrides(spec)[1], shapes)
    for dtype, tol in LOW_PRECISION.items():
        ours, opt = _run(spec, theta0, grad, lr, fused, dtype=dtype, steps=LOW_PRECISION_STEPS, shapes=shapes)
        rel = _relative_error(ours[-1], ref[LOW_PRECISION_STEPS - 1])
        if not rel <= tol:
            _fail(spec, "low_precision", f"{dtype}: relative error {rel:.3g} after {LOW_PRECISION_STEPS} steps "
                                         f"(tolerance {tol:g})")
        dtypes = {p.dtype for g in opt.param_groups for p in g["params"]}
        if dtypes != {dtype}:
            _fail(spec, "low_precision", f"{dtype} parameters became {sorted(map(str, dtypes))}")


# -- state_dict round trip -------------------------------------------------------------------------------------
def _check_round_trip(spec: OptimizerSpec, fused: bool | None) -> None:
    for dtype in (torch.float32, torch.bfloat16):
        _round_trip(spec, fused, dtype)


def _round_trip(spec: OptimizerSpec, fused: bool | None, dtype: torch.dtype) -> None:
    """Stop after 37 of 60 steps, save through a real torch.save/torch.load(weights_only=True), resume."""
    with torch.random.fork_rng(devices=[]):  # a library check must not move the caller's random stream
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)).to(dtype)
        data = torch.randn(60, 16, 6).to(dtype)
    kwargs: dict[str, Any] = {"steps_per_epoch": 10, "max_epochs": 6, "batch_size": 16, "num_train": 160,
                              "fused": fused}
    if spec.schedule == "warm_restarts":
        kwargs.update(t0_epochs=2, t_mult=2)  # periods 2 + 4: the run crosses a restart
    elif spec.schedule == "multistep":
        kwargs.update(milestones=[2, 4])

    def build(net: torch.nn.Module) -> tuple[torch.optim.Optimizer, ScheduledLR]:
        return build_optimizer(spec, param_groups(net, decay_bias_and_norm=False), **kwargs)

    def train(net: torch.nn.Module, opt: torch.optim.Optimizer, sched: ScheduledLR, start: int, stop: int) -> None:
        for step in range(start, stop):
            opt.zero_grad()
            net(data[step]).float().square().mean().backward()
            opt.step()
            sched.step()

    full = copy.deepcopy(model)
    opt, sched = build(full)
    train(full, opt, sched, 0, 60)

    part = copy.deepcopy(model)
    opt, sched = build(part)
    train(part, opt, sched, 0, 37)
    buffer = io.BytesIO()
    torch.save({"model": part.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    buffer.seek(0)
    try:
        ckpt = torch.load(buffer, weights_only=True)
    except Exception as error:
        _fail(spec, "round_trip", f"the optimizer's state_dict cannot be read back with torch.load(weights_only="
                                  f"True) (keep tensors, numbers and strings in it): {type(error).__name__}: {error}")

    resumed = copy.deepcopy(model)
    resumed.load_state_dict(ckpt["model"])
    opt, sched = build(resumed)
    opt.load_state_dict(ckpt["opt"])
    sched.load_state_dict(ckpt["sched"])
    train(resumed, opt, sched, 37, 60)

    for (key, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        if not torch.equal(a, b):
            _fail(spec, "round_trip", f"resumed from a state_dict saved at step 37 ({dtype}), {key} differs from the "
                                      f"uninterrupted run's after step 60 (max |diff| {(a - b).abs().max():.3g}): "
                                      f"the state_dict does not hold (or load_state_dict does not restore) all state")


# -- zero gradients: decay only -----------------------------------------------------------------------------------
def _check_zero_gradient(spec: OptimizerSpec, fused: bool | None) -> None:
    """theta_T = theta_0 * prod_t (1 - decay_t) for every decay_scaling and lr, per group; and for every
    decay_mask the entry takes (a zero update ties with every weight, and cautious decay decays at ties)."""
    lam, steps = 0.01, 120
    gen = torch.Generator().manual_seed(0)
    theta0 = torch.randn(50, dtype=torch.float64, generator=gen)
    masks: tuple[dict[str, str], ...] = ({},)
    if spec.accepts("decay_mask"):
        masks = tuple({"decay_mask": mask} for mask in DECAY_MASKS)
    for scaling, lr, mask in itertools.product(DECAY_SCALINGS, (1e-4, 0.01, 1.0), masks):
        a = torch.nn.Parameter(theta0[:30].clone())
        b = torch.nn.Parameter(theta0[30:].clone())
        # group 2: its own lr and lambda (lr/2 and 2 lambda: the same per-step decay under "lr" scaling)
        groups = [{"params": [a]}, {"params": [b], "lr": lr / 2, "weight_decay": 2 * lam}]
        opt, sched = _build(spec, groups, fused=fused, **_restart_overrides(lr), weight_decay=lam,
                            decay_scaling=scaling, **mask)
        expected = [1.0, 1.0]
        for step in range(steps):
            a.grad, b.grad = torch.zeros_like(a), torch.zeros_like(b)
            opt.step()
            sched.step()
            eta = sgdr_eta(step)
            for i, (group_lr, group_lam) in enumerate(((lr, lam), (lr / 2, 2 * lam))):
                per_step = {"schedule": eta, "lr": group_lr * eta, "corrected": eta**2}[scaling] * group_lam
                expected[i] *= 1 - per_step
        for i, (param, start) in enumerate(((a, theta0[:30]), (b, theta0[30:]))):
            try:
                torch.testing.assert_close(param.detach(), start * expected[i], rtol=1e-13, atol=0)
            except AssertionError as error:
                _fail(spec, "zero_gradient", f"decay_scaling={scaling!r}, lr={lr:g}, {mask or ''} group {i}: with zero "
                                             f"gradients theta must shrink by exactly prod(1 - decay_t) = "
                                             f"{expected[i]:.15g} over {steps} steps: {error}")


# -- parameter groups ---------------------------------------------------------------------------------------------
def _check_param_groups(spec: OptimizerSpec, lr: float, fused: bool | None) -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.nn.Parameter(torch.randn(6, dtype=torch.float64, generator=gen))
    b = torch.nn.Parameter(torch.randn(4, dtype=torch.float64, generator=gen))
    a0, b0 = a.detach().clone(), b.detach().clone()
    decay, lam_value = _decay_overrides(spec)
    groups = [{"params": [a]}, {"params": [b], "lr": lr / 2, "weight_decay": 0.0}]
    opt, sched = _build(spec, groups, fused=fused, **_restart_overrides(lr), **decay)
    first, second = opt.param_groups
    for step in range(70):  # crosses the restarts after steps 20 and 60
        a.grad = torch.randn(a.shape, dtype=torch.float64, generator=gen)
        b.grad = torch.zeros_like(b)
        opt.step()
        sched.step()
        if not torch.equal(b.detach(), b0):
            _fail(spec, "param_groups", f"step {step}: a group with zero gradient and weight_decay 0 moved")
        eta, lam = sgdr_eta(step + 1), _lambda(spec, lam_value, step + 1)  # the settings of the next update
        for i, (group, want_lr, want_lam) in enumerate(((first, lr * eta, lam), (second, lr / 2 * eta, 0.0))):
            if not math.isclose(group["lr"], want_lr, rel_tol=1e-12, abs_tol=1e-300):
                _fail(spec, "param_groups", f"after step {step}: group {i} has lr {group['lr']!r}, want "
                                            f"{want_lr!r} (its own initial lr times eta_t)")
            if not math.isclose(group["weight_decay"], want_lam, rel_tol=1e-12):
                _fail(spec, "param_groups", f"after step {step}: group {i} has weight_decay "
                                            f"{group['weight_decay']!r}, want {want_lam!r}")
    if torch.equal(a.detach(), a0):
        _fail(spec, "param_groups", "the group with gradients never moved")


# -- bad values ---------------------------------------------------------------------------------------------------
_COMMON_BAD: tuple[tuple[Mapping[str, Any], str], ...] = (
    ({"lr": 0.0}, "lr must be"),
    ({"lr": -1.0}, "lr must be"),
    ({"lr": float("nan")}, "lr must be"),
    ({"weight_decay": -1e-4}, "weight_decay must be"),
    ({"weight_decay_norm": -0.1}, "weight_decay_norm must be"),
    ({"weight_decay": 1e-4, "weight_decay_norm": 0.02}, "not both"),
    ({"schedule": "cyclic"}, "schedule must be one of"),
    ({"schedule": "cosine", "milestones": [3]}, "'milestones' does not apply to schedule 'cosine'"),
    ({"schedule": "cosine", "eta_min": 1.0}, "eta_min must be"),
    ({"schedule": "cosine", "warmup_epochs": 10}, "warmup_epochs must be"),
    ({"schedule": "warm_restarts", "t0_epochs": 0}, "t0_epochs must be"),
    ({"schedule": "warm_restarts", "t0_epochs": 10, "t_mult": 0.5}, "t_mult must be"),
    ({"schedule": "multistep", "milestones": [6, 3]}, "milestones must be strictly increasing"),
    ({"learning_rate": 0.1}, "unknown hyperparameter(s) 'learning_rate'"),
)
_DECOUPLED_BAD: tuple[tuple[Mapping[str, Any], str], ...] = (
    ({"decay_scaling": "epoch"}, "decay_scaling must be"),
    ({"weight_decay_timescale": 0.0}, "weight_decay_timescale must be a number of epochs > 0"),
    ({"weight_decay_timescale": -5.0}, "weight_decay_timescale must be a number of epochs > 0"),
    ({"weight_decay_timescale": float("inf")}, "weight_decay_timescale must be a number of epochs > 0"),
    ({"weight_decay_timescale": True}, "weight_decay_timescale must be a number of epochs > 0"),
    ({"weight_decay_timescale": 10.0, "weight_decay": 1e-4}, "got weight_decay and weight_decay_timescale"),
)
#: Per class hyperparameter: bad values and the message fragment; the first good value is used to test refusal
#: of a hyperparameter the entry does not take.
_HYPERPARAMETER_BAD: Mapping[str, tuple[Any, tuple[tuple[Any, str], ...]]] = {
    "betas": ((0.9, 0.99), (((0.9, 1.0), "betas must be two numbers in [0, 1)"), ((-0.1, 0.9), "betas must be"))),
    "eps": (1e-8, ((0.0, "eps must be"), (-1e-8, "eps must be"))),
    "momentum": (0.5, ((1.0, "momentum must be a number in"), (-0.1, "momentum must be a number in"))),
    "nesterov": (False, (("yes", "nesterov must be true or false"),)),
}


def _check_bad_values(spec: OptimizerSpec) -> None:
    name = spec.name
    cases = list(_COMMON_BAD)
    if spec.decoupled:
        cases += _DECOUPLED_BAD
    if spec.accepts("decay_mask"):
        cases.append(({"decay_mask": "sometimes"}, "decay_mask must be 'all'"))
    else:
        cases.append(({"decay_mask": "cautious"}, f"'decay_mask' does not apply to optimizer {name!r}"))
    if not spec.decoupled:
        cases += [({key: value}, f"{key!r} does not apply to optimizer {name!r}")
                  for key, value in (("decay_scaling", "lr"), ("weight_decay_timescale", 10.0))]
    for key in CLASS_HYPERPARAMETERS:
        good, bad = _HYPERPARAMETER_BAD[key]
        if key in spec.hyperparameters:
            cases += [({key: value}, message) for value, message in bad]
        else:
            cases.append(({key: good}, f"{key!r} does not apply to optimizer {name!r}"))
    for overrides, message in cases:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                build_optimizer(spec, torch.nn.Linear(2, 2).parameters(), steps_per_epoch=5, max_epochs=10,
                                batch_size=8, num_train=40, **overrides)
        except ValueError as error:
            if message not in str(error):
                _fail(spec, "bad_values", f"{overrides!r} was refused, but the message does not say {message!r}: "
                                          f"{error}")
            continue
        except Exception as error:
            _fail(spec, "bad_values", f"{overrides!r} raised {type(error).__name__} ({error}), not a ValueError "
                                      f"naming the problem")
        _fail(spec, "bad_values", f"{overrides!r} was accepted; it must raise ValueError ({message!r})")
    for key, value in (("lr", -1.0), ("weight_decay", -1.0)):
        kwargs = {**_class_kwargs(spec), key: value}
        try:
            spec.optimizer_class([torch.nn.Parameter(torch.zeros(2))], **kwargs)
        except ValueError:
            continue
        except Exception as error:
            _fail(spec, "bad_values", f"{spec.optimizer_class.__name__}({key}={value}) raised {type(error).__name__}, "
                                      f"not ValueError")
        _fail(spec, "bad_values", f"{spec.optimizer_class.__name__}({key}={value}) was accepted; the class must "
                                  f"refuse it with ValueError")
