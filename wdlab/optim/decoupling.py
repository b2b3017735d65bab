"""The decoupled decay step every decoupled optimizer shares: :class:`DecoupledWeightDecayMixin`.

Notation: alpha = a group's initial learning rate, lambda = its ``weight_decay``, eta_t = lr_t / alpha the
schedule multiplier, d_t = the per-step decay (:meth:`~DecoupledWeightDecayMixin.decay_coefficient`: eta_t * lambda
in the paper's parameterization). The mixin keeps lambda in every group and decays the weights itself, around an
update computed with no decay of its own (:meth:`~DecoupledWeightDecayMixin._decoupled_step`); wdlab's AdamW and
SGDW hand the decay to their fused kernels instead where that is the same math (see :mod:`wdlab.optim.decoupled`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from wdlab.optim.validation import check_decay_scaling, check_lr, check_weight_decay


class DecoupledWeightDecayMixin:
    """What every decoupled optimizer shares: the schedule multiplier and the per-step decay.

    Every group records ``initial_lr`` (the lr it was built with, unless a torch LR scheduler
    already set it) and its ``decay_scaling``. A group's ``weight_decay`` always holds the
    user's lambda in the group's own convention.
    """

    param_groups: list[dict[str, Any]]

    def _init_decoupled(self, decay_scaling: str) -> None:
        check_decay_scaling(decay_scaling)
        self._default_decay_scaling = decay_scaling

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        param_group.setdefault("decay_scaling", self._default_decay_scaling)
        check_decay_scaling(param_group["decay_scaling"])
        super().add_param_group(param_group)  # type: ignore[misc]
        group = self.param_groups[-1]
        check_lr(group["lr"])
        check_weight_decay(group["weight_decay"])
        group.setdefault("initial_lr", group["lr"])

    @staticmethod
    def schedule_multiplier(group: dict[str, Any]) -> float:
        """eta_t = lr_t / initial_lr of the group."""
        return group["lr"] / group["initial_lr"]

    @classmethod
    def decay_coefficient(cls, group: dict[str, Any]) -> float:
        """The decay applied per step to the group's weights, theta <- (1 - coefficient) * theta.

        With eta_t = lr_t / initial_lr and lambda = the group's ``weight_decay``:

            "schedule":  coefficient = eta_t * lambda                (the paper)
            "lr":        coefficient = lr_t * lambda                 (PyTorch's convention)
            "corrected": coefficient = eta_t**2 * lambda             (AdamC / SGDC, Defazio et al. 2025)
                                     = lr_t**2 / lr_max * (lambda / alpha),  lr_max = alpha = initial_lr
        """
        scaling = group["decay_scaling"]
        if scaling == "lr":
            return group["lr"] * group["weight_decay"]
        eta = cls.schedule_multiplier(group)
        if scaling == "corrected":
            return eta * eta * group["weight_decay"]
        return eta * group["weight_decay"]

    @torch.no_grad()
    def _decoupled_step(self, update: Callable[[], None],
                        kernel_weight_decay: Callable[[dict[str, Any]], float] | None = None) -> None:
        r"""One step of the update ``update`` with the decay decoupled from it, per group:

            theta_t = theta_{t-1} - Delta_t - d_t * theta_{t-1}

        Delta_t is what ``update`` (the wrapped optimizer's step) moves the weights by when its own decay is off:
        every group's ``weight_decay`` is 0 while it runs (restored after), so its L2 or lr-scaled decay never acts.
        The decay is applied first, theta <- (1 - d_t) * theta: the same as decaying theta_{t-1} after the update,
        since Delta_t does not depend on theta (the gradient is taken already, and with weight_decay 0 the
        optimizers wrapped here read theta nowhere else). Parameters without a gradient are left alone, as torch's
        optimizers leave them.

        ``kernel_weight_decay(group)``: for an optimizer whose own kernel applies exactly this decay (wdlab's
        AdamW and SGDW), the ``weight_decay`` that kernel needs; such groups are left to the kernel.
        """
        lambdas = [group["weight_decay"] for group in self.param_groups]
        try:
            for group in self.param_groups:
                if kernel_weight_decay is not None:
                    group["weight_decay"] = kernel_weight_decay(group)
                    continue
                decay = self.decay_coefficient(group)
                params = [p for p in group["params"] if p.grad is not None]
                if decay != 0 and params:
                    torch._foreach_mul_(params, 1 - decay)
                group["weight_decay"] = 0.0
            update()
        finally:
            for group, lam in zip(self.param_groups, lambdas, strict=True):
                group["weight_decay"] = lam


def unhooked_step(optimizer_class: type[torch.optim.Optimizer]) -> Callable[..., Any]:
    """``optimizer_class.step`` without torch's hook wrapper: torch wraps the step of every optimizer class it
    instantiates with a wrapper that runs the step hooks; a subclass whose own step is wrapped already calls its
    parent's through this, or every registered hook would run twice."""
    step = optimizer_class.step
    return step.__wrapped__ if getattr(step, "hooked", False) else step


def closure_loss(closure: Callable[[], float] | None) -> float | None:
    """The loss from ``closure`` (which recomputes gradients), evaluated before any update."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
