r"""Rotational equilibrium: the angle a decayed weight matrix turns by per step, predicted and measured.

Kosson, Messmer & Jaggi (ICML 2024, "Rotational Equilibrium: How Weight Decay Balances Learning Across
Neural Networks") show that for a scale-invariant weight (one followed by a normalization, so the loss
depends on its direction only) weight decay drives the weight norm to an equilibrium at which the
*angular update* -- the angle between the weights before and after one step -- is a function of the
optimizer's hyperparameters only, the same for every such layer. Once the measured angle sits at the
prediction, the decay has taken hold; before that (e.g. right after a too-large initialization or a
learning-rate change) the layers still rotate faster or slower than the equilibrium.

The derivation, for one weight vector theta and a per-step update
``theta_t = (1 - d) * theta_{t-1} - u_t`` with ``d`` the *shrink* (the decay coefficient applied to the
weights this step) and ``u_t = lr * sum_k h_k * g_{t-k}`` a linear filter of the gradients (the momentum:
h_k is how much of gradient g_s enters the update k steps later):

1. Assumptions (the paper's random-walk model): the weight is scale-invariant, so each g_s is orthogonal
   to the weights it was computed at; at steady state gradients of different steps are uncorrelated with
   equal expected squared norm |g|^2 (for Adam: the normalized gradient g / sqrt(v), and eps << sqrt(v));
   lr, d and the filter change slowly compared with the equilibration time ~ 1 / (2 d); the per-step angle
   is small.
2. Norm balance. Per step the decay removes ``(2 d - d^2) |theta|^2 ~ 2 d |theta|^2``. The update adds
   ``|u_t|^2 - 2 <theta_{t-1}, u_t>``. The cross term is not zero under momentum: g_{t-k} is orthogonal to
   theta_{t-k-1}, but theta_{t-1} has moved along -g_{t-k} by ``lr * (h_0 + ... + h_{k-1})`` since. Summing,
   ``|u_t|^2 - 2 <theta_{t-1}, u_t> = lr^2 |g|^2 (sum_k h_k^2 + 2 sum_{i<k} h_i h_k) = lr^2 |g|^2 S^2``
   with ``S = sum_k h_k``: each gradient's *total* contribution ``lr * S * g`` is what random-walks the norm.
   Equilibrium: ``2 d |theta|^2 = lr^2 S^2 |g|^2``.
3. Angle. The update is tangential to first order, so the angle per step is
   ``|u_t| / |theta| = lr sqrt(E) |g| / |theta|`` with ``E = sum_k h_k^2``; with (2):

       angle = sqrt(2 * d * E / S^2)                                             (decoupled decay)

For the optimizers here (torch's parameterization, lr = the step's learning rate):

* AdamW, EMA momentum ``h_k = (1 - beta1) beta1^k``: S = 1, E = (1 - beta1) / (1 + beta1), so
  ``angle = sqrt(2 * d * (1 - beta1) / (1 + beta1))`` -- Kosson et al.'s AdamW result with d = lr * wd
  (torch) = eta_t * lambda (the paper of Loshchilov & Hutter). For wdlab's AdamW and SGDW
  ``d = optimizer.decay_coefficient(group)``, whatever the ``decay_scaling``.
* SGDW (wdlab's: the decay acts on the weights, outside the momentum buffer), buffer
  ``h_k = (1 - dampening) mu^k``: E / S^2 = (1 - mu) / (1 + mu), so
  ``angle = sqrt(2 * d * (1 - mu) / (1 + mu))``. Nesterov (``d_t = g_t + mu * buf_t``):
  h_0 = 1 + mu (1 - dampening), h_k = (1 - dampening) mu^(k+1).
* SGD with L2 (torch.optim.SGD's ``weight_decay`` = lambda'): the term lambda' * theta enters the momentum
  buffer, so the shrink is filtered like the gradient: ``d = lr * lambda' * S`` per step, and
  ``angle = sqrt(2 * lr * lambda' * E / S)`` = ``sqrt(2 * lr * lambda' / (1 + mu))`` for plain momentum --
  this is the SGDM formula of Kosson et al.'s Table 1 (their SGDM is torch's, L2 in the buffer; it is
  *not* the SGDW value: decoupling the decay from the buffer takes the factor 1 / (1 - mu) out of the
  shrink, hence the extra (1 - mu)).
* Adam with L2 (torch.optim.Adam's ``weight_decay``): lambda' * theta is normalized by sqrt(v) together
  with the gradient, so the shrink depends on the ratio of |g| to lambda' |theta| element by element: the
  equilibrium depends on each layer's gradient magnitude, not on the hyperparameters alone (the imbalance
  by which Kosson et al. explain AdamW's advantage over Adam+L2), and there is no closed form in general:
  the prediction is ``None``.

Adam's bias correction and the first ~1 / (1 - beta1) steps are outside the steady state, as is anything
right after a restart of the schedule (the angle then relaxes to the new value over ~1 / (2 d) steps).
For weights that are not scale-invariant (a classifier's last layer without normalization) the
prediction is only a reference. No Lightning here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from wdlab.optim.decoupled import SGDW, DecoupledWeightDecayMixin

__all__ = [
    "adamw_equilibrium_angle",
    "angular_update",
    "decayed_matrices",
    "equilibrium_angle",
    "predicted_angular_update",
    "sgd_l2_equilibrium_angle",
    "sgdw_equilibrium_angle",
]


def _momentum_filter_sums(momentum: float, dampening: float, nesterov: bool) -> tuple[float, float]:
    """(S, E) = (sum_k h_k, sum_k h_k^2) of torch's SGD momentum filter (lr outside the buffer).

        plain:     h_k = (1 - t) mu^k                          S = (1 - t) / (1 - mu),  E = (1 - t)^2 / (1 - mu^2)
        nesterov:  h_0 = 1 + mu (1 - t),  h_k = (1 - t) mu^(k+1)    S = 1 + (1 - t) mu / (1 - mu),
                   E = (1 + mu (1 - t))^2 + (1 - t)^2 mu^4 / (1 - mu^2)
        mu = 0:    h_0 = 1                                     S = E = 1

    (t = dampening; torch's first step puts g_1 in the buffer undamped, a transient.)
    """
    mu, keep = momentum, 1.0 - dampening
    if mu == 0:
        return 1.0, 1.0
    if nesterov:
        return 1.0 + keep * mu / (1.0 - mu), (1.0 + mu * keep) ** 2 + keep**2 * mu**4 / (1.0 - mu * mu)
    return keep / (1.0 - mu), keep * keep / (1.0 - mu * mu)


def adamw_equilibrium_angle(shrink: float, beta1: float) -> float:
    """Equilibrium angular update per step (radians) of AdamW with per-step shrink ``d``:

        angle = sqrt(2 * d * (1 - beta1) / (1 + beta1))

    d = the decay coefficient applied to the weights this step (torch: lr_t * wd; the paper: eta_t * lambda).
    Kosson et al. 2024; derivation in the module docstring (S = 1, E = (1 - beta1) / (1 + beta1)).
    """
    return math.sqrt(2.0 * shrink * (1.0 - beta1) / (1.0 + beta1))


def sgdw_equilibrium_angle(shrink: float, momentum: float = 0.0, *, dampening: float = 0.0,
                           nesterov: bool = False) -> float:
    """Equilibrium angular update per step (radians) of SGD with momentum and *decoupled* decay ``d``:

        angle = sqrt(2 * d * E / S^2)  =  sqrt(2 * d * (1 - mu) / (1 + mu))   (plain momentum, any dampening)

    d = the shrink ``theta <- (1 - d) * theta`` applied outside the buffer (wdlab's SGDW:
    ``decay_coefficient(group)``); S, E = sum and sum of squares of the momentum filter (module docstring).
    """
    s, e = _momentum_filter_sums(momentum, dampening, nesterov)
    return math.sqrt(2.0 * shrink * e / (s * s)) if s > 0 else 0.0


def sgd_l2_equilibrium_angle(lr: float, weight_decay: float, momentum: float = 0.0, *, dampening: float = 0.0,
                             nesterov: bool = False) -> float:
    """Equilibrium angular update per step (radians) of torch.optim.SGD with L2 ``weight_decay`` = lambda':

        angle = sqrt(2 * lr * lambda' * E / S)  =  sqrt(2 * lr * lambda' / (1 + mu))   (plain, undamped)

    The L2 term passes through the momentum buffer, so the effective shrink is lr * lambda' * S per step
    (Kosson et al. 2024, Table 1, SGDM). S, E as in :func:`sgdw_equilibrium_angle`.
    """
    s, e = _momentum_filter_sums(momentum, dampening, nesterov)
    return math.sqrt(2.0 * lr * weight_decay * e / s) if s > 0 else 0.0


def equilibrium_angle(optimizer: Optimizer, group: dict[str, Any]) -> float | None:
    """The predicted equilibrium angular update (radians per step) of ``group`` at the optimizer's current lr.

    wdlab AdamW / SGDW: shrink ``optimizer.decay_coefficient(group)`` (any ``decay_scaling``) into
    :func:`adamw_equilibrium_angle` / :func:`sgdw_equilibrium_angle`; torch.optim.AdamW (or Adam with
    ``decoupled_weight_decay``): shrink lr * wd; torch.optim.SGD (L2): :func:`sgd_l2_equilibrium_angle`;
    torch.optim.Adam with L2 ``weight_decay > 0`` and any other optimizer (a third-party decoupled entry
    included): ``None`` (no closed form here).
    """
    lr, wd = float(group["lr"]), float(group.get("weight_decay", 0.0))
    if isinstance(optimizer, DecoupledWeightDecayMixin):
        shrink = optimizer.decay_coefficient(group)
        if isinstance(optimizer, torch.optim.Adam):
            return adamw_equilibrium_angle(shrink, group["betas"][0])
        if isinstance(optimizer, SGDW):  # a third-party decoupled class: no formula known
            return sgdw_equilibrium_angle(shrink, group["momentum"], dampening=group["dampening"],
                                          nesterov=group["nesterov"])
        return None
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay", False)
        if decoupled or wd == 0:
            return adamw_equilibrium_angle(lr * wd, group["betas"][0])
        return None
    if isinstance(optimizer, torch.optim.SGD):
        return sgd_l2_equilibrium_angle(lr, wd, group["momentum"], dampening=group["dampening"],
                                        nesterov=group["nesterov"])
    return None


def _decayed_groups(optimizer: Optimizer) -> list[tuple[dict[str, Any], list[torch.Tensor]]]:
    """(group, its matrices) for every group with a nonzero ``weight_decay``; matrices = ndim >= 2."""
    out = []
    for group in optimizer.param_groups:
        if float(group.get("weight_decay", 0.0)) != 0:
            matrices = [p for p in group["params"] if p.ndim >= 2]
            if matrices:
                out.append((group, matrices))
    return out


def decayed_matrices(optimizer: Optimizer) -> list[torch.Tensor]:
    """The parameters whose angular update is measured: the matrices (ndim >= 2: linear and convolution
    weights) of every group with a nonzero ``weight_decay``. Biases and normalization weights are left out
    (they are not scale-invariant), as is a zero-decay group. Detached views of the parameters."""
    return [p.detach() for _, matrices in _decayed_groups(optimizer) for p in matrices]


def predicted_angular_update(optimizer: Optimizer) -> float | None:
    """The equilibrium prediction matching :func:`angular_update` over :func:`decayed_matrices`: the mean,
    over those matrices, of their group's :func:`equilibrium_angle` at the current step. ``None`` when any
    decayed group has no closed form (Adam with L2) or nothing is decayed."""
    total, count = 0.0, 0
    for group, matrices in _decayed_groups(optimizer):
        angle = equilibrium_angle(optimizer, group)
        if angle is None:
            return None
        total += angle * len(matrices)
        count += len(matrices)
    return total / count if count else None


@torch.no_grad()
def angular_update(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over tensors of the angle (radians) between ``before[i]`` and ``after[i]``, each as one vector::

        angle_i = 2 * asin(| a_i / |a_i| - b_i / |b_i| | / 2)

    (the chord between the unit vectors; equal to ``arccos(<a, b> / (|a| |b|))`` but accurate for the small
    angles of one step, where arccos loses half the digits). Multi-tensor ops throughout and no value
    read back: a 0-dim tensor on the tensors' device.
    """
    if len(before) != len(after) or not before:
        raise ValueError(f"angular_update needs two equally long, non-empty lists, got {len(before)} and {len(after)}")
    before, after = [t.detach() for t in before], [t.detach() for t in after]
    unit_before = torch._foreach_div(before, torch._foreach_norm(before))
    unit_after = torch._foreach_div(after, torch._foreach_norm(after))
    chords = torch._foreach_norm(torch._foreach_sub(unit_after, unit_before))
    chord = torch.stack([c.float() for c in chords])
    return (2.0 * torch.asin((chord / 2.0).clamp(max=1.0))).mean()
