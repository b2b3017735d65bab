"""Every private Lightning API wdlab depends on, each in one function with the reason and the upstream issue.

Nothing else in wdlab touches an underscored Lightning name, except the one LightningCLI hook
``WdlabCLI._parse_ckpt_path`` (an override, so it cannot live here; see ``wdlab/cli/lightning.py``).
If a Lightning upgrade breaks one of these, this file is where to look.
"""

from __future__ import annotations

from typing import Any

import lightning as L

__all__ = [
    "given_by_cli",
    "lightning_creates_epoch_iterator",
    "load_pending_loader_states",
    "logs_this_step",
    "restart_training_iterator",
    "skip_training_batches",
    "start_next_epoch_after_last_batch_restore",
    "tensorboard_file_writer",
]


def load_pending_loader_states(trainer: L.Trainer) -> None:
    """Give the training loader its saved position if Lightning has not.

    Lightning loads stateful loaders' states in ``setup_data`` -- which has already run (before the
    checkpoint was read) when ``configure_optimizers`` used ``trainer.estimated_stepping_batches``,
    as ours does: the states would be silently dropped (Lightning issue #20550). Called when
    training starts, before the first batch is drawn; a no-op once Lightning has loaded them.
    """
    fit_loop = trainer.fit_loop
    states = getattr(fit_loop, "_combined_loader_states_to_load", None)
    loader = getattr(fit_loop, "_combined_loader", None)
    if states and loader is not None:
        loader._load_state_dicts(states)
        fit_loop._combined_loader_states_to_load = []


def restart_training_iterator(trainer: L.Trainer) -> None:
    """Create the training batches' iterator anew, from the random streams as they are now.

    For plain ``DataLoader``\\ s the shuffle and the workers' seeds are drawn from the global streams when
    the iterator is created; Lightning creates the first epoch's iterator in ``FitLoop.setup_data``
    (before any hook a callback can use to record those streams) and later ones in
    ``_TrainingEpochLoop.on_run_start``. ``wdlab.training.exact`` re-creates it at known streams to replay
    an interrupted epoch. There is no public way to reach the fit loop's data fetcher.
    """
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    if fetcher is not None:
        iter(fetcher)  # _DataFetcher.__iter__: iter(combined loader), fetched = 0


def lightning_creates_epoch_iterator(trainer: L.Trainer) -> bool:
    """Whether Lightning creates the training iterator of the epoch now starting (called from
    ``on_train_epoch_start``) -- the condition in ``_TrainingEpochLoop.on_run_start`` of Lightning 2.6.6
    (``loops/training_epoch_loop.py``, line 245). The first epoch of every ``fit`` (fresh or resumed) uses
    the iterator created in ``FitLoop.setup_data`` instead."""
    return bool(
        trainer.current_epoch > 0 and not trainer.fit_loop.is_resuming and not trainer.fit_loop.epoch_loop.restarting
    )


def skip_training_batches(trainer: L.Trainer, batches: int) -> None:
    """Draw and discard ``batches`` batches from the training iterator (not counted as fetched: Lightning's
    epoch loop adds the restored batch count itself when the resumed epoch starts)."""
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    if fetcher is None or fetcher.iterator is None:
        return
    for _ in range(batches):
        next(fetcher.iterator)


def start_next_epoch_after_last_batch_restore(trainer: L.Trainer) -> None:
    """After resuming from a checkpoint written at the end of an epoch's *last batch*, start the next epoch
    as a normal one (its ``epoch_progress`` ``ready``/``started`` counted, ``on_train_epoch_start`` called).

    A snapshot (``AnytimeSnapshots`` saves in ``on_train_batch_end``), ``last.ckpt`` written on SIGTERM
    or on a step interval at an epoch's last batch all hold the fit loop's epoch counters mid-epoch
    (``ready == started == processed + 1``). On resume ``FitLoop.reset`` (``lightning/pytorch/loops/
    fit_loop.py`` of 2.6.6, lines 398-404: the ``restarted_on_train_batch_end and restarted_mid_epoch
    and is_last_batch`` branch) sees that the epoch was in fact finished and counts it ``processed``
    and ``completed`` -- but leaves the restart stage at ``RESTARTED_MID_EPOCH`` (cleared only by
    ``on_iteration_done``, after the next epoch), so ``on_advance_start`` (line 447) treats the *next*
    epoch as the continuation of a restored one: it skips ``increment_ready()``, ``increment_started()``
    and the ``on_train_epoch_start`` hooks. That epoch trains correctly, but from then on
    ``ready``/``started`` lag ``processed`` by one; the epoch-end ``last.ckpt`` of that run then reads
    as an unfinished epoch (``FitLoop.restarting``, line 138: ``ready != processed``), and resuming it
    runs an empty epoch (0 batches): one epoch lost per further resume, and the period-end snapshots
    after it are skipped (wdlab issue 13, item 5). The restart-stage logic is from Lightning PR #20379
    (issue #14579); no upstream issue for this case was found.

    Called when training starts (after ``FitLoop.reset``, before the first epoch starts); a no-op in
    every other case (fresh start, epoch-end or genuinely mid-epoch checkpoints).
    """
    fit_loop = trainer.fit_loop
    epochs = fit_loop.epoch_progress.current
    if fit_loop.restarted_mid_epoch and epochs.ready == epochs.started == epochs.processed:
        fit_loop.reset_restart_stage()  # the restored epoch is done: the next one is a new epoch


def logs_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning keeps values logged in this training step (``log_every_n_steps``).

    There is no public flag; without it the ``opt/*`` values (a weight-norm pass over every
    parameter) would be computed on every step only for Lightning to drop them (the
    throughput killer of Lightning #7093).
    """
    connector = getattr(trainer, "_logger_connector", None)
    return connector is None or bool(connector.should_update_logs)


def given_by_cli() -> bool:
    """True while LightningCLI instantiates the module (it then supplies the config as hparams).

    ``save_hyperparameters`` itself reads this context variable; there is no public accessor.
    """
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # pragma: no cover - older/newer Lightning: save the net's config if we can't tell
        return False
    return _given_hyperparameters.get() is not None


def tensorboard_file_writer(logger: Any) -> Any:
    """The event-file writer of a ``TensorBoardLogger``, to register the hparams session once.

    The public ``TensorBoardLogger.log_hyperparams(params, metrics)`` also logs ``metrics`` as
    scalars at step 0: placeholder values there would enter every learning curve and the minimum
    ``val/err`` a sweep reads as ``best_test_err``. Writing the three hparams summaries directly
    declares the metric tags without logging a value (what ``log_hyperparams`` itself does after
    its ``log_metrics`` call).
    """
    return logger.experiment._get_file_writer()
