"""Which weight decay does an optimizer really apply? The probe behind ``wdlab decay-of``. No Lightning here.

:func:`decay_of` runs any optimizer (an importable class or factory with its keyword arguments, or a registry
entry) on a small float64 problem whose gradients isolate the decay, and fits the per-step shrink it measures
against the conventions (alpha = a group's initial lr, eta_t = lr_t / alpha, wd = the group's ``weight_decay``):

==================  =====================================  ==========================================
convention          per-step decay d_t                     who
==================  =====================================  ==========================================
``schedule``        ``eta_t * wd``                         the paper; wdlab ``decay_scaling="schedule"``
``lr``              ``lr_t * wd = alpha * eta_t * wd``     torch/optax/Keras AdamW; wdlab ``"lr"``
``corrected``       ``eta_t^2 * wd``                       AdamC/SGDC; wdlab ``"corrected"``
``corrected_lr``    ``lr_t^2 / alpha * wd``                timm's ``corrected_weight_decay=True``
``l2``              ``wd * theta`` added to the gradient   torch's Adam and SGD ``weight_decay``
``none``            nothing                                no decay
==================  =====================================  ==========================================

How the probe tells them apart (each run has two parameter groups of 4 x 4 weights with magnitudes from 0.5 to
2, the second with :data:`GROUP_LR` x the lr and :data:`GROUP_WD` x the weight decay):

* **zero gradients**: a decoupled decay shrinks every weight by the same factor per step, measured directly;
  L2 goes through the optimizer's update instead (Adam normalizes it: its first step moves every weight by about
  lr, whatever its size, a shift and not a shrink);
* **crafted gradients** (a fixed sequence, independent of the weights, of scales 1e-3 to 1 per coordinate, each
  pointing away from zero): the same run without decay (``weight_decay=0``) gives the update, so the decay of a
  run is read per coordinate as ``d_t = -((theta_t - theta_{t-1}) - (theta0_t - theta0_{t-1})) / theta_{t-1}``;
  a decay that passes through the moments (L2 in Adam) or is applied after the update differs per coordinate;
* **L2**: the run without decay, fed ``g_t + wd_t * theta_{t-1}``, must reproduce the decay run;
* **schedule and lr**: every run is repeated at :data:`LR_SCALE` x the lr (a decay that does not move with the lr
  is the paper's, one proportional to it torch's); the schedule (default: cosine over the run) tells
  ``eta_t`` from ``eta_t^2``. With ``schedule="constant"`` (eta_t = 1) those two cannot be told apart: the
  verdict then says "ambiguous".

A convention fits when its predicted per-step decay matches every measured one within :data:`TOLERANCE` of the
largest predicted decay (plus a few float64 ulps). For plain SGD without momentum L2 and torch's decoupled
``lr_t * wd`` are the same arithmetic; the verdict says "equivalent" and gives both.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from wdlab.optim.probe_target import PROBE_SHAPE, ProbeTarget, StepFailed, probe_target

__all__ = ["CONVENTIONS", "GroupVerdict", "decay_of", "parse_value"]

#: Convention name -> how ``wdlab decay-of`` describes it.
CONVENTIONS: Mapping[str, str] = {
    "schedule": "paper eta_t*lambda (decay_scaling 'schedule')",
    "lr": "torch lr_t*wd (decay_scaling 'lr')",
    "corrected": "corrected eta_t^2*lambda (decay_scaling 'corrected')",
    "corrected_lr": "corrected lr_t^2/lr_max*wd (timm corrected_weight_decay)",
    "l2": "L2 in the gradient (coupled with the moments)",
    "none": "none",
}
#: Decoupled conventions: d_t = wd_t * alpha**q * eta_t**p, as (p, q).
_DECOUPLED = {"schedule": (1, 0), "lr": (1, 1), "corrected": (2, 0), "corrected_lr": (2, 1)}

STEPS = 40
LR_SCALE = 0.5
GROUP_LR, GROUP_WD = 0.5, 3.0
TOLERANCE = 1e-6
PROBE_ULPS = 16  # float rounding of the measured per-step decay (a few operations on weights near 1), in eps


@dataclass(frozen=True)
class GroupVerdict:
    """What one parameter group's decay is.

    ``status``: ``match`` (one convention fits), ``equivalent`` (L2 and one decoupled convention fit: the same
    arithmetic for this optimizer), ``ambiguous`` (several decoupled conventions fit) or ``no fit``.
    ``convention``: the one that fits (the decoupled one when ``equivalent``), else None. ``fits``: all that fit.
    ``residual``: max ``|measured - predicted decay|`` over the largest predicted decay, of ``convention`` or else
    of ``closest``: the convention whose shape fits best when its decay may be off by a factor ``lambda_ratio``
    (least squares; 2 for a decay applied twice; 1 when it fits), ``scaled_residual`` the residual then.
    ``per_step_decay``: the shrink of the first zero-gradient step (at ``eta0``), None when it is not the same
    factor for every weight; ``first_step_over_lr``: that step's median ``|change|`` / lr (1 for Adam with L2).
    ``paper_lambda``: the paper's lambda (per-step decay at eta_t = 1) the decay equals, None for L2.
    ``residuals``: every convention's.
    """

    group: int
    lr: float
    weight_decay: float
    status: str
    convention: str | None
    fits: tuple[str, ...]
    closest: str
    residual: float
    residuals: Mapping[str, float]
    scaled_residual: float
    per_step_decay: float | None
    eta0: float
    paper_lambda: float | None
    lambda_ratio: float | None
    first_step_over_lr: float
    constant_schedule: bool
    dtype: torch.dtype

    def line(self) -> str:
        """The verdict in one line (what ``wdlab decay-of`` prints)."""
        head = f"group {self.group} (lr {self.lr:g}, weight_decay {self.weight_decay:g}): "
        if self.status == "match" and self.convention == "none":
            why = "weight_decay is 0" if self.weight_decay == 0 else "the weights do not decay"
            return f"{head}none -- {why}: per-step decay 0, paper lambda 0"
        decay = (f"per-step decay {self.per_step_decay:.4g} at eta_t = {self.eta0:.4g}"
                 if self.per_step_decay is not None else
                 f"not a multiplicative shrink: a zero-gradient step moves each weight by "
                 f"{self.first_step_over_lr:.3g} x lr, whatever its size")
        residual = f"residual {self.residual:.2g}"
        if self.status == "match" and self.convention == "l2":
            if self.per_step_decay is not None:  # e.g. SGD with momentum: the decay then grows with the buffer
                decay = f"first-step decay {self.per_step_decay:.4g}, later steps through the optimizer's state"
            return f"{head}{CONVENTIONS['l2']} -- {decay}, no paper lambda, {residual}"
        if self.status in ("match", "equivalent"):
            assert self.convention is not None and self.paper_lambda is not None
            relation = "lr*weight_decay" if _DECOUPLED[self.convention][1] else "weight_decay"
            label = CONVENTIONS[self.convention]
            if self.status == "equivalent":
                label = f"{label} = L2 in the gradient (the same steps for this optimizer)"
            return f"{head}{label} -- {decay}, paper lambda {self.paper_lambda:.4g} (= {relation}), {residual}"
        if self.status == "ambiguous":
            why = ("the schedule is constant (eta_t = 1): give a schedule to tell them apart"
                   if self.constant_schedule else f"they predict the same decay here, within {self.dtype} rounding")
            return (f"{head}ambiguous: {' or '.join(CONVENTIONS[c] for c in self.fits)} -- {why}; {decay}, "
                    f"{residual}")
        closest = CONVENTIONS[self.closest]
        if self.closest in _DECOUPLED and self.lambda_ratio is not None:
            closest += (f" times {self.lambda_ratio:.4g} (then residual "
                        f"{self.scaled_residual:.2g})")
        return f"{head}no convention fits (tolerance {TOLERANCE:g}) -- {decay}; closest: {closest}, {residual}"


def decay_of(
    optimizer: str | type[Optimizer] | Callable[..., Optimizer],
    /,
    *,
    schedule: str | type[LRScheduler] | Callable[[Optimizer], LRScheduler] | None = None,
    schedule_kwargs: Mapping[str, Any] | None = None,
    steps: int = STEPS,
    **kwargs: Any,
) -> list[GroupVerdict]:
    """Which decay ``optimizer`` applies, one :class:`GroupVerdict` per parameter group (two groups).

    Args:
        optimizer: a registry name (``"adamw"``: built by :func:`wdlab.optim.build_optimizer` with its defaults
            and schedule), a dotted path (``"torch.optim.AdamW"``), an optimizer class, or a factory called as
            ``factory(param_groups, **kwargs)``. It must take ``lr`` and keep ``weight_decay`` in its groups.
        schedule: for a class or factory: a wdlab schedule name (``"cosine"``, the default, or ``"constant"``,
            ``"multistep"``, ``"warm_restarts"``; one step is one epoch), a torch LR scheduler class or its
            dotted path, or a function ``optimizer -> scheduler``. For a registry entry: its ``schedule``
            hyperparameter (default: the entry's own).
        schedule_kwargs: the scheduler's keyword arguments (for a registry entry: more hyperparameters).
        steps: steps per run.
        **kwargs: the optimizer's keyword arguments (for a registry entry: hyperparameter overrides).

    Raises ValueError (one line: the problem and the fix) for an optimizer or schedule that cannot be built.
    """
    if not (isinstance(steps, int) and steps >= 4):
        raise ValueError(f"steps must be a whole number >= 4, got {steps!r}")
    builder = probe_target(optimizer, schedule, dict(schedule_kwargs or {}), steps, kwargs)
    try:
        return _probe(builder, torch.float64, steps)
    except StepFailed as error:
        first = error
    try:  # float64 refused by the optimizer (some fused kernels): float32, with its rounding in the tolerance
        return _probe(builder, torch.float32, steps)
    except StepFailed:
        raise ValueError(f"{builder.name}: step() failed: {first}; decay-of runs optimizers whose step() takes "
                         f"float64 or float32 CPU tensors and needs no closure") from None


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal (``1e-3``, ``(0.9, 0.99)``, ``True``), or a bare word as a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if re.fullmatch(r"[A-Za-z_][\w.\-]*", text):
            return text
        raise ValueError(f"cannot read {text!r} as a Python literal; write numbers, tuples like (0.9,0.99), "
                         f"True/False/None, or quote strings") from None


# -- the runs ------------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    theta: list[np.ndarray]  # per group: (steps + 1, n) weights
    lr: list[np.ndarray]  # per group: (steps,) lr of each step
    wd: list[np.ndarray]  # per group: (steps,) weight_decay of each step
    alpha: list[float]  # per group: initial lr


def _start(dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Initial weights (magnitudes 0.5 to 2, both signs) and the per-coordinate gradient scales (1e-3 to 1)."""
    gen = torch.Generator().manual_seed(0)
    n = math.prod(PROBE_SHAPE)
    thetas, scales = [], []
    for _ in range(2):
        magnitude = torch.logspace(math.log10(0.5), math.log10(2.0), n, dtype=torch.float64)
        sign = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
        thetas.append((magnitude * sign).reshape(PROBE_SHAPE).to(dtype))
        order = torch.randperm(n, generator=gen)
        scales.append(torch.logspace(-3, 0, n, dtype=torch.float64)[order].reshape(PROBE_SHAPE))
    return thetas, scales


def _gradients(theta0: list[torch.Tensor], scales: list[torch.Tensor], steps: int, dtype: torch.dtype,
               ) -> list[list[torch.Tensor]]:
    """Per step and group: -sign(theta0) * scale * (1 + 0.5 u), u uniform in [-1, 1): steps push |theta| up."""
    gen = torch.Generator().manual_seed(1)
    return [[(-torch.sign(t.double()) * s * (1 + 0.5 * (2 * torch.rand(PROBE_SHAPE, generator=gen, dtype=torch.float64)
                                                         - 1))).to(dtype) for t, s in zip(theta0, scales, strict=True)]
            for _ in range(steps)]


def _run(builder: ProbeTarget, dtype: torch.dtype, steps: int, *, scale: float, decay: bool,
         grads: list[list[torch.Tensor]] | None, l2: _Run | None = None) -> _Run:
    theta0, _ = _start(dtype)
    params = [torch.nn.Parameter(t.clone()) for t in theta0]
    groups = [{"params": [params[0]]}, {"params": [params[1]], "lr": builder.lr * GROUP_LR * scale,
                                        "weight_decay": builder.weight_decay * GROUP_WD if decay else 0.0}]
    opt, sched = builder.make(groups, scale, decay)
    alpha = [float(g.get("initial_lr", g["lr"])) for g in opt.param_groups]
    theta = [[p.detach().double().flatten().numpy().copy()] for p in params]
    lrs: list[list[float]] = [[], []]
    wds: list[list[float]] = [[], []]
    for step in range(steps):
        for i, (group, p) in enumerate(zip(opt.param_groups, params, strict=True)):
            lrs[i].append(float(group["lr"]))
            wds[i].append(float(group["weight_decay"]))
            grad = torch.zeros_like(p) if grads is None else grads[step][i].clone()
            if l2 is not None:  # L2 by hand: the decay run's coefficient times the current weights
                grad += l2.wd[i][step] * p.detach()
            p.grad = grad
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt.step()
                if sched is not None:
                    sched.step()
        except (RuntimeError, TypeError, NotImplementedError) as error:
            raise StepFailed(f"{type(error).__name__}: {' '.join(str(error).split())}") from None
        for i, p in enumerate(params):
            theta[i].append(p.detach().double().flatten().numpy().copy())
    return _Run([np.stack(t) for t in theta], [np.array(x) for x in lrs], [np.array(x) for x in wds], alpha)


def _decay(run: _Run, plain: _Run, group: int) -> np.ndarray:
    """The measured per-step decay, per step and coordinate.

    With u_t the update the run without decay makes from the same gradients (they do not depend on the
    weights), a decoupled decay on the pre-update weights gives theta_t = (1 - d_t) theta_{t-1} - u_t, so

        d_t = -((theta_t - theta_{t-1}) - (theta0_t - theta0_{t-1})) / theta_{t-1}
    """
    d, p = run.theta[group], plain.theta[group]
    return -(np.diff(d, axis=0) - np.diff(p, axis=0)) / d[:-1]


def _predicted(run: _Run, group: int, convention: str) -> np.ndarray:
    """d_t = wd_t * alpha**q * eta_t**p, eta_t = lr_t / alpha, (p, q) of the convention."""
    p, q = _DECOUPLED[convention]
    alpha = run.alpha[group]
    eta = run.lr[group] / alpha
    return (run.wd[group] * alpha**q * eta**p)[:, None]


def _probe(builder: ProbeTarget, dtype: torch.dtype, steps: int) -> list[GroupVerdict]:
    theta0, scales = _start(dtype)
    crafted = _gradients(theta0, scales, steps, dtype)
    decayed, plain, l2 = [], [], []
    for scale in (1.0, LR_SCALE):
        for grads in (None, crafted):
            run = _run(builder, dtype, steps, scale=scale, decay=True, grads=grads)
            decayed.append(run)
            plain.append(_run(builder, dtype, steps, scale=scale, decay=False, grads=grads))
            l2.append(_run(builder, dtype, steps, scale=scale, decay=False, grads=grads, l2=run))
    floor = PROBE_ULPS * float(torch.finfo(dtype).eps)
    verdicts = []
    for group in range(2):
        measured = [_decay(r, p, group) for r, p in zip(decayed, plain, strict=True)]
        references = {c: [_predicted(r, group, c) for r in decayed] for c in _DECOUPLED}
        references["l2"] = [_decay(r, p, group) for r, p in zip(l2, plain, strict=True)]
        residuals, fits = {}, []
        for convention, reference in references.items():
            error = max(float(np.max(np.abs(m - r))) for m, r in zip(measured, reference, strict=True))
            scale = max(float(np.max(np.abs(r))) for r in reference)
            residuals[convention] = error / scale if scale > 0 else math.inf
            if error <= TOLERANCE * scale + floor and scale > 0:
                fits.append(convention)
        largest = max(float(np.max(np.abs(m))) for m in measured)
        verdicts.append(_verdict(builder, group, decayed[0], measured, references, residuals, fits,
                                 none=largest <= floor, dtype=dtype))
    return verdicts


def _verdict(builder: ProbeTarget, group: int, first: _Run, measured: list[np.ndarray],
             references: Mapping[str, list[np.ndarray]], residuals: dict[str, float], fits: list[str], *,
             none: bool, dtype: torch.dtype) -> GroupVerdict:
    theta = first.theta[group]  # zero gradients, lr scale 1
    shrink = 1 - theta[1] / theta[0]
    floor = PROBE_ULPS * float(torch.finfo(dtype).eps)
    uniform = float(np.ptp(shrink)) <= TOLERANCE * float(np.max(np.abs(shrink))) + floor
    eta0 = float(first.lr[group][0] / first.alpha[group])
    decoupled = [c for c in fits if c in _DECOUPLED]
    if none:
        status, convention, fits = "match", "none", ["none"]
    elif len(decoupled) > 1:
        status, convention = "ambiguous", None
    elif decoupled:
        status, convention = ("equivalent" if "l2" in fits else "match"), decoupled[0]
    elif fits:
        status, convention = "match", fits[0]
    else:
        status, convention = "no fit", None
    meas = np.concatenate([m.ravel() for m in measured])
    ratios, scaled = {}, {}
    for c in _DECOUPLED:  # the convention's shape with the best factor on its decay (2 for a decay applied twice)
        pred = np.concatenate([np.broadcast_to(r, m.shape).ravel() for m, r in
                               zip(measured, references[c], strict=True)])
        if pred @ pred > 0:
            ratios[c] = float(pred @ meas / (pred @ pred))
            scaled[c] = float(np.max(np.abs(meas - ratios[c] * pred)) / np.max(np.abs(ratios[c] * pred)))
    candidates = {**scaled, "l2": residuals["l2"]}
    candidates = {c: r for c, r in candidates.items() if math.isfinite(r)}
    closest = convention or (min(candidates, key=candidates.__getitem__) if candidates else "none")
    per_step = float(np.median(shrink)) if uniform else None
    paper_lambda = None
    if convention == "none":
        per_step, paper_lambda = 0.0, 0.0
    elif convention in _DECOUPLED and per_step is not None:
        paper_lambda = per_step / eta0 ** _DECOUPLED[convention][0]
    moved = float(np.median(np.abs(theta[1] - theta[0]))) / float(first.lr[group][0])
    return GroupVerdict(
        group=group, lr=first.alpha[group], weight_decay=float(first.wd[group][0]), status=status,
        convention=convention, fits=tuple(fits), closest=closest,
        residual=0.0 if convention == "none" else residuals.get(closest, math.inf), residuals=dict(residuals),
        scaled_residual=scaled.get(closest, math.nan), lambda_ratio=ratios.get(closest),
        per_step_decay=per_step, eta0=eta0, paper_lambda=paper_lambda,
        first_step_over_lr=moved, constant_schedule=builder.constant_schedule, dtype=dtype,
    )
