"""AdamW and SGDW with the decoupled weight decay of Loshchilov & Hutter (ICLR 2019).

Notation: alpha = a group's initial learning rate, lambda = its ``weight_decay``,
eta_t = schedule multiplier = current lr / initial lr (so ``lr_t = alpha * eta_t``).

The paper decays by ``eta_t * lambda`` per step: the decay follows the schedule but is *not*
multiplied by alpha. PyTorch, optax and Keras decay by ``lr_t * wd = alpha * eta_t * wd``.
Both conventions are offered per group through ``decay_scaling``:

* ``"schedule"`` (default, the paper): per-step decay ``eta_t * lambda``.
* ``"lr"`` (PyTorch's convention, for porting configs): per-step decay ``lr_t * lambda``;
  AdamW is then identical to ``torch.optim.AdamW``.

The two are related by ``lambda_torch = lambda_paper / alpha`` for any schedule; the paper's
parameterization is the one in which the best lambda does not move when alpha changes.

Both optimizers run torch's own Adam/SGD kernels (single-tensor, multi-tensor ``foreach`` or
``fused``) for the moment updates, so they cost what torch's optimizers cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from wdlab.optim.validation import (
    check_betas,
    check_decay_scaling,
    check_eps,
    check_lr,
    check_momentum,
    check_weight_decay,
)


class DecoupledWeightDecayMixin:
    """What AdamW and SGDW share: the schedule multiplier and the per-step decay.

    Every group records ``initial_lr`` (the lr it was built with, unless a torch LR scheduler
    already set it) and its ``decay_scaling``. A group's ``weight_decay`` always holds the
    user's lambda in the group's own convention; subclasses translate it for torch's kernel
    in :meth:`_torch_weight_decay` only for the duration of a step.
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

        ``eta_t * lambda`` under ``decay_scaling="schedule"``, ``lr_t * lambda`` under ``"lr"``.
        """
        if group["decay_scaling"] == "lr":
            return group["lr"] * group["weight_decay"]
        return cls.schedule_multiplier(group) * group["weight_decay"]

    def _torch_weight_decay(self, group: dict[str, Any]) -> float:
        raise NotImplementedError

    def _torch_step(self) -> None:
        """Run the torch parent's step without torch's hook wrapper.

        torch wraps ``step`` of every optimizer class it instantiates with a wrapper that runs
        the step hooks; ours is wrapped already, so going through the parent's wrapper too
        would run every registered hook twice.
        """
        torch_step = super().step.__func__  # type: ignore[misc]
        if getattr(torch_step, "hooked", False):
            torch_step = torch_step.__wrapped__
        torch_step(self)

    def _apply_own_decay(self) -> None:
        """Decay torch's kernel does not do itself (none by default)."""

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lambdas = [group["weight_decay"] for group in self.param_groups]
        try:
            self._apply_own_decay()
            for group in self.param_groups:
                group["weight_decay"] = self._torch_weight_decay(group)
            self._torch_step()
        finally:
            for group, lam in zip(self.param_groups, lambdas, strict=True):
                group["weight_decay"] = lam
        return loss


class AdamW(DecoupledWeightDecayMixin, torch.optim.Adam):
    r"""Adam with decoupled weight decay, Algorithm 2 of Loshchilov & Hutter (2019).

    With g_t the gradient at theta_{t-1} and the usual Adam moments,

        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t,        mhat_t = m_t / (1 - beta1^t)
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2,      vhat_t = v_t / (1 - beta2^t)
        theta_t = theta_{t-1} - eta_t * (alpha * mhat_t / (sqrt(vhat_t) + eps) + lambda * theta_{t-1})

    eta_t = lr_t / initial_lr multiplies both terms; lambda is not multiplied by alpha.
    Implementation: torch's decoupled Adam kernel decays by ``lr_t * wd``, and
    ``lr_t * (lambda / alpha) = eta_t * lambda``, so the kernel is given ``wd = lambda / alpha``
    (``decay_scaling="schedule"``) or ``wd = lambda`` (``"lr"``, identical to torch.optim.AdamW).
    All of torch's paths (single-tensor, ``foreach``, ``fused``) are available.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decay_scaling: str = "schedule",
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_weight_decay(weight_decay)
        check_betas(betas)
        check_eps(eps)
        self._init_decoupled(decay_scaling)
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True

    def _torch_weight_decay(self, group: dict[str, Any]) -> float:
        if group["decay_scaling"] == "lr":
            return group["weight_decay"]
        return group["weight_decay"] / group["initial_lr"]


class SGDW(DecoupledWeightDecayMixin, torch.optim.SGD):
    r"""SGD with momentum and decoupled weight decay, as in the authors' code.

    The momentum buffer is exactly torch.optim.SGD's (lr outside the buffer), and the decay
    acts on the pre-update weights:

        buf_t   = mu * buf_{t-1} + (1 - dampening) * g_t        (buf_1 = g_1)
        d_t     = g_t + mu * buf_t  if nesterov  else  buf_t
        theta_t = theta_{t-1} - alpha * eta_t * d_t - eta_t * lambda * theta_{t-1}

    (Algorithm 1 of the paper puts eta_t * alpha inside the buffer; with a constant schedule
    the two agree.) torch has no decoupled SGD kernel, so the decay is one multi-tensor
    multiply, theta <- (1 - eta_t * lambda) * theta, before torch's SGD step with L2 off.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float,
        momentum: float = 0.9,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        decay_scaling: str = "schedule",
        foreach: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_weight_decay(weight_decay)
        check_momentum(momentum, dampening, nesterov)
        self._init_decoupled(decay_scaling)
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            foreach=foreach,
        )

    def _torch_weight_decay(self, group: dict[str, Any]) -> float:
        return 0.0  # torch's SGD would add L2 to the gradient; our decay is applied separately

    def _apply_own_decay(self) -> None:
        for group in self.param_groups:
            coefficient = self.decay_coefficient(group)
            if coefficient == 0.0:
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["foreach"] is False:
                for p in params:
                    p.mul_(1.0 - coefficient)
            else:
                torch._foreach_mul_(params, 1.0 - coefficient)
