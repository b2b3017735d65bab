"""AdamW and SGDW with the decoupled weight decay of Loshchilov & Hutter (ICLR 2019).

Notation: alpha = a group's initial learning rate, lambda = its ``weight_decay``,
eta_t = schedule multiplier = current lr / initial lr (so ``lr_t = alpha * eta_t``).

The paper decays by ``eta_t * lambda`` per step: the decay follows the schedule but is *not*
multiplied by alpha. PyTorch, optax and Keras decay by ``lr_t * wd = alpha * eta_t * wd``.
Three scalings are offered per group through ``decay_scaling``:

* ``"schedule"`` (default, the paper): per-step decay ``eta_t * lambda``.
* ``"lr"`` (PyTorch's convention, for porting configs): per-step decay ``lr_t * lambda``;
  AdamW is then identical to ``torch.optim.AdamW``.
* ``"corrected"`` (AdamC / SGDC, Defazio et al. 2025, "Why gradients rapidly increase near the
  end of training"): per-step decay ``eta_t**2 * lambda``, lambda in the paper's parameterization.
  In torch's parameterization (``wd = lambda / alpha``, ``lr_max = alpha``) that is
  ``lr_t**2 / lr_max * wd``, the decay of ``timm.optim.AdamWLegacy(corrected_weight_decay=True)``
  and ``timm.optim.SGDW(corrected_weight_decay=True)`` constructed with ``lr=alpha, weight_decay=lambda/alpha``.
  Why: for a layer followed by normalization, balancing the norm the decay removes (2 * decay_t * |theta|^2
  per step) with the norm the update adds (lr_t^2 * |g|^2) gives ``|g| / |theta| = sqrt(2 * decay_t) / lr_t``
  at equilibrium. With ``decay_t = eta_t * lambda`` that ratio grows as ``1 / sqrt(eta_t)`` while the
  schedule anneals (the late-training gradient-norm rise the paper explains); ``decay_t = eta_t**2 * lambda``
  keeps it constant. At eta_t = 1 (the start of a run or of a period) it decays exactly like ``"schedule"``.

``"schedule"`` and ``"lr"`` are related by ``lambda_torch = lambda_paper / alpha`` for any schedule; the
paper's parameterization is the one in which the best lambda does not move when alpha changes.

AdamW runs torch's own Adam kernels (single-tensor, multi-tensor ``foreach`` or ``fused``); SGDW
has its own two kernels (per-tensor and multi-tensor) that fuse the decay into the update, and a
``fused`` path that runs torch's fused SGD kernel after one multi-tensor decay pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from wdlab.optim.decoupling import DecoupledWeightDecayMixin, closure_loss, unhooked_step
from wdlab.optim.validation import (
    check_betas,
    check_eps,
    check_lr,
    check_momentum,
    check_weight_decay,
)


class AdamW(DecoupledWeightDecayMixin, torch.optim.Adam):
    r"""Adam with decoupled weight decay, Algorithm 2 of Loshchilov & Hutter (2019).

    With g_t the gradient at theta_{t-1} and the usual Adam moments,

        m_t = beta1 * m_{t-1} + (1 - beta1) * g_t,        mhat_t = m_t / (1 - beta1^t)
        v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2,      vhat_t = v_t / (1 - beta2^t)
        theta_t = theta_{t-1} - eta_t * (alpha * mhat_t / (sqrt(vhat_t) + eps) + lambda * theta_{t-1})

    eta_t = lr_t / initial_lr multiplies both terms; lambda is not multiplied by alpha.
    With ``decay_scaling="corrected"`` (AdamC, Defazio et al. 2025) the decay term is
    ``eta_t**2 * lambda * theta_{t-1}`` instead of ``eta_t * lambda * theta_{t-1}``:

        theta_t = theta_{t-1} - eta_t * alpha * mhat_t / (sqrt(vhat_t) + eps) - eta_t**2 * lambda * theta_{t-1}

    Implementation: torch's decoupled Adam kernel decays by ``lr_t * wd``, and
    ``lr_t * (lambda / alpha) = eta_t * lambda``, so the kernel is given ``wd = lambda / alpha``
    (``decay_scaling="schedule"``), ``wd = lambda`` (``"lr"``, identical to torch.optim.AdamW) or
    ``wd = eta_t * lambda / alpha`` (``"corrected"``: ``lr_t * eta_t * lambda / alpha = eta_t**2 * lambda``).
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
        decay_mask: str = "all",
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_weight_decay(weight_decay)
        check_betas(betas)
        check_eps(eps)
        self._init_decoupled(decay_scaling, decay_mask)
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

    @staticmethod
    def _torch_weight_decay(group: dict[str, Any]) -> float:
        """The coefficient wd torch's decoupled kernel needs: it decays by lr_t * wd.

            "schedule":  wd = lambda / alpha               (lr_t * wd = eta_t * lambda)
            "lr":        wd = lambda                       (lr_t * wd = lr_t * lambda)
            "corrected": wd = eta_t * lambda / alpha       (lr_t * wd = eta_t**2 * lambda)
        """
        scaling = group["decay_scaling"]
        if scaling == "lr":
            return group["weight_decay"]
        if scaling == "corrected":
            return group["weight_decay"] * DecoupledWeightDecayMixin.schedule_multiplier(group) / group["initial_lr"]
        return group["weight_decay"] / group["initial_lr"]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        # torch's kernel decays float32/float64 groups under decay_mask "all" (the translation lives only for the
        # duration of its step); the mixin decays the others (cautious, 16-bit: see wdlab.optim.decoupling).
        self._decoupled_step(lambda: unhooked_step(torch.optim.Adam)(self),
                             kernel_weight_decay=self._torch_weight_decay)
        return loss


class SGDW(DecoupledWeightDecayMixin, torch.optim.Optimizer):
    r"""SGD with momentum and decoupled weight decay, as in the authors' code.

    The momentum buffer is exactly torch.optim.SGD's (lr outside the buffer), and the decay
    acts on the pre-update weights:

        buf_t   = mu * buf_{t-1} + (1 - dampening) * g_t        (buf_1 = g_1)
        d_t     = g_t + mu * buf_t  if nesterov  else  buf_t    (d_t = g_t if mu = 0)
        theta_t = theta_{t-1} - alpha * eta_t * d_t - eta_t * lambda * theta_{t-1}

    With ``decay_scaling="corrected"`` (SGDC, Defazio et al. 2025) the last term is
    ``eta_t**2 * lambda * theta_{t-1}``; with ``"lr"`` it is ``lr_t * lambda * theta_{t-1}``
    (see :meth:`decay_coefficient`).

    (Algorithm 1 of the paper puts eta_t * alpha inside the buffer; with a constant schedule
    the two agree.) State is stored as torch.optim.SGD stores it (``momentum_buffer``), and
    with ``weight_decay=0`` the updates are bit-for-bit torch.optim.SGD's. See :func:`sgdw_update`.

    ``foreach`` / ``fused`` choose the kernel as in torch.optim.SGD (``None``: multi-tensor on CUDA,
    per-tensor elsewhere; ``fused=True``: torch's fused SGD kernel, CPU or CUDA, for the momentum
    and update, after a multi-tensor ``theta *= 1 - eta_t * lambda``). ``fused`` does not advertise
    AMP grad-scaler support, so under fp16 mixed precision the scaler unscales the gradients first.
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
        decay_mask: str = "all",
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_weight_decay(weight_decay)
        check_momentum(momentum, dampening, nesterov)
        if foreach and fused:
            raise ValueError("SGDW: foreach and fused cannot both be True")
        self._init_decoupled(decay_scaling, decay_mask)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # optimizers pickled before the fused path existed
            group.setdefault("fused", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        # The kernels decay float32/float64 groups under decay_mask "all" (lambda stays in the group); the mixin
        # decays the others and hands the kernels weight_decay 0 (see wdlab.optim.decoupling).
        self._decoupled_step(self._update, kernel_weight_decay=lambda group: group["weight_decay"])
        return loss

    def _update(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            momentum = group["momentum"]
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            sgdw_update(
                params,
                [p.grad for p in params],
                buffers,
                lr=group["lr"],
                momentum=momentum,
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                decay=self.decay_coefficient(group),
                foreach=group["foreach"],
                fused=bool(group.get("fused")),
            )
            if momentum != 0:
                for p, buf in zip(params, buffers, strict=True):
                    self.state[p]["momentum_buffer"] = buf


def sgdw_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    decay: float,
    foreach: bool | None = None,
    fused: bool = False,
) -> None:
    """One SGDW step in place: ``theta <- (1 - decay) * theta - lr * d`` with d from the momentum buffer.

    ``decay`` is the per-step coefficient (eta_t * lambda in the paper's parameterization, eta_t**2 * lambda
    under ``decay_scaling="corrected"``; see :meth:`DecoupledWeightDecayMixin.decay_coefficient`).
    ``buffers`` holds each parameter's momentum buffer or None (created here on the first step).

    Two kernels, chosen as torch chooses for its own SGD (``foreach=None``: multi-tensor on CUDA,
    per-tensor elsewhere): on CUDA one multi-tensor launch per operation; on CPU each tensor is
    decayed and updated back to back while it is still in cache, which is what makes the
    decoupled decay cost no more than torch's L2 term there (torch's own CPU default is also
    per-tensor: its multi-tensor ops are slower on CPU).

    ``fused=True``: one multi-tensor pass ``theta *= 1 - decay``, then torch's fused SGD kernel
    (momentum, Nesterov and the update in one pass, L2 term off). Exact: the buffer does not
    depend on theta, so scaling theta first and then subtracting ``lr * d`` is the same update.
    On CUDA this moves ~28 bytes per fp32 parameter instead of ~40 for the multi-tensor path.
    """
    if fused:
        _sgdw_fused(params, grads, buffers, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                    decay=decay)
        return
    if foreach is None:
        foreach = all(p.is_cuda for p in params)
    if not foreach:
        for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
            direction = grad
            if momentum != 0:
                buf = buffers[i]
                if buf is None:
                    buf = buffers[i] = torch.clone(grad).detach()
                else:
                    buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                direction = grad.add(buf, alpha=momentum) if nesterov else buf
            if decay != 0:
                param.mul_(1 - decay)
            param.add_(direction, alpha=-lr)
        return
    for indices in _by_device_and_dtype(params).values():
        group_params = [params[i] for i in indices]
        group_grads = [grads[i] for i in indices]
        directions = group_grads
        if momentum != 0:
            group_buffers = [buffers[i] for i in indices]
            if all(b is not None for b in group_buffers):
                torch._foreach_mul_(group_buffers, momentum)
                torch._foreach_add_(group_buffers, group_grads, alpha=1 - dampening)
            else:
                for j, (buf, grad) in enumerate(zip(group_buffers, group_grads, strict=True)):
                    if buf is None:
                        group_buffers[j] = buffers[indices[j]] = torch.clone(grad).detach()
                    else:
                        buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            if nesterov:
                directions = torch._foreach_add(group_grads, group_buffers, alpha=momentum)
            else:
                directions = group_buffers
        if decay != 0:
            torch._foreach_mul_(group_params, 1 - decay)
        torch._foreach_add_(group_params, directions, alpha=-lr)


def _sgdw_fused(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    decay: float,
) -> None:
    """The ``fused=True`` path of :func:`sgdw_update` (per device and dtype, first steps apart)."""
    for indices in _by_device_and_dtype(params).values():
        group_params = [params[i] for i in indices]
        if decay != 0:
            torch._foreach_mul_(group_params, 1 - decay)
        if momentum == 0:
            torch._fused_sgd_(group_params, [grads[i] for i in indices], [], weight_decay=0.0, momentum=0.0,
                              lr=lr, dampening=dampening, nesterov=nesterov, maximize=False, is_first_step=False)
            continue
        # torch's kernel takes "first step" (buffer <- gradient) for the whole list: split by it
        # (both parts decided before either runs, since the first one creates buffers).
        parts = {first: [i for i in indices if (buffers[i] is None) == first] for first in (True, False)}
        for first, part in parts.items():
            if not part:
                continue
            if first:
                for i in part:
                    buffers[i] = torch.empty_like(grads[i])
            torch._fused_sgd_(
                [params[i] for i in part],
                [grads[i] for i in part],
                [buffers[i] for i in part],  # type: ignore[misc]
                weight_decay=0.0,
                momentum=momentum,
                lr=lr,
                dampening=dampening,
                nesterov=nesterov,
                maximize=False,
                is_first_step=first,
            )


def _by_device_and_dtype(tensors: list[torch.Tensor]) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype): multi-tensor kernels need uniform lists."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return groups
