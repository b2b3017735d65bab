"""Independent float64 references written from the paper's equations (NumPy, not torch.optim).

Nothing here imports wdlab: these are the yardsticks the implementation is measured against.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def sgdr_eta(step: int, steps_per_epoch: int, t0_epochs: int, t_mult: int, eta_min: float = 0.0) -> float:
    """SGDR: eta = eta_min + (1 - eta_min)/2 * (1 + cos(pi * T_cur / T_i)), T_cur in fractional epochs."""
    epochs_done = step / steps_per_epoch
    start, length = 0, t0_epochs
    while epochs_done >= start + length:
        start += length
        length *= t_mult
    t_cur = epochs_done - start
    return eta_min + (1 - eta_min) * 0.5 * (1 + math.cos(math.pi * t_cur / length))


def sgdr_period_length(step: int, steps_per_epoch: int, t0_epochs: int, t_mult: int) -> int:
    epochs_done = step / steps_per_epoch
    start, length = 0, t0_epochs
    while epochs_done >= start + length:
        start += length
        length *= t_mult
    return length


def adam_reference(
    theta0: np.ndarray,
    grad_fn: Callable[[np.ndarray, int], np.ndarray],
    steps: int,
    *,
    alpha: float,
    eta: Callable[[int], float],
    lam: Callable[[int], float],
    decoupled: bool,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    corrected: bool = False,
) -> list[np.ndarray]:
    """Algorithm 2 of Loshchilov & Hutter (2019), AdamW (decoupled) or Adam with L2.

    With L2 the gradient is g + lambda*theta and the schedule multiplies the whole step
    alpha*eta_t (as torch's Adam with an LR scheduler); AdamW decays by eta_t*lambda*theta.
    ``corrected=True`` (AdamC, Defazio et al. 2025, in the paper's parameterization):
    theta_t = theta_{t-1} - eta_t*alpha*mhat_t/(sqrt(vhat_t)+eps) - eta_t^2*lambda*theta_{t-1}.
    Returns theta after every step.
    """
    theta = theta0.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    trajectory = []
    for t in range(1, steps + 1):
        g = grad_fn(theta, t - 1)
        if not decoupled:
            g = g + lam(t - 1) * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        mhat = m / (1 - beta1**t)
        vhat = v / (1 - beta2**t)
        e = eta(t - 1)
        adam_step = alpha * mhat / (np.sqrt(vhat) + eps)
        if decoupled and corrected:
            theta = theta - e * adam_step - e * e * lam(t - 1) * theta
        elif decoupled:
            theta = theta - e * (adam_step + lam(t - 1) * theta)
        else:
            theta = theta - e * adam_step
        trajectory.append(theta.copy())
    return trajectory


def sgd_reference(
    theta0: np.ndarray,
    grad_fn: Callable[[np.ndarray, int], np.ndarray],
    steps: int,
    *,
    alpha: float,
    eta: Callable[[int], float],
    lam: Callable[[int], float],
    decoupled: bool,
    momentum: float = 0.9,
    nesterov: bool = False,
    corrected: bool = False,
) -> list[np.ndarray]:
    """The authors' SGD: buf_t = mu*buf_{t-1} + g_t (buf_1 = g_1), then
    theta_t = theta_{t-1} - alpha*eta_t*d_t - eta_t*lambda*theta_{t-1} (SGDW) with d_t = buf_t
    (or g_t + mu*buf_t with Nesterov), or with L2 g_t <- g_t + lambda*theta_{t-1} and no decay term.
    ``corrected=True`` (SGDC, Defazio et al. 2025): the decay term is eta_t^2*lambda*theta_{t-1}.
    """
    theta = theta0.astype(np.float64).copy()
    buf = None
    trajectory = []
    for t in range(1, steps + 1):
        g = grad_fn(theta, t - 1)
        if not decoupled:
            g = g + lam(t - 1) * theta
        buf = g.copy() if buf is None else momentum * buf + g
        d = g + momentum * buf if nesterov else buf
        e = eta(t - 1)
        new_theta = theta - alpha * e * d
        if decoupled:
            new_theta = new_theta - (e * e if corrected else e) * lam(t - 1) * theta
        theta = new_theta
        trajectory.append(theta.copy())
    return trajectory
