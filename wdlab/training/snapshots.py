"""Anytime snapshots: the model at the end of every schedule period is a result (the paper's AdamWR/SGDWR).

:class:`AnytimeSnapshots` reads the period boundaries from the run's schedule
(:class:`wdlab.optim.ScheduledLR`), so it cannot disagree with the learning rate. At the last update
of every period it

* evaluates the model on the evaluation set (the datamodule's ``val_dataloader``: the test set unless
  ``val_split > 0``, as in the paper) and logs ``anytime/err`` and ``anytime/err5`` against the epoch
  (the number of completed epochs, e.g. 100, 300, 700, 1500 for T_0 = 100, T_mult = 2);
* saves a full checkpoint ``snapshots/period-<i>-epoch-<e>.ckpt`` in the run directory (``i`` is the
  0-based period index, ``e`` the epoch at which the period ends); it carries
  ``checkpoint["wdlab_snapshot"] = {"period", "epoch", "step", "err", "err5"}``;
* under normalized weight decay, logs the next period's lambda as ``anytime/next_lambda``.

Any LightningModule whose ``configure_optimizers`` returns a ``ScheduledLR`` (e.g. through
:func:`wdlab.training.configure_optimizers`) gets snapshots, with or without a wdlab datamodule. A
wdlab classifier (a module with ``num_classes`` on a datamodule with ``transform_batch``) is evaluated
as above; any other module with a ``validation_step`` is evaluated with it over the validation loaders,
and what it logs is logged with the prefix ``anytime/`` (``val_loss`` -> ``anytime/val_loss``); the
snapshot's record and ``wdlab_snapshot`` then carry ``"metrics"`` instead of ``"err"``/``"err5"``. A
module without a validation step or loader gets its snapshots saved, unevaluated. Both checks are made
when training starts, not at the first period end.

Schedules without restarts have one period, the whole run: one snapshot at the end. The list of
snapshots taken is the callback's ``state_dict``, saved in every checkpoint, so a resumed run neither
repeats a snapshot nor skips one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from wdlab.optim import ScheduledLR
from wdlab.training.evaluation import evaluate_error, evaluate_validation_step
from wdlab.training.progress import say

__all__ = ["AnytimeSnapshots", "snapshot_filename"]

SNAPSHOT_DIRNAME = "snapshots"


def snapshot_filename(period: int, epoch: int) -> str:
    """``period-<i>-epoch-<e>.ckpt``."""
    return f"period-{period}-epoch-{epoch}.ckpt"


class AnytimeSnapshots(Callback):
    """Evaluate, log and checkpoint the model at the end of every schedule period.

    Args:
        dirpath: where snapshots go; default ``<run directory>/snapshots`` (the run directory is the
            logger's ``log_dir``, the folder that also holds ``checkpoints/`` and ``config.yaml``).
        save: write the snapshot checkpoints (``False``: only evaluate and log).
    """

    def __init__(self, dirpath: str | None = None, save: bool = True) -> None:
        self.dirpath = None if dirpath is None else os.fspath(dirpath)
        self.save = bool(save)
        self.snapshots: list[dict[str, Any]] = []
        self._pending: dict[str, Any] | None = None

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            run_dir = trainer.log_dir if trainer.log_dir is not None else trainer.default_root_dir
            self.dirpath = str(Path(run_dir) / SNAPSHOT_DIRNAME)

    @staticmethod
    def scheduler(trainer: L.Trainer) -> ScheduledLR:
        configs = trainer.lr_scheduler_configs
        scheduler = configs[0].scheduler if configs else None
        if not isinstance(scheduler, ScheduledLR):
            raise ValueError(
                "AnytimeSnapshots reads the periods from wdlab's schedule: the module must return a "
                f"wdlab.optim.ScheduledLR from configure_optimizers (found {type(scheduler).__name__})"
            )
        return scheduler

    @staticmethod
    def evaluates_error_rates(trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        """A wdlab classifier on a wdlab datamodule: snapshots get ``err``/``err5`` on the whole evaluation set."""
        datamodule = getattr(trainer, "datamodule", None)
        return hasattr(datamodule, "transform_batch") and getattr(pl_module, "num_classes", None) is not None

    @staticmethod
    def validation_loaders(trainer: L.Trainer, pl_module: L.LightningModule) -> list[Any]:
        """The loaders a snapshot of a module that is not a wdlab classifier is evaluated on (may be empty)."""
        if not is_overridden("validation_step", pl_module):
            return []
        loaders = trainer.val_dataloaders  # set up by Lightning when validation runs
        datamodule = getattr(trainer, "datamodule", None)
        if loaders is None and datamodule is not None and is_overridden("val_dataloader", datamodule):
            loaders = datamodule.val_dataloader()
        if loaders is None and is_overridden("val_dataloader", pl_module):
            loaders = pl_module.val_dataloader()
        if loaders is None:
            return []
        if isinstance(loaders, dict):
            return list(loaders.values())
        return list(loaders) if isinstance(loaders, list | tuple) else [loaders]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Fail (or say what is not evaluated) now, not at the first period end.
        self.scheduler(trainer)
        if not self.evaluates_error_rates(trainer, pl_module) and not self.validation_loaders(trainer, pl_module):
            rank_zero_warn(
                f"AnytimeSnapshots: {type(pl_module).__name__} has no validation_step and validation loader (nor "
                "num_classes on a wdlab datamodule): snapshots are saved but not evaluated"
            )
        # A run resumed from a checkpoint written exactly at a period end whose snapshot is missing
        # (e.g. the run was started without this callback) takes it now: same weights.
        updates = self.scheduler(trainer).last_epoch
        if updates > 0 and self._is_new_period_end(trainer, updates):
            self.take_snapshot(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        updates = self.scheduler(trainer).last_epoch  # optimizer updates made so far
        if updates > 0 and self._is_new_period_end(trainer, updates):
            self.take_snapshot(trainer, pl_module)

    def _is_new_period_end(self, trainer: L.Trainer, updates: int) -> bool:
        schedule = self.scheduler(trainer).schedule
        return schedule.is_period_end(updates - 1) and all(s["step"] != updates for s in self.snapshots)

    # -- the snapshot ------------------------------------------------------------------------
    def take_snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Evaluate, log and (if ``save``) checkpoint the current model as the end of its period."""
        scheduler = self.scheduler(trainer)
        updates = scheduler.last_epoch
        period = scheduler.schedule.period(updates - 1)
        record: dict[str, Any] = {"period": period.index, "epoch": period.end_epoch, "step": updates}
        if self.evaluates_error_rates(trainer, pl_module):
            err, err5 = evaluate_error(trainer, pl_module)
            record.update(err=err, err5=err5)
            metrics = {"anytime/err": err, "anytime/err5": err5}
            summary = f"err {err:.2%}, err5 {err5:.2%}"
        else:
            loaders = self.validation_loaders(trainer, pl_module)
            values = evaluate_validation_step(trainer, pl_module, loaders) if loaders else {}
            record["metrics"] = values
            metrics = {f"anytime/{name}": value for name, value in values.items()}
            summary = ", ".join(f"{name} {value:.4g}" for name, value in values.items()) or "not evaluated"
        record["path"] = None
        decay = scheduler.normalized_decay
        next_lambda = None if decay is None else decay.first_group_weight_decay(
            scheduler.optimizer.param_groups, scheduler.schedule.period_epochs(updates)
        )
        if next_lambda is not None:
            metrics["anytime/next_lambda"] = next_lambda
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=period.end_epoch)
        self.snapshots.append(record)
        if self.save:
            assert self.dirpath is not None
            path = Path(self.dirpath) / snapshot_filename(period.index, period.end_epoch)
            record["path"] = str(path)
            self._pending = {k: v for k, v in record.items() if k != "path"}
            try:
                trainer.save_checkpoint(path, weights_only=False)
            finally:
                self._pending = None
        say(
            f"anytime: period {period.index} ended at epoch {period.end_epoch}: "
            f"{summary}" + (f", saved {record['path']}" if record["path"] else "")
        )
        return record

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self._pending is not None:
            checkpoint["wdlab_snapshot"] = dict(self._pending)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": [dict(s) for s in self.snapshots]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.snapshots = [dict(s) for s in state_dict.get("snapshots", [])]
