"""Argument checks shared by the optimizers and the registry: one message per parameter."""

from __future__ import annotations

import math

#: How a decoupled optimizer scales its decay per step (eta_t = lr_t / initial_lr of the group):
#: ``schedule`` eta_t*lambda (the paper), ``lr`` lr_t*lambda (PyTorch), ``corrected`` eta_t^2*lambda
#: (AdamC/SGDC, Defazio et al. 2025). See :mod:`wdlab.optim.decoupled`.
DECAY_SCALINGS = ("schedule", "lr", "corrected")


#: Which coordinates a decoupled optimizer decays: ``all`` (the paper) or ``cautious`` (only where the update and
#: the weight agree in sign, Chen et al. 2025). See :mod:`wdlab.optim.decoupling`.
DECAY_MASKS = ("all", "cautious")


def check_decay_mask(decay_mask: object) -> None:
    if decay_mask not in DECAY_MASKS:
        raise ValueError(f"decay_mask must be 'all' (decay every coordinate, the paper) or 'cautious' (only where the "
                         f"update and the weight agree in sign, Chen et al. 2025); got {decay_mask!r}")


def check_decay_scaling(decay_scaling: object) -> None:
    if decay_scaling not in DECAY_SCALINGS:
        raise ValueError(
            f"decay_scaling must be 'schedule' (the paper: decay eta_t*lambda), 'lr' "
            f"(PyTorch's convention: decay lr_t*lambda) or 'corrected' (AdamC/SGDC: decay eta_t^2*lambda); "
            f"got {decay_scaling!r}"
        )


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_lr(lr: object) -> None:
    if not (is_number(lr) and lr > 0):
        raise ValueError(f"lr must be a number > 0, got {lr!r}")


def check_weight_decay(weight_decay: object) -> None:
    if not (is_number(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")


def check_betas(betas: object) -> None:
    if not (
        isinstance(betas, tuple | list) and len(betas) == 2 and all(is_number(b) and 0 <= b < 1 for b in betas)
    ):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")


def check_eps(eps: object) -> None:
    if not (is_number(eps) and eps > 0):
        raise ValueError(f"eps must be a number > 0, got {eps!r}")


def check_momentum(momentum: object, dampening: object, nesterov: object) -> None:
    if not (is_number(momentum) and 0 <= momentum < 1):
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    if not (is_number(dampening) and 0 <= dampening <= 1):
        raise ValueError(f"dampening must be a number in [0, 1], got {dampening!r}")
    if nesterov and (momentum == 0 or dampening != 0):
        raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")



def check_eta_min(eta_min: object) -> None:
    if not (isinstance(eta_min, int | float) and 0 <= eta_min < 1):
        raise ValueError(f"eta_min must be a number in [0, 1), got {eta_min!r}")
