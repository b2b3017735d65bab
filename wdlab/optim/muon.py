r"""MuonW: torch's Muon on the weight matrices, wdlab's AdamW on everything else, with the paper's decoupled decay.

Muon (Jordan et al. 2024; torch.optim.Muon) orthogonalizes the momentum of a weight *matrix*; vectors (biases,
normalization weights) have nothing to orthogonalize, and Muon users train them with AdamW. torch's Muon refuses
any parameter that is not 2-D, and decays by ``lr_t * wd`` (torch's convention, tied to the lr); MuonW runs it
with its decay off and decays every parameter by the paper's ``eta_t * lambda`` (:mod:`wdlab.optim.decoupling`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from wdlab.optim.decoupled import AdamW
from wdlab.optim.decoupling import DecoupledWeightDecayMixin, closure_loss, unhooked_step
from wdlab.optim.validation import check_betas, check_eps, check_lr, check_momentum, check_weight_decay

__all__ = ["MuonW", "as_matrix"]


def as_matrix(tensor: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """A 2-D view of a weight of ndim >= 2 as Muon sees it: (out, in * kh * kw) for a convolution kernel
    (out, in, kh, kw), the rows being the output channels.

    A kernel stored channels-last is viewed as (out, kh * kw * in): the same matrix with its columns permuted,
    which the orthogonalization commutes with (NS(X P) = NS(X) P for a permutation P, since (X P)(X P)^T = X X^T).
    A view, so Muon's in-place update reaches the weight; a tensor that has no such view is copied (fine for a
    gradient, which is only read). ``like``: lay ``tensor`` out as that tensor is laid out (a gradient as its
    weight), whatever its own layout.
    """
    if tensor.ndim < 2:
        raise ValueError(f"as_matrix needs a tensor of ndim >= 2, got shape {tuple(tensor.shape)}")
    layout = tensor if like is None else like
    if layout.ndim == 4 and not layout.is_contiguous() and layout.is_contiguous(memory_format=torch.channels_last):
        tensor = tensor.permute(0, 2, 3, 1)
    return tensor.reshape(tensor.shape[0], -1)


class MuonW(DecoupledWeightDecayMixin, torch.optim.Optimizer):
    r"""Muon on the matrices and AdamW on the rest, with decoupled weight decay on both.

    Per parameter group, with eta_t = lr_t / alpha, lambda the group's ``weight_decay`` and the decay on the
    pre-update weights:

    * a weight W of ndim >= 2 (linear and convolution weights, the classifier head included) goes to
      ``torch.optim.Muon`` as the matrix X = :func:`as_matrix` (W) of shape (A, B) -- a convolution kernel
      (out, in, kh, kw) as (out, in * kh * kw):

          B_t = mu * B_{t-1} + (1 - mu) * G_t                         (torch keeps the momentum as an average)
          N_t = (1 - mu) * G_t + mu * B_t   (nesterov)   or   B_t
          O_t = NS_5(N_t)                                              (quintic Newton-Schulz, in bfloat16)
          X_t = X_{t-1} - eta_t * (alpha * 0.2 * sqrt(max(A, B)) * O_t + lambda * X_{t-1})

      The factor 0.2 sqrt(max(A, B)) is torch's ``adjust_lr_fn="match_rms_adamw"`` (Liu et al. 2025, "Muon is
      scalable for LLM training"): it gives the update the RMS of an AdamW update, so one lr (and one lambda)
      serves both parts. ``adjust_lr_fn="original"`` is Jordan's sqrt(max(1, A / B)) instead.
    * every other parameter (biases, normalization weights) goes to wdlab's :class:`~wdlab.optim.AdamW`
      (Algorithm 2 of Loshchilov & Hutter) with the group's lr, ``betas`` and ``eps``.

    Muon users keep the classifier head and embeddings on AdamW; here the head, a 2-D weight, goes to Muon unless
    its parameter group sets ``"muon": False`` (then every parameter of that group goes to AdamW).

    State: each parameter's state is the part's own (Muon's ``momentum_buffer``, of the matrix's shape, or
    AdamW's ``step``, ``exp_avg``, ``exp_avg_sq``), kept in this optimizer's ``state``, so ``state_dict`` and
    ``load_state_dict`` are torch's. ``foreach``/``fused`` choose AdamW's kernel (Muon has one kernel).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        *,
        decay_scaling: str = "schedule",
        decay_mask: str = "all",
        adjust_lr_fn: str = "match_rms_adamw",
        ns_steps: int = 5,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_weight_decay(weight_decay)
        check_betas(betas)
        check_eps(eps)
        check_momentum(momentum, 0.0, nesterov)
        if adjust_lr_fn not in ("original", "match_rms_adamw", "spectral_unclamped"):
            raise ValueError(f"adjust_lr_fn must be 'original', 'match_rms_adamw' or 'spectral_unclamped' "
                             f"(torch.optim.Muon's), got {adjust_lr_fn!r}")
        self._init_decoupled(decay_scaling, decay_mask)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "momentum": momentum,
                    "nesterov": nesterov, "adjust_lr_fn": adjust_lr_fn, "ns_steps": ns_steps, "foreach": foreach,
                    "fused": fused}
        super().__init__(params, defaults)

    @staticmethod
    def on_muon(group: dict[str, Any], param: torch.Tensor) -> bool:
        """Whether ``param`` of ``group`` is trained by Muon (ndim >= 2, and the group does not opt out)."""
        return param.ndim >= 2 and group.get("muon", True)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure_loss(closure)
        self._decoupled_step(self._update)
        return loss

    def _update(self) -> None:
        """The two parts' updates (decay off: the groups' weight_decay is 0 here), on this optimizer's state."""
        muon_groups, adam_groups = [], []
        muon_state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
        for group in self.param_groups:
            live = [p for p in group["params"] if p.grad is not None]
            matrices = [p for p in live if self.on_muon(group, p)]
            if matrices:
                proxies = []
                for p in matrices:
                    proxy = as_matrix(p.detach())
                    if proxy.untyped_storage().data_ptr() != p.untyped_storage().data_ptr():
                        raise ValueError(f"MuonW: a weight of shape {tuple(p.shape)} and strides {p.stride()} has "
                                         f"no 2-D view; make it contiguous (or channels-last)")
                    proxy.grad = as_matrix(p.grad, like=p)
                    muon_state[proxy] = self.state[p]  # Muon's buffer lands in this optimizer's state
                    proxies.append(proxy)
                muon_groups.append({"params": proxies, "lr": group["lr"], "weight_decay": 0.0,
                                    "momentum": group["momentum"], "nesterov": group["nesterov"],
                                    "adjust_lr_fn": group["adjust_lr_fn"], "ns_steps": group["ns_steps"]})
            others = [p for p in live if not self.on_muon(group, p)]
            if others:
                adam_groups.append({"params": others, "lr": group["lr"], "betas": group["betas"],
                                    "eps": group["eps"], "weight_decay": 0.0, "foreach": group["foreach"],
                                    "fused": group["fused"]})
        if muon_groups:
            muon = torch.optim.Muon(muon_groups)
            muon.state = muon_state
            unhooked_step(torch.optim.Muon)(muon)
        if adam_groups:
            adam = AdamW(adam_groups)
            adam.state = self.state
            unhooked_step(AdamW)(adam)
