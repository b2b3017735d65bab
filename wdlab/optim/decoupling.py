"""The decoupled decay step every decoupled optimizer shares: :class:`DecoupledWeightDecayMixin`.

Notation: alpha = a group's initial learning rate, lambda = its ``weight_decay``, eta_t = lr_t / alpha the
schedule multiplier, d_t = the per-step decay (:meth:`~DecoupledWeightDecayMixin.decay_coefficient`: eta_t * lambda
in the paper's parameterization). The mixin keeps lambda in every group and decays the weights itself, around an
update computed with no decay of its own (:meth:`~DecoupledWeightDecayMixin._decoupled_step`); wdlab's AdamW and
SGDW hand the plain decay of float32/float64 weights to their fused kernels instead (the same math).

**Which coordinates** (a group's ``decay_mask``): ``"all"`` (the paper), or ``"cautious"`` (Chen et al. 2025,
"Cautious Weight Decay", arXiv 2510.12402): only where the update and the weight agree in sign,
:func:`cautious_mask`.

**Low precision.** A bfloat16 weight w times the shrink 1 - d_t rounds back to w whenever d_t * |w| is below
half the spacing of bfloat16 next to w: for every weight once d_t < 2^-9 (the spacing just below 1 is 2^-8; 1 - d
itself rounds to 1 there), and for weights whose significand is near 2 already below d_t = 2^-8. torch's
optimizers then lose the decay silently. wdlab rounds a decayed bfloat16 or float16 weight *stochastically*
(:func:`stochastically_rounded`): up or down with the probabilities that make its expected value the exact
product, so the decay acts on average at every d_t. Why not refuse such runs instead: an annealed schedule takes
d_t = eta_t * lambda below any format's resolution towards its end, so a refusal would refuse every annealed
16-bit run, or check only the schedule's peak and still lose the tail without a word. The random numbers are a
hash of the element, the parameter and a step counter kept in the group (``decay_rounding_step``): the same on
every data-parallel rank, restored by ``load_state_dict``, and the global random streams are never touched.
float32 and float64 weights are rounded to nearest: their decay is lost only where d_t < 2^-25 (float32),
the last steps of an annealed schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from wdlab.optim.validation import check_decay_mask, check_decay_scaling, check_lr, check_weight_decay

#: Weights whose decay is rounded stochastically (their shrink per step is below their resolution in practice).
STOCHASTIC_DTYPES = (torch.bfloat16, torch.float16)


class DecoupledWeightDecayMixin:
    """What every decoupled optimizer shares: the schedule multiplier, the per-step decay, its mask.

    Every group records ``initial_lr`` (the lr it was built with, unless a torch LR scheduler
    already set it), its ``decay_scaling`` and its ``decay_mask``. A group's ``weight_decay`` always
    holds the user's lambda in the group's own convention.
    """

    param_groups: list[dict[str, Any]]

    def _init_decoupled(self, decay_scaling: str, decay_mask: str = "all") -> None:
        check_decay_scaling(decay_scaling)
        check_decay_mask(decay_mask)
        self._default_decay_scaling = decay_scaling
        self._default_decay_mask = decay_mask
        self._measure_decayed: bool = False
        self._decayed: tuple[torch.Tensor, int] | None = None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        param_group.setdefault("decay_scaling", self._default_decay_scaling)
        param_group.setdefault("decay_mask", getattr(self, "_default_decay_mask", "all"))
        check_decay_scaling(param_group["decay_scaling"])
        check_decay_mask(param_group["decay_mask"])
        super().add_param_group(param_group)  # type: ignore[misc]
        group = self.param_groups[-1]
        check_lr(group["lr"])
        check_weight_decay(group["weight_decay"])
        group.setdefault("initial_lr", group["lr"])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        for group in self.param_groups:  # optimizers pickled before decay masks existed
            group.setdefault("decay_mask", "all")
        self._measure_decayed, self._decayed = False, None

    @staticmethod
    def schedule_multiplier(group: dict[str, Any]) -> float:
        """eta_t = lr_t / initial_lr of the group."""
        return group["lr"] / group["initial_lr"]

    @classmethod
    def decay_coefficient(cls, group: dict[str, Any]) -> float:
        """The decay applied per step to the group's weights, theta <- (1 - coefficient) * theta.

        With eta_t = lr_t / initial_lr and lambda = the group's ``weight_decay``::

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

    # -- the fraction of decayed coordinates (cautious groups), on request -------------------------------------------
    def arm_decayed_fraction(self) -> None:
        """Count the coordinates the next step decays (cautious groups only); read it with
        :meth:`pop_decayed_fraction`. Unarmed steps count nothing."""
        self._measure_decayed = True

    def pop_decayed_fraction(self) -> torch.Tensor | None:
        """The fraction of coordinates of cautious groups the armed step decayed, a 0-dim tensor on their device
        (never read back here); None when no cautious group decayed anything. Disarms."""
        decayed, self._decayed, self._measure_decayed = self._decayed, None, False
        if decayed is None or decayed[1] == 0:
            return None
        return decayed[0] / decayed[1]

    # -- the step --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _decoupled_step(self, update: Callable[[], None],
                        kernel_weight_decay: Callable[[dict[str, Any]], float] | None = None) -> None:
        r"""One step of the update ``update`` with the decay decoupled from it, per group:

            theta_t = theta_{t-1} - Delta_t - d_t * m_t * theta_{t-1}

        Delta_t is what ``update`` (the wrapped optimizer's step) moves the weights by when its own decay is off:
        every group's ``weight_decay`` is 0 while it runs (restored after), so its L2 or lr-scaled decay never acts.
        m_t = 1 (``decay_mask="all"``), or :func:`cautious_mask` (Delta_t, theta_{t-1}) (``"cautious"``).
        Both use that Delta_t does not depend on theta (the gradient is taken already, and with weight_decay 0 the
        optimizers wrapped here read theta nowhere else). Under ``"all"`` the decay is applied first,
        theta <- (1 - d_t) * theta: the same as decaying theta_{t-1} after the update. Under ``"cautious"`` the mask
        needs Delta_t itself, exactly (in bfloat16, theta_{t-1} minus the updated weight loses the sign of a step
        below half the weight's spacing): theta_{t-1} is copied, the weights set to 0, the update made from 0
        (which leaves -Delta_t, its sign exact), and theta_t assembled from the three. Parameters without a
        gradient are left alone, as torch's optimizers leave them; bfloat16/float16 weights are rounded
        stochastically (module docstring).

        ``kernel_weight_decay(group)``: for an optimizer whose own kernel applies the plain decay exactly (wdlab's
        AdamW and SGDW), the ``weight_decay`` that kernel needs; groups of float32/float64 weights under
        ``"all"`` are left to it.
        """
        lambdas = [group["weight_decay"] for group in self.param_groups]
        cautious: list[tuple[int, float, list[torch.Tensor], list[torch.Tensor]]] = []
        try:
            for index, group in enumerate(self.param_groups):
                params = [p for p in group["params"] if p.grad is not None]
                if kernel_weight_decay is not None and group["decay_mask"] == "all" and not any(
                        p.dtype in STOCHASTIC_DTYPES for p in params):
                    group["weight_decay"] = kernel_weight_decay(group)
                    continue
                decay = self.decay_coefficient(group)
                group["weight_decay"] = 0.0
                if decay == 0 or not params:
                    continue
                if group["decay_mask"] == "cautious":
                    cautious.append((index, decay, params, torch._foreach_mul(params, 1.0)))  # theta_{t-1}
                    torch._foreach_zero_(params)
                else:
                    _shrink(params, decay, group, index)
            update()
        except BaseException:
            for _, _, params, before in cautious:  # the weights were set to 0 for the update: put them back
                torch._foreach_copy_(params, before)
            raise
        finally:
            for group, lam in zip(self.param_groups, lambdas, strict=True):
                group["weight_decay"] = lam
        decayed: list[torch.Tensor] = []
        count = 0
        for index, decay, params, before in cautious:
            group = self.param_groups[index]
            for position, (param, old) in enumerate(zip(params, before, strict=True)):
                step = param.clone() if param.dtype not in STOCHASTIC_DTYPES else param.float()  # -Delta_t
                mask = cautious_mask(-step, old)
                if self._measure_decayed:
                    decayed.append(mask.sum())
                    count += mask.numel()
                if param.dtype in STOCHASTIC_DTYPES:
                    wide = old.float()
                    exact = wide + step - decay * mask.float() * wide
                    param.copy_(stochastically_rounded(exact, param.dtype, _seed(group, index, position)))
                else:
                    param.copy_(old.add(step).sub_(mask * old, alpha=decay))
            _advance(group)
        if self._measure_decayed:
            self._decayed = (torch.stack(decayed).sum(), count) if decayed else None


def cautious_mask(update: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    r"""Where Cautious Weight Decay decays, as 0/1 of ``theta``'s dtype: Algorithm 1 of Chen et al. (2025,
    arXiv 2510.12402) is

        x_{t+1} <- x_t - eta_t (u_t + lambda I(u_t x_t >= 0) x_t)        (entrywise multiplication)

    so a coordinate is decayed where the optimizer's update u_t and the weight x_t agree in sign, and where
    either is 0 (the tie ``>= 0`` decays). ``update`` is any positive multiple of u_t: here Delta_t =
    eta_t * alpha * u_t, the step the wrapped optimizer makes (:meth:`DecoupledWeightDecayMixin._decoupled_step`).
    """
    return (update * theta >= 0).to(theta.dtype)


def stochastically_rounded(value: torch.Tensor, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """``value`` (float32) in ``dtype``, rounded to one of its two neighbours in ``dtype`` with the probability
    that makes the expectation ``value``: the far neighbour with probability |value - near| / |far - near|.

    The uniform numbers come from :func:`hashed_uniform` (``seed``), not from a random generator.
    """
    near = value.to(dtype)
    back = near.float()
    far = torch.nextafter(near, torch.where(back < value, math.inf, -math.inf).to(dtype))
    gap = far.float() - back
    probability = torch.where(gap != 0, (value - back) / gap, torch.zeros_like(value))
    return torch.where(hashed_uniform(value.shape, value.device, seed) < probability, far, near)


def hashed_uniform(shape: torch.Size | tuple[int, ...], device: torch.device, seed: int) -> torch.Tensor:
    """Numbers in (0, 1), uniform to 2^-24, one per element: an integer hash of (element index, ``seed``)
    (multiply-xorshift rounds in 32 bits, computed in int64 so no product overflows)."""
    x = torch.arange(math.prod(shape), device=device, dtype=torch.int64)
    x = (x * 0x61C88647 + _mix32(seed)) & 0xFFFFFFFF
    for multiplier in (0x7FEB352D, 0x68E31DA5):
        x = x ^ (x >> 16)
        x = (x * multiplier) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    return (((x >> 8).to(torch.float32) + 0.5) * 2.0**-24).reshape(shape)


def _mix32(value: int) -> int:
    value &= 0xFFFFFFFF
    for multiplier in (0x85EBCA6B, 0xC2B2AE35):
        value ^= value >> 16
        value = (value * multiplier) & 0xFFFFFFFF
    return value ^ (value >> 16)


def _seed(group: dict[str, Any], index: int, position: int) -> int:
    """The hash seed of a parameter's rounding this step: its group, its place in it, the group's step counter."""
    return _mix32(group.get("decay_rounding_step", 0) * 0x9E3779B1 + index * 0x3C6EF372 + position)


def _advance(group: dict[str, Any]) -> None:
    if any(p.grad is not None and p.dtype in STOCHASTIC_DTYPES for p in group["params"]):
        group["decay_rounding_step"] = group.get("decay_rounding_step", 0) + 1


def _shrink(params: list[torch.Tensor], decay: float, group: dict[str, Any], index: int) -> None:
    """theta <- (1 - decay) * theta, stochastically rounded for 16-bit weights."""
    exact = [p for p in params if p.dtype not in STOCHASTIC_DTYPES]
    if exact:
        torch._foreach_mul_(exact, 1 - decay)
    for position, param in enumerate(params):
        if param.dtype in STOCHASTIC_DTYPES:
            exact = param.float()
            exact = exact - decay * exact  # not exact * (1 - decay): 1 - decay itself rounds in float32
            param.copy_(stochastically_rounded(exact, param.dtype, _seed(group, index, position)))
    _advance(group)


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
