"""Weight-decay helpers: the decay parameterizations (their one home), conversions, parameter groups.

A run's weight decay can be given in four forms; all describe the same per-step decay at the peak of
the schedule (eta_t = 1), with alpha the base lr, b the global batch, B the training-set size, T the
epochs of the (current) period and S the optimizer steps per epoch:

=========================  ==========================================  ==================================
form                       lambda (the paper's, per step at eta_t = 1)  home
=========================  ==========================================  ==================================
``weight_decay``           lambda                                       the paper (Loshchilov & Hutter)
``weight_decay_norm``      lambda_norm * sqrt(b / (B * T))              :func:`normalized_weight_decay`
``weight_decay_timescale`` 1 / (tau * S)                                :func:`timescale_weight_decay`
``torch_weight_decay``     alpha * wd                                   torch.optim.AdamW (lr_t * wd)
=========================  ==========================================  ==================================

:func:`convert_decay` turns any one of them into all four for a given run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from wdlab._checks import check_int
from wdlab.optim.validation import check_lr, check_weight_decay, is_number

#: The hyperparameters that set a decoupled optimizer's lambda: give exactly one (configs and the registry).
DECAY_KEYS = ("weight_decay", "weight_decay_norm", "weight_decay_timescale")

# Parameters of these modules scale activations that a following layer (or the loss) is
# invariant to; the common practice of exempting them from decay is offered, not imposed.
_NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def check_weight_decay_norm(lambda_norm: object) -> None:
    """The one check of a normalized decay value (configs, the registry and the formula all use it)."""
    if not (is_number(lambda_norm) and lambda_norm >= 0):
        raise ValueError(f"weight_decay_norm must be a number >= 0, got {lambda_norm!r}")


def normalized_weight_decay(lambda_norm: float, batch_size: int, num_train: int, period_epochs: float) -> float:
    """Raw decay lambda from the normalized one (Appendix B.1 of the paper).

        lambda = lambda_norm * sqrt(b / (B * T))

    b = ``batch_size`` (the *global* batch, across all data-parallel ranks), B = ``num_train``
    (training points), T = ``period_epochs`` (epochs of the current restart period, or of the
    whole run without restarts). Normalizing makes a good lambda_norm transfer across run
    lengths and batch sizes; the paper recommends lambda_norm = 0.025 to 0.05.
    """
    check_weight_decay_norm(lambda_norm)
    for name, value in (("batch_size", batch_size), ("num_train", num_train), ("period_epochs", period_epochs)):
        if not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be > 0, got {value!r}")
    return lambda_norm * math.sqrt(batch_size / (num_train * period_epochs))


@dataclass(frozen=True)
class NormalizedDecay:
    """Normalized decay for one run: lambda_norm per parameter group, turned into the raw lambda of a period.

    ``batch_size`` is the global batch and ``num_train`` the training-set size (see
    :func:`normalized_weight_decay`). A group under normalized decay carries its ``weight_decay_norm``;
    its ``weight_decay`` is the raw lambda of the current period, rewritten at every restart.
    """

    batch_size: int
    num_train: int

    def weight_decay(self, lambda_norm: float, period_epochs: float) -> float:
        return normalized_weight_decay(lambda_norm, self.batch_size, self.num_train, period_epochs)

    def init_groups(self, groups: Iterable[dict[str, Any]], lambda_norm: float, period_epochs: float) -> None:
        """Give every group its ``weight_decay_norm`` (default ``lambda_norm``) and the first period's lambda.

        A group that sets a raw ``weight_decay`` and no ``weight_decay_norm`` (e.g. the zero-decay
        group) keeps that value for the whole run.
        """
        for group in groups:
            if "weight_decay" in group and "weight_decay_norm" not in group:
                continue
            group.setdefault("weight_decay_norm", lambda_norm)
            group["weight_decay"] = self.weight_decay(group["weight_decay_norm"], period_epochs)

    def update_groups(self, groups: Iterable[dict[str, Any]], period_epochs: float) -> None:
        """Set each normalized group's ``weight_decay`` to the lambda of a period ``period_epochs`` long."""
        for group in groups:
            if "weight_decay_norm" in group:
                group["weight_decay"] = self.weight_decay(group["weight_decay_norm"], period_epochs)

    def first_group_weight_decay(self, groups: Iterable[dict[str, Any]], period_epochs: float) -> float | None:
        """The lambda the first normalized group gets in a period ``period_epochs`` long (``None``: no such group)."""
        for group in groups:
            if "weight_decay_norm" in group:
                return self.weight_decay(group["weight_decay_norm"], period_epochs)
        return None


def check_weight_decay_timescale(timescale: object) -> None:
    """The one check of a decay timescale tau (in epochs): a finite number > 0."""
    if not (is_number(timescale) and timescale > 0):
        raise ValueError(f"weight_decay_timescale must be a number of epochs > 0, got {timescale!r}")


def timescale_weight_decay(timescale_epochs: float, steps_per_epoch: int) -> float:
    """Raw decay lambda (the paper's parameterization) from a decay timescale (Wang & Aitchison, ICML 2025).

        lambda = 1 / (tau * S)

    tau = ``timescale_epochs``, the time constant of the decay in epochs, S = ``steps_per_epoch``
    (optimizer updates per epoch). With the per-step decay eta_t * lambda at eta_t = 1, the weights'
    memory of their past decays as (1 - lambda)^k ~ exp(-k / (tau * S)) after k steps: tau is the
    number of epochs after which an update's contribution has decayed by 1/e. Wang & Aitchison write it
    in torch's parameterization as tau_iter = 1 / (lr * wd) iterations, tau_epoch = tau_iter / S; since
    lambda_paper = lr * wd that is the same formula. They find the optimal tau_epoch roughly constant
    across model and dataset sizes, which is why it is offered as a hyperparameter. tau is measured at
    the peak of the schedule; an annealed schedule (eta_t < 1) decays more slowly.
    """
    check_weight_decay_timescale(timescale_epochs)
    check_int("steps_per_epoch", steps_per_epoch, 1)
    return 1.0 / (timescale_epochs * steps_per_epoch)


def timescale_group_weight_decay(timescale_epochs: float, steps_per_epoch: int, *, lr: float,
                                 decay_scaling: str) -> float:
    """A group's ``weight_decay`` for a timescale tau, in the group's own ``decay_scaling`` convention.

        "schedule", "corrected":  weight_decay = 1 / (tau * S)            (per-step decay at eta_t = 1: lambda)
        "lr":                     weight_decay = 1 / (tau * S * alpha)    (per-step decay lr_t * wd = alpha * wd)

    alpha = ``lr`` (the group's base lr). Either way the per-step decay at eta_t = 1 is 1 / (tau * S),
    so a timescale means the same run whatever the convention.
    """
    lam = timescale_weight_decay(timescale_epochs, steps_per_epoch)
    if decay_scaling == "lr":
        check_lr(lr)
        return lam / lr
    return lam


def init_timescale_groups(groups: Iterable[dict[str, Any]], steps_per_epoch: int, *, timescale: float | None,
                          lr: float, decay_scaling: str) -> None:
    """Resolve ``weight_decay_timescale`` into each group's raw ``weight_decay`` (once: tau does not depend
    on the restart period).

    ``timescale`` is the run's tau (``None``: the run sets its decay another way); a group may set its own
    ``weight_decay_timescale``. A group that sets a raw ``weight_decay`` and no timescale (e.g. the
    zero-decay group) keeps that value. A group's ``lr`` and ``decay_scaling`` (default: the run's) choose
    the convention, see :func:`timescale_group_weight_decay`. A group keeps its ``weight_decay_timescale``
    as a record of where its ``weight_decay`` came from.
    """
    for group in groups:
        if "weight_decay_timescale" in group:
            clash = [key for key in ("weight_decay", "weight_decay_norm") if key in group]
            if clash:
                raise ValueError(f"a parameter group sets both weight_decay_timescale and {clash[0]}; give one")
        elif "weight_decay" in group or "weight_decay_norm" in group or timescale is None:
            continue
        else:
            group["weight_decay_timescale"] = timescale
        group["weight_decay"] = timescale_group_weight_decay(
            group["weight_decay_timescale"], steps_per_epoch, lr=group.get("lr", lr),
            decay_scaling=group.get("decay_scaling", decay_scaling),
        )


@dataclass(frozen=True)
class DecayForms:
    """One run's weight decay in the four forms (see :func:`convert_decay`), with the run facts used.

    ``weight_decay`` is the paper's lambda, ``weight_decay_norm`` lambda_norm, ``weight_decay_timescale``
    tau in epochs (``inf`` when lambda = 0), ``torch_weight_decay`` torch.optim.AdamW's ``weight_decay``.
    """

    weight_decay: float
    weight_decay_norm: float
    weight_decay_timescale: float
    torch_weight_decay: float
    lr: float
    batch_size: int
    num_train: int
    period_epochs: float
    steps_per_epoch: int

    def forms(self) -> dict[str, float]:
        """The four forms by the hyperparameter names (``torch_weight_decay`` is torch's ``weight_decay``)."""
        return {
            "weight_decay": self.weight_decay,
            "weight_decay_norm": self.weight_decay_norm,
            "weight_decay_timescale": self.weight_decay_timescale,
            "torch_weight_decay": self.torch_weight_decay,
        }


def convert_decay(
    *,
    lr: float,
    batch_size: int,
    num_train: int,
    period_epochs: float,
    steps_per_epoch: int | None = None,
    weight_decay: float | None = None,
    weight_decay_norm: float | None = None,
    weight_decay_timescale: float | None = None,
    torch_weight_decay: float | None = None,
) -> DecayForms:
    """One run's weight decay given in one form, in all four (exactly one of the last four arguments).

    With alpha = ``lr`` (the base lr), b = ``batch_size`` (the *global* batch), B = ``num_train``,
    T = ``period_epochs`` (the run's epochs without restarts, the current period's with them) and
    S = ``steps_per_epoch`` (default ceil(B / b), one update per batch, the last batch kept)::

        lambda = weight_decay                                 (the paper: per-step decay eta_t * lambda)
        lambda = weight_decay_norm * sqrt(b / (B * T))        (Appendix B.1)
        lambda = 1 / (weight_decay_timescale * S)             (Wang & Aitchison 2025, tau in epochs)
        lambda = alpha * torch_weight_decay                   (torch AdamW: theta <- theta - lr_t * wd * theta,
                                                               so lambda * eta_t = lr_t * wd)

    and so ``weight_decay_norm = lambda * sqrt(B * T / b)``, ``weight_decay_timescale = 1 / (lambda * S)``
    (``inf`` for lambda = 0), ``torch_weight_decay = lambda / alpha``. All four give the same per-step decay
    at every step with ``decay_scaling="schedule"`` (and with torch's AdamW for the torch form); for
    ``decay_scaling="corrected"`` (AdamC/SGDC, per-step eta_t^2 * lambda) the same lambda applies and
    ``torch_weight_decay`` is timm's ``weight_decay`` with ``corrected_weight_decay=True, lr=alpha``.
    Raises ValueError (one line, naming the argument) on bad input.
    """
    check_lr(lr)
    check_int("batch_size", batch_size, 1)
    check_int("num_train", num_train, 1)
    if not (is_number(period_epochs) and period_epochs > 0):
        raise ValueError(f"period_epochs must be a number > 0, got {period_epochs!r}")
    if steps_per_epoch is None:
        steps_per_epoch = math.ceil(num_train / batch_size)
    check_int("steps_per_epoch", steps_per_epoch, 1)
    given = {
        "weight_decay": weight_decay,
        "weight_decay_norm": weight_decay_norm,
        "weight_decay_timescale": weight_decay_timescale,
        "torch_weight_decay": torch_weight_decay,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if len(given) != 1:
        raise ValueError(
            "give exactly one of weight_decay, weight_decay_norm, weight_decay_timescale, torch_weight_decay; "
            f"got {', '.join(given) if given else 'none'}"
        )
    ((key, value),) = given.items()
    norm_factor = math.sqrt(batch_size / (num_train * period_epochs))
    if key == "weight_decay":
        check_weight_decay(value)
        lam = float(value)
    elif key == "weight_decay_norm":
        lam = normalized_weight_decay(value, batch_size, num_train, period_epochs)
    elif key == "weight_decay_timescale":
        lam = timescale_weight_decay(value, steps_per_epoch)
    else:
        if not (is_number(value) and value >= 0):
            raise ValueError(f"torch_weight_decay must be a number >= 0, got {value!r}")
        lam = lr * value
    forms = {
        "weight_decay": lam,
        "weight_decay_norm": lam / norm_factor,
        "weight_decay_timescale": math.inf if lam == 0 else 1.0 / (lam * steps_per_epoch),
        "torch_weight_decay": lam / lr,
    }
    forms[key] = float(value)  # the given form exactly as given
    return DecayForms(**forms, lr=lr, batch_size=batch_size, num_train=num_train, period_epochs=period_epochs,
                      steps_per_epoch=steps_per_epoch)


def param_groups(
    model: nn.Module, decay_bias_and_norm: bool = True, decay_embeddings: bool = True
) -> list[dict[str, Any]]:
    """Parameter groups for an optimizer.

    ``decay_bias_and_norm=True`` (default, the paper's setup) decays every trainable parameter.
    ``False`` puts biases and the weights of normalization layers (BatchNorm, InstanceNorm, GroupNorm,
    LayerNorm, RMSNorm, LocalResponseNorm) into a group with ``weight_decay=0``;
    ``decay_embeddings=False`` does the same for the weights of ``nn.Embedding`` layers (common for
    language models). With nothing exempt there is one group, ``"all"``; else ``"decay"`` and
    ``"no_decay"``. The optimizer's other hyperparameters apply to every group.
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue  # shared parameters are grouped once, by their first owner
            seen.add(id(param))
            exempt = (not decay_bias_and_norm and (isinstance(module, _NORM_LAYERS) or param_name == "bias")) or (
                not decay_embeddings and isinstance(module, nn.Embedding)
            )
            (no_decay if exempt else decay).append(param)
    if not no_decay:
        return [{"params": decay, "name": "all"}]
    groups = [{"params": decay, "name": "decay"}, {"params": no_decay, "name": "no_decay", "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def decay_table(model: nn.Module, groups: list[dict[str, Any]], decays: list[float] | None = None) -> str:
    """A table of the optimizer's parameter groups: for each, whether it is decayed, how many tensors and
    values it holds, and which parameters (by name, with shapes), so that a silent exclusion is visible.

    ``decays``: each group's weight decay as the optimizer resolved it (default: the group's own
    ``weight_decay`` entry, "decayed" when there is none).
    """
    names = {id(p): n for n, p in model.named_parameters()}
    lines = [f"{'group':<10} {'decayed':<8} {'tensors':>7} {'values':>11}  parameters (shape)"]
    for index, group in enumerate(groups):
        params = list(group["params"])
        decay = decays[index] if decays is not None else group.get("weight_decay")
        decayed = "yes" if decay is None or decay != 0 else "no"
        listed = ", ".join(f"{names.get(id(p), '?')} {tuple(p.shape)}" for p in params[:6])
        more = f", ... (+{len(params) - 6})" if len(params) > 6 else ""
        lines.append(f"{group.get('name', index)!s:<10} {decayed:<8} {len(params):>7} "
                     f"{sum(p.numel() for p in params):>11,}  {listed}{more}")
    return "\n".join(lines)
