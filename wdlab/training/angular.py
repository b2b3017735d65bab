"""``opt/angular_update`` and ``opt/angular_update_predicted``: the rotational equilibrium, measured.

On the steps Lightning logs, the decayed matrices (:func:`wdlab.optim.decayed_matrices`) are copied just
before the optimizer updates them, and the mean angle between the copies and the updated weights
(:func:`wdlab.optim.angular_update`) is computed right after the update, in a step post-hook of the
optimizer; with it the equilibrium value the optimizer predicts for that step
(:func:`wdlab.optim.predicted_angular_update`, Kosson et al. 2024). On every other step nothing is copied
and nothing computed, and no value is ever read back to the host.

:class:`~wdlab.training.ImageClassifier` logs both tags itself; any other module trained with
:func:`wdlab.training.configure_optimizers` (or any optimizer) gets them from the
:class:`AngularUpdateMonitor` callback.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.optim import Optimizer

from wdlab.optim.equilibrium import angular_update, decayed_matrices, predicted_angular_update
from wdlab.training._lightning import logs_this_step

__all__ = ["AngularUpdateMonitor", "AngularUpdateTracker"]


class AngularUpdateTracker:
    """Measures the angular update of one optimizer step on request (the module's or the callback's state).

    :meth:`arm` (from ``on_before_optimizer_step``, on logging steps) copies the decayed matrices and the
    prediction; the optimizer's step post-hook (registered once per optimizer) turns the copy into the
    angle; :meth:`log` (from ``on_train_batch_end``) logs it. One measurement per training batch: the first
    optimizer step armed in it. A step the optimizer skips (an AMP grad scaler finding inf gradients) runs
    no post-hook and logs nothing. Nothing of it is saved: it pickles as a fresh tracker.
    """

    def __init__(self) -> None:
        self._optimizer: Optimizer | None = None
        self._handle: Any = None
        self._params: list[torch.Tensor] | None = None
        self._before: list[torch.Tensor] | None = None
        self._predicted: float | None = None
        self._result: tuple[torch.Tensor, float | None] | None = None

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (type(self), ())  # pickled and deep-copied as a fresh tracker: no hook, no copies

    def arm(self, optimizer: Optimizer) -> None:
        """Copy the decayed matrices of ``optimizer`` before its update (call it on logging steps only)."""
        if self._before is not None or self._result is not None:
            return  # this batch's measurement is under way
        params = decayed_matrices(optimizer)
        if not params:
            return
        if optimizer is not self._optimizer:
            if self._handle is not None:
                self._handle.remove()
            self._handle = optimizer.register_step_post_hook(self._after_step)
            self._optimizer = optimizer
        self._params = params
        self._before = list(torch._foreach_mul(params, 1.0))  # one multi-tensor copy
        self._predicted = predicted_angular_update(optimizer)

    def _after_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        if self._before is None or self._params is None:
            return  # not armed: a step that is not logged costs this check only
        self._result = (angular_update(self._before, self._params), self._predicted)
        self._before = self._params = None

    def pop(self) -> tuple[torch.Tensor, float | None] | None:
        """(measured angle, a 0-dim tensor; predicted angle or None) of the armed step, and disarm."""
        result, self._result = self._result, None
        self._before = self._params = None
        return result

    def log(self, module: L.LightningModule) -> None:
        """Log the measured step through ``module.log`` (call it from ``on_train_batch_end``)."""
        result = self.pop()
        if result is None:
            return
        measured, predicted = result
        module.log("opt/angular_update", measured, on_step=True, on_epoch=False)
        if predicted is not None:  # None: Adam with L2 has no closed-form equilibrium
            module.log("opt/angular_update_predicted", float(predicted), on_step=True, on_epoch=False)


class AngularUpdateMonitor(Callback):
    """Logs ``opt/angular_update`` and ``opt/angular_update_predicted`` for any module, on logging steps.

    ``trainer = L.Trainer(callbacks=[wdlab.training.AngularUpdateMonitor()])``. A module that logs them
    itself (``logs_angular_update = True``, as :class:`~wdlab.training.ImageClassifier`) is left alone.
    """

    def __init__(self) -> None:
        self.tracker = AngularUpdateTracker()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not getattr(pl_module, "logs_angular_update", False) and logs_this_step(trainer):
            self.tracker.arm(optimizer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.tracker.log(pl_module)
