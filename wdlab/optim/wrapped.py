r"""Decoupled decay for any torch optimizer: :func:`decoupled` turns an optimizer class into one with the paper's
decay, and :class:`RAdamW` / :class:`NAdamW` are torch's RAdam and NAdam turned so.

With Delta_t the wrapped optimizer's own update (computed with its ``weight_decay`` at 0) and the notation of
:mod:`wdlab.optim.decoupling`, every step is

    theta_t = theta_{t-1} - Delta_t - eta_t * lambda * theta_{t-1}

lambda not multiplied by the learning rate, eta_t = lr_t / alpha from the schedule; ``decay_scaling`` ``"lr"`` and
``"corrected"`` give ``lr_t * lambda`` and ``eta_t**2 * lambda`` as for every decoupled entry, and the registry's
normalized decay and timescale reach lambda the same way (a group's ``weight_decay``, rewritten per period).
torch's own decay never acts: RAdam's and NAdam's ``decoupled_weight_decay=True`` decays by ``lr_t * wd``
(torch's convention), and their default is L2 in the gradient.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from wdlab.optim.decoupling import DecoupledWeightDecayMixin, closure_loss, unhooked_step

__all__ = ["NAdamW", "RAdamW", "decoupled"]

#: The keyword-only arguments :func:`decoupled` adds to the wrapped class.
DECOUPLED_ARGUMENTS = ("decay_scaling", "decay_mask")


def decoupled(optimizer_class: type[Optimizer], name: str | None = None) -> type[Optimizer]:
    """A subclass of ``optimizer_class`` whose decay is the paper's decoupled one (module docstring).

    The subclass takes the wrapped class's arguments plus ``decay_scaling`` (``"schedule"`` by default) and
    ``decay_mask`` (``"all"``; ``"cautious"``: Chen et al. 2025), keyword-only, keeps the given ``weight_decay``
    as lambda in every group, and runs the wrapped step with every group's ``weight_decay`` at 0. Its state_dict
    is the wrapped class's (plus the groups' ``initial_lr``, ``decay_scaling`` and ``decay_mask``). The wrapped
    update must not read the weights except through its decay (true of the Adam family, SGD and Muon), because
    the decay is applied to the weights before it (:mod:`wdlab.optim.decoupling`). Named ``name``
    (default: the class's name plus ``W``).
    """
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
        raise ValueError(f"decoupled() needs a torch.optim.Optimizer subclass, got {optimizer_class!r}")
    parameters = inspect.signature(optimizer_class).parameters
    if "weight_decay" not in parameters:
        raise ValueError(f"decoupled(): {optimizer_class.__name__} takes no weight_decay argument, so there is no "
                         f"decay to decouple; give the class a weight_decay")
    clash = [arg for arg in DECOUPLED_ARGUMENTS if arg in parameters]
    if clash:
        raise ValueError(f"decoupled(): {optimizer_class.__name__} already takes {', '.join(clash)}; it is decoupled")

    def __init__(self: Any, params: Any, *args: Any, decay_scaling: str = "schedule", decay_mask: str = "all",
                 **kwargs: Any) -> None:
        self._init_decoupled(decay_scaling, decay_mask)
        optimizer_class.__init__(self, params, *args, **kwargs)

    def step(self: Any, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        self._decoupled_step(lambda: unhooked_step(optimizer_class)(self))
        return loss

    # The signature callers and the registry read (takes_argument): the wrapped class's, plus ours.
    own = [p for p in inspect.signature(optimizer_class.__init__).parameters.values() if p.kind is not p.VAR_KEYWORD]
    added = [inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=str)
             for arg, default in zip(DECOUPLED_ARGUMENTS, ("schedule", "all"), strict=True)]
    __init__.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
    cls_name = name or f"{optimizer_class.__name__}W"
    doc = (f"{optimizer_class.__module__}.{optimizer_class.__qualname__} with the paper's decoupled weight decay "
           f"(see :func:`wdlab.optim.wrapped.decoupled`).")
    namespace = {"__init__": __init__, "step": torch.no_grad()(step), "__doc__": doc, "__module__": __name__,
                 "__qualname__": cls_name}
    return type(cls_name, (DecoupledWeightDecayMixin, optimizer_class), namespace)


RAdamW = decoupled(torch.optim.RAdam)
RAdamW.__doc__ = r"""torch.optim.RAdam (Liu et al., ICLR 2020) with the paper's decoupled weight decay.

    With the Adam moments m_t, v_t (betas beta1, beta2), mhat_t = m_t / (1 - beta1^t),
    rho_inf = 2 / (1 - beta2) - 1 and rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t):

        r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        u_t = r_t * mhat_t * sqrt(1 - beta2^t) / (sqrt(v_t) + eps)    if rho_t > 5,   else  u_t = mhat_t
        theta_t = theta_{t-1} - eta_t * (alpha * u_t + lambda * theta_{t-1})
    """

NAdamW = decoupled(torch.optim.NAdam)
NAdamW.__doc__ = r"""torch.optim.NAdam (Dozat 2016, with torch's momentum schedule) with the paper's decoupled decay.

    With psi = ``momentum_decay`` (4e-3), mu_t = beta1 * (1 - 0.5 * 0.96^(t psi)), P_t = mu_1 ... mu_t,
    m_t = beta1 m_{t-1} + (1 - beta1) g_t, v_t = beta2 v_{t-1} + (1 - beta2) g_t^2 and
    D_t = sqrt(v_t / (1 - beta2^t)) + eps:

        u_t = (1 - mu_t) / (1 - P_t) * g_t / D_t + mu_{t+1} / (1 - P_t mu_{t+1}) * m_t / D_t
        theta_t = theta_{t-1} - eta_t * (alpha * u_t + lambda * theta_{t-1})
    """
