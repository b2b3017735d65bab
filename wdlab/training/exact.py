"""Exact resume for any LightningModule: the state beyond Lightning's own checkpoint that makes a resumed
run continue exactly as an uninterrupted one. :class:`~wdlab.training.ResumableCheckpoint` runs it for
every module (and :class:`~wdlab.training.ImageClassifier` itself when trained without that callback).

* **random streams** (:func:`capture_rng_states`, :func:`restore_rng_states`): torch (CPU and CUDA),
  numpy and Python's ``random``, stored under :data:`RNG_STATES_KEY` in every checkpoint and put back
  when training (re)starts, after everything that happens before the first batch (sanity check included);
* **the data position**: stateful loaders (wdlab's, torchdata's ``StatefulDataLoader``) save their own
  position, which :func:`~wdlab.training._lightning.load_pending_loader_states` makes sure Lightning hands
  back to them (Lightning #20550). Plain ``DataLoader``\\ s have no position, and Lightning restarts an
  interrupted epoch from its first batch with a new shuffle. For them the checkpoint stores
  :data:`PLAIN_LOADER_KEY`: the epoch, the number of batches already drawn from it and the random streams
  at the moment its iterator was created; a resume re-creates that iterator from those streams (same
  shuffle, same worker seeds), draws and discards the batches already trained on, then restores the
  checkpoint's streams. Exact for shuffled or sequential loaders, with or without workers, and for random
  transforms in the main process or in (non-persistent) workers; it costs re-reading the skipped batches;
* **the run shape** (:data:`RUN_SHAPE_KEY`): images per step, steps per epoch and training-set size, which
  the schedule and the normalized decay depend on; a resume that changes them is refused
  (:func:`check_run_shape`). Recorded by :func:`wdlab.training.configure_optimizers` as ``module.run_facts``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from wdlab.training._lightning import (
    lightning_creates_epoch_iterator,
    load_pending_loader_states,
    restart_training_iterator,
    skip_training_batches,
)
from wdlab.training.errors import CheckpointError

__all__ = [
    "PLAIN_LOADER_KEY",
    "RNG_STATES_KEY",
    "RUN_SHAPE",
    "RUN_SHAPE_KEY",
    "ExactResume",
    "capture_rng_states",
    "check_run_shape",
    "restore_rng_states",
    "restore_training_state",
    "training_loaders",
]

#: Checkpoint key of the global random-stream states.
RNG_STATES_KEY = "wdlab_rng_states"
#: Checkpoint key of what a resumed run must keep: images per step, steps per epoch, training-set size.
RUN_SHAPE_KEY = "wdlab_run_shape"
RUN_SHAPE = ("global_batch_size", "steps_per_epoch", "num_train")
#: Checkpoint key of the position in the current epoch of plain (stateless) training loaders.
PLAIN_LOADER_KEY = "wdlab_plain_loader_position"


def capture_rng_states() -> dict[str, Any]:
    """Every global random stream a training step may draw from: torch (CPU and each CUDA device),
    numpy and Python's ``random``. Shake-Shake's alpha/beta and the device-side augmentation use torch's.

    Only tensors and plain Python values, so that ``torch.load(weights_only=True)`` (which
    LightningCLI uses to read a checkpoint's hyperparameters) accepts the checkpoint.
    """
    import random

    import numpy as np

    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()  # noqa: NPY002 - the global stream
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_states`."""
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def restore_training_state(trainer: L.Trainer, rng_states: dict[str, Any] | None) -> None:
    """At the start of (resumed) training: the loader position, then the random streams if a checkpoint had them."""
    load_pending_loader_states(trainer)
    if rng_states is not None:
        restore_rng_states(rng_states)


def check_run_shape(saved: Mapping[str, Any] | None, facts: Mapping[str, Any] | None) -> None:
    """A resumed run steps like the run it continues: same images per step, steps per epoch and training-set
    size (the schedule and the normalized decay are functions of them). No-op until both are known."""
    if not saved or not facts:
        return
    now = {k: facts[k] for k in RUN_SHAPE}
    if now != dict(saved):
        raise CheckpointError(
            f"the checkpoint was trained with {saved['global_batch_size']} images per step, "
            f"{saved['steps_per_epoch']} steps per epoch, {saved['num_train']} training images; this run has "
            f"{now['global_batch_size']}, {now['steps_per_epoch']}, {now['num_train']}: resume with the devices, "
            "nodes and --trainer.accumulate_grad_batches it was trained with (the global batch is data.batch_size "
            "x devices x nodes x accumulation; the schedule and the normalized decay depend on it)"
        )


def _flatten(loaders: Any) -> list[Any]:
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        return [x for value in loaders.values() for x in _flatten(value)]
    if isinstance(loaders, list | tuple):
        return [x for value in loaders for x in _flatten(value)]
    return [loaders]


def training_loaders(trainer: L.Trainer) -> list[Any]:
    """The training loaders of the fit (a flat list; empty before Lightning has requested them)."""
    return _flatten(trainer.train_dataloader)


def _is_stateful(loader: Any) -> bool:
    return callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None))


class ExactResume:
    """What one fit saves in, and restores from, each checkpoint for an exact resume (see the module docstring).

    The owner calls :meth:`save`, :meth:`load`, :meth:`train_start` and :meth:`train_epoch_start` from the
    Lightning hooks of the same names (``on_save_checkpoint``, ...).
    """

    def __init__(self) -> None:
        self._rng_to_restore: dict[str, Any] | None = None
        self._saved_run_shape: dict[str, Any] | None = None
        #: Plain loaders: {"epoch", "rng"} of the current epoch's iterator (None: stateful loaders / not started).
        self._epoch_start: dict[str, Any] | None = None
        self._replay: dict[str, Any] | None = None  # a loaded PLAIN_LOADER_KEY, until train_start replays it

    # -- checkpoint hooks --------------------------------------------------------------------
    def save(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Before train_start has restored them (a snapshot taken in on_train_start), the loaded values.
        checkpoint[RNG_STATES_KEY] = self._rng_to_restore or capture_rng_states()
        facts = getattr(pl_module, "run_facts", None)
        if facts:
            checkpoint[RUN_SHAPE_KEY] = {k: facts[k] for k in RUN_SHAPE}
        if self._replay is not None:
            checkpoint[PLAIN_LOADER_KEY] = dict(self._replay)
        elif self._epoch_start is not None:
            drawn = int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)
            checkpoint[PLAIN_LOADER_KEY] = {**self._epoch_start, "batches": drawn}

    def load(self, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get(RNG_STATES_KEY)
        self._saved_run_shape = checkpoint.get(RUN_SHAPE_KEY)
        self._replay = checkpoint.get(PLAIN_LOADER_KEY)
        check_run_shape(self._saved_run_shape, getattr(pl_module, "run_facts", None))

    def check_run_shape(self, facts: Mapping[str, Any] | None) -> None:
        """Refuse a resume whose run shape differs from the checkpoint's (called once ``facts`` are known)."""
        check_run_shape(self._saved_run_shape, facts)

    # -- training hooks ----------------------------------------------------------------------
    def train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_run_shape(getattr(pl_module, "run_facts", None))
        load_pending_loader_states(trainer)
        replay, self._replay = self._replay, None
        plain = self._plain_loaders(trainer)
        if plain and replay is not None and replay["epoch"] == trainer.current_epoch and (
            0 < replay["batches"] < trainer.num_training_batches
        ):
            # The interrupted epoch again: its iterator from the streams it was created with, minus the
            # batches already trained on; then the streams of the checkpoint.
            restore_rng_states(replay["rng"])
            restart_training_iterator(trainer)
            skip_training_batches(trainer, replay["batches"])
            # Lightning's "your dataloader is not resumable" no longer applies: the epoch was replayed.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
            self._epoch_start = {"epoch": replay["epoch"], "rng": replay["rng"]}
        if self._rng_to_restore is not None:
            restore_rng_states(self._rng_to_restore)
            self._rng_to_restore = None

    def train_epoch_start(self, trainer: L.Trainer) -> None:
        if not self._plain_loaders(trainer):
            self._epoch_start = None
            return
        self._epoch_start = {"epoch": trainer.current_epoch, "rng": capture_rng_states()}
        if not lightning_creates_epoch_iterator(trainer):
            # The first epoch of a fit draws from an iterator Lightning created before training started
            # (streams unknown); later epochs create theirs right after this hook. Re-create it now.
            restart_training_iterator(trainer)

    @staticmethod
    def _plain_loaders(trainer: L.Trainer) -> bool:
        """Whether the training loaders are plain ``DataLoader``\\ s / iterables with no saved position."""
        loaders = training_loaders(trainer)
        return bool(loaders) and not any(_is_stateful(loader) for loader in loaders)

