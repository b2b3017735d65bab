"""``configure_optimizers`` for any LightningModule: a registry optimizer fitted to the run.

:func:`configure_optimizers` is what :meth:`ImageClassifier.configure_optimizers
<wdlab.training.ImageClassifier.configure_optimizers>` does, for any module::

    class MyModule(L.LightningModule):
        def configure_optimizers(self):
            return wdlab.training.configure_optimizers(self, {"name": "adamwr", "lr": 1e-3})

It reads the run's shape from the trainer and the data -- steps per epoch, epochs, the global batch
(per-device batch x devices x nodes x gradient accumulation) and the training-set size (the datamodule's
``batch_size`` / ``num_train`` if it has them, else the training ``DataLoader``\\ s' batch size and
dataset length) -- builds the registry entry with :func:`wdlab.optim.build_optimizer` and returns it
with its :class:`~wdlab.optim.ScheduledLR` stepped after every optimizer update. The shape is kept as
``module.run_facts``; :class:`~wdlab.training.ResumableCheckpoint` records it in every checkpoint and
refuses a resume that changes it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import lightning as L
from torch import nn
from torch.utils.data import DataLoader

from wdlab.optim import build_optimizer, param_groups
from wdlab.training.exact import training_loaders
from wdlab.training.fastpaths import resolve_fused

__all__ = ["configure_optimizers", "run_facts"]


def configure_optimizers(
    module: L.LightningModule,
    optimizer_config: Mapping[str, Any],
    *,
    params: nn.Module | Iterable[Any] | None = None,
    decay_bias_and_norm: bool = True,
    fused: bool | None = None,
    batch_size: int | None = None,
    num_train: int | None = None,
) -> dict[str, Any]:
    """The return value of ``LightningModule.configure_optimizers`` for the registry entry ``optimizer_config``.

    Args:
        module: the module being fitted (its trainer is read; call this from its ``configure_optimizers``).
        optimizer_config: ``{"name": <registry entry>, <hyperparameter>: <value>, ...}``, e.g.
            ``{"name": "adamwr", "lr": 1e-3}`` (see :func:`wdlab.optim.build_optimizer`).
        params: what to optimize: a module (grouped by :func:`wdlab.optim.param_groups`) or parameters /
            parameter groups as given; default ``module``.
        decay_bias_and_norm: decay biases and normalization weights too (True = the paper); for a module.
        fused: the optimizer's fused kernel; ``None``: on CUDA, the optimizer's own default elsewhere.
        batch_size: the per-device batch size, when neither the datamodule nor the loader tells it.
        num_train: the training-set size, when neither the datamodule nor the loader's dataset tells it.

    Returns ``{"optimizer": ..., "lr_scheduler": {"scheduler": ScheduledLR, "interval": "step",
    "frequency": 1}}`` and sets ``module.run_facts`` (``steps_per_epoch``, ``max_epochs``,
    ``global_batch_size``, ``num_train``, ``world_size``).
    """
    config = dict(optimizer_config)
    if "name" not in config:
        raise ValueError("the optimizer config needs a 'name': one of adam, adamw, adamwr, sgd, sgdw, sgdwr")
    facts = run_facts(module.trainer, batch_size=batch_size, num_train=num_train)
    module.run_facts = facts
    for owner in (module, *module.trainer.callbacks):  # a resume keeps the shape its checkpoint was trained with
        exact = getattr(owner, "exact_resume", None)
        if exact is not None:
            exact.check_run_shape(facts)
    if params is None:
        params = module
    groups = param_groups(params, decay_bias_and_norm=decay_bias_and_norm) if isinstance(params, nn.Module) else params
    optimizer, scheduler = build_optimizer(
        config.pop("name"),
        groups,
        steps_per_epoch=facts["steps_per_epoch"],
        max_epochs=facts["max_epochs"],
        batch_size=facts["global_batch_size"],
        num_train=facts["num_train"],
        fused=resolve_fused(fused, module.device),  # the parameters are on the training device now
        **config,
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}


def run_facts(trainer: L.Trainer, *, batch_size: int | None = None, num_train: int | None = None) -> dict[str, int]:
    """Steps per epoch, epochs, global batch, training-set size and world size of ``trainer``'s fit."""
    total_steps = int(trainer.estimated_stepping_batches)  # also makes Lightning request the training loaders
    batches = trainer.num_training_batches
    if not math.isfinite(batches):
        raise ValueError("configure_optimizers needs a training loader with a length (the schedule is laid out in "
                         "epochs): use a sized dataset, or limit_train_batches")
    steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    if max_epochs is None:
        max_epochs = max(1, math.ceil(total_steps / steps_per_epoch))
    datamodule = getattr(trainer, "datamodule", None)
    loaders = training_loaders(trainer)
    if batch_size is None:
        batch_size = getattr(datamodule, "batch_size", None)
    if batch_size is None:
        sizes = [_loader_batch_size(loader) for loader in loaders]
        batch_size = sum(sizes) if sizes and None not in sizes else None  # type: ignore[arg-type]
    if num_train is None:
        num_train = getattr(datamodule, "num_train", None)
    if num_train is None:
        num_train = _dataset_size(loaders)
    if batch_size is None or num_train is None:
        missing = " and ".join(n for n, v in (("batch_size", batch_size), ("num_train", num_train)) if v is None)
        raise ValueError(f"configure_optimizers cannot tell the training {missing} from the datamodule or the "
                         f"training DataLoader: pass {missing}=... to wdlab.training.configure_optimizers")
    return {
        "steps_per_epoch": steps_per_epoch,
        "max_epochs": max_epochs,
        "global_batch_size": int(batch_size) * trainer.world_size * trainer.accumulate_grad_batches,
        "num_train": int(num_train),
        "world_size": trainer.world_size,
    }


def _loader_batch_size(loader: Any) -> int | None:
    if isinstance(loader, DataLoader):
        size = loader.batch_size if loader.batch_size is not None else getattr(loader.batch_sampler, "batch_size", None)
    else:
        size = getattr(loader, "batch_size", None)
    return int(size) if isinstance(size, int) and not isinstance(size, bool) else None


def _dataset_size(loaders: list[Any]) -> int | None:
    total = 0
    for loader in loaders:
        try:
            total += len(loader.dataset)
        except (AttributeError, TypeError):
            return None
    return total or None
