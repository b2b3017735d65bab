"""Independent float64 references written from the paper's equations (NumPy, not torch.optim).

Nothing here imports wdlab: these are the yardsticks the implementation is measured against. One operator is
torch's own: Muon's Newton-Schulz orthogonalization, which torch computes in bfloat16 (NumPy has no bfloat16,
and a float64 one differs by ~1e-2); tests/optim/test_wrapped.py compares it with the float64 :func:`newton_schulz`.
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


def cautious_mask(update: np.ndarray, theta: np.ndarray, cautious: bool) -> np.ndarray | float:
    """Chen et al. (2025), Algorithm 1: x_{t+1} = x_t - eta_t (u_t + lambda I(u_t x_t >= 0) x_t), entrywise.
    The indicator (1 where update and weight agree in sign or either is 0), or 1 without ``cautious``."""
    return (update * theta >= 0).astype(np.float64) if cautious else 1.0


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
    cautious: bool = False,
) -> list[np.ndarray]:
    """Algorithm 2 of Loshchilov & Hutter (2019), AdamW (decoupled) or Adam with L2.

    With L2 the gradient is g + lambda*theta and the schedule multiplies the whole step
    alpha*eta_t (as torch's Adam with an LR scheduler); AdamW decays by eta_t*lambda*theta.
    ``corrected=True`` (AdamC, Defazio et al. 2025, in the paper's parameterization):
    theta_t = theta_{t-1} - eta_t*alpha*mhat_t/(sqrt(vhat_t)+eps) - eta_t^2*lambda*theta_{t-1}.
    ``cautious=True`` (Chen et al. 2025): the decay term times I(u_t * theta_{t-1} >= 0),
    u_t = mhat_t/(sqrt(vhat_t)+eps).
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
        mask = cautious_mask(adam_step, theta, cautious)
        if decoupled and corrected:
            theta = theta - e * adam_step - e * e * lam(t - 1) * mask * theta
        elif decoupled:
            theta = theta - e * (adam_step + lam(t - 1) * mask * theta)
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
    cautious: bool = False,
) -> list[np.ndarray]:
    """The authors' SGD: buf_t = mu*buf_{t-1} + g_t (buf_1 = g_1), then
    theta_t = theta_{t-1} - alpha*eta_t*d_t - eta_t*lambda*theta_{t-1} (SGDW) with d_t = buf_t
    (or g_t + mu*buf_t with Nesterov), or with L2 g_t <- g_t + lambda*theta_{t-1} and no decay term.
    ``corrected=True`` (SGDC, Defazio et al. 2025): the decay term is eta_t^2*lambda*theta_{t-1}.
    ``cautious=True`` (Chen et al. 2025): the decay term times I(d_t * theta_{t-1} >= 0).
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
            mask = cautious_mask(d, theta, cautious)
            new_theta = new_theta - (e * e if corrected else e) * lam(t - 1) * mask * theta
        theta = new_theta
        trajectory.append(theta.copy())
    return trajectory


def radam_reference(
    theta0: np.ndarray,
    grad_fn: Callable[[np.ndarray, int], np.ndarray],
    steps: int,
    *,
    alpha: float,
    eta: Callable[[int], float],
    lam: Callable[[int], float],
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    cautious: bool = False,
) -> list[np.ndarray]:
    """RAdam (Liu et al. 2020, Algorithm 2, eps added to sqrt(v_t)) with the paper's decoupled decay:
    rho_inf = 2/(1-beta2) - 1, rho_t = rho_inf - 2 t beta2^t/(1-beta2^t); if rho_t > 5,
    u_t = r_t * mhat_t * sqrt(1-beta2^t)/(sqrt(v_t)+eps) with
    r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t)), else u_t = mhat_t;
    theta_t = theta_{t-1} - eta_t*(alpha*u_t + lambda*theta_{t-1}) (``cautious``: lambda*I(u_t*theta_{t-1} >= 0))."""
    theta = theta0.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    rho_inf = 2 / (1 - beta2) - 1
    trajectory = []
    for t in range(1, steps + 1):
        g = grad_fn(theta, t - 1)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        mhat = m / (1 - beta1**t)
        rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        if rho_t > 5:
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            u = r * mhat * math.sqrt(1 - beta2**t) / (np.sqrt(v) + eps)
        else:
            u = mhat
        e = eta(t - 1)
        theta = theta - e * (alpha * u + lam(t - 1) * cautious_mask(u, theta, cautious) * theta)
        trajectory.append(theta.copy())
    return trajectory


def nadam_reference(
    theta0: np.ndarray,
    grad_fn: Callable[[np.ndarray, int], np.ndarray],
    steps: int,
    *,
    alpha: float,
    eta: Callable[[int], float],
    lam: Callable[[int], float],
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    momentum_decay: float = 4e-3,
    cautious: bool = False,
) -> list[np.ndarray]:
    """NAdam (Dozat 2016) with torch's momentum schedule mu_t = beta1*(1 - 0.5*0.96^(t*psi)), P_t = prod mu_i,
    m_t, v_t the Adam averages, D_t = sqrt(v_t/(1-beta2^t)) + eps,
    u_t = (1-mu_t)/(1-P_t) * g_t/D_t + mu_{t+1}/(1-P_t*mu_{t+1}) * m_t/D_t, and the paper's decoupled decay:
    theta_t = theta_{t-1} - eta_t*(alpha*u_t + lambda*theta_{t-1}) (``cautious``: lambda*I(u_t*theta_{t-1} >= 0))."""
    theta = theta0.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    product = 1.0
    trajectory = []
    for t in range(1, steps + 1):
        g = grad_fn(theta, t - 1)
        mu = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        product *= mu
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        denom = np.sqrt(v / (1 - beta2**t)) + eps
        u = (1 - mu) / (1 - product) * g / denom + mu_next / (1 - product * mu_next) * m / denom
        e = eta(t - 1)
        theta = theta - e * (alpha * u + lam(t - 1) * cautious_mask(u, theta, cautious) * theta)
        trajectory.append(theta.copy())
    return trajectory


def newton_schulz(x: np.ndarray, steps: int = 5, coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
                  eps: float = 1e-7) -> np.ndarray:
    """Muon's orthogonalization in float64: X_0 = x / max(|x|_F, eps) (the wide way round), then ``steps`` times
    X <- a X + (b A + c A^2) X with A = X X^T (Jordan et al. 2024)."""
    a, b, c = coefficients
    tall = x.shape[0] > x.shape[1]
    y = x.T if tall else x
    y = y / max(float(np.linalg.norm(y)), eps)
    for _ in range(steps):
        gram = y @ y.T
        y = a * y + (b * gram + c * gram @ gram) @ y
    return y.T if tall else y


def muon_reference(
    theta0: np.ndarray,
    grad_fn: Callable[[np.ndarray, int], np.ndarray],
    steps: int,
    *,
    alpha: float,
    eta: Callable[[int], float],
    lam: Callable[[int], float],
    orthogonalize: Callable[[np.ndarray], np.ndarray],
    momentum: float = 0.95,
    nesterov: bool = True,
    cautious: bool = False,
) -> list[np.ndarray]:
    """Muon with the paper's decoupled decay on a weight of ndim >= 2, seen as the (A, B) matrix
    (out, in*kh*kw): B_t = mu*B_{t-1} + (1-mu)*G_t, N_t = (1-mu)*G_t + mu*B_t (Nesterov) or B_t,
    O_t = orthogonalize(N_t), X_t = X_{t-1} - eta_t*(alpha*0.2*sqrt(max(A, B))*O_t + lambda*X_{t-1}).
    ``orthogonalize`` is the Newton-Schulz operator (torch's runs in bfloat16, which NumPy cannot).
    ``cautious``: the decay term times I(O_t * X_{t-1} >= 0)."""
    shape = theta0.shape
    rows, cols = shape[0], int(np.prod(shape[1:]))
    theta = theta0.astype(np.float64).reshape(rows, cols).copy()
    buf = np.zeros_like(theta)
    scale = 0.2 * math.sqrt(max(rows, cols))
    trajectory = []
    for t in range(1, steps + 1):
        g = grad_fn(theta.reshape(shape), t - 1).reshape(rows, cols)
        buf = momentum * buf + (1 - momentum) * g
        direction = (1 - momentum) * g + momentum * buf if nesterov else buf
        o = orthogonalize(direction)
        e = eta(t - 1)
        theta = theta - e * (alpha * scale * o + lam(t - 1) * cautious_mask(o, theta, cautious) * theta)
        trajectory.append(theta.reshape(shape).copy())
    return trajectory


def torch_newton_schulz(x: np.ndarray) -> np.ndarray:
    """torch.optim.Muon's orthogonalization (5 quintic Newton-Schulz steps in bfloat16) of a float64 matrix."""
    import torch
    from torch.optim._muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, EPS, _zeropower_via_newtonschulz

    out = _zeropower_via_newtonschulz(torch.from_numpy(x), (DEFAULT_A, DEFAULT_B, DEFAULT_C), 5, EPS)
    return out.double().numpy()


def muonw_reference(theta0: np.ndarray, grad_fn: Callable[[np.ndarray, int], np.ndarray], steps: int,
                    **kwargs: object) -> list[np.ndarray]:
    """MuonW: a weight of ndim >= 2 follows :func:`muon_reference` (with torch's orthogonalization), any other
    decoupled AdamW (:func:`adam_reference`)."""
    if theta0.ndim >= 2:
        return muon_reference(theta0, grad_fn, steps, orthogonalize=torch_newton_schulz, **kwargs)  # type: ignore[arg-type]
    return adam_reference(theta0, grad_fn, steps, decoupled=True, **kwargs)  # type: ignore[arg-type]
