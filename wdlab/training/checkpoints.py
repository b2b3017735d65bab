"""Checkpoints a long run can rely on: atomic writes, ``last.ckpt`` on a step interval and on SIGTERM,
and a clear verdict on a checkpoint before a run resumes from it.

* :class:`AtomicCheckpointIO` writes ``<name>.tmp-<pid>`` next to the target, fsyncs it and renames
  it over the target, so a kill at any moment leaves either the old file or the new one. (Lightning's
  default stages the file in the system temp dir and *copies* it across when that is another
  filesystem, which is not atomic.)
* :class:`ResumableCheckpoint` is Lightning's ``ModelCheckpoint`` (``last.ckpt`` at every epoch end
  by default) plus ``last_every_n_steps`` and preemption handling: on SIGTERM or Ctrl-C it saves
  ``last.ckpt`` at the end of the current optimizer step on every rank and stops the run
  (:class:`Preempted`).
* :func:`check_checkpoint` opens a checkpoint the way a resume would and raises
  :class:`CheckpointError` (one line, with the fix) if it is truncated, corrupt, not a Lightning
  training checkpoint, or written for a different model.
"""

from __future__ import annotations

import os
import signal
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from wdlab._io import atomic_write
from wdlab.training._lightning import start_next_epoch_after_last_batch_restore
from wdlab.training.errors import CheckpointError
from wdlab.training.exact import ExactResume
from wdlab.training.progress import say, write

__all__ = [
    "STOP_SIGNALS",
    "AtomicCheckpointIO",
    "CheckpointError",
    "Preempted",
    "ResumableCheckpoint",
    "check_checkpoint",
]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the target's directory, fsync, then ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint does not take storage_options")
        target = Path(os.fspath(path))
        if "://" in str(path):  # remote filesystems: Lightning's own transaction-based write
            super().save_checkpoint(checkpoint, path)
            return
        with atomic_write(target) as handle:
            torch.save(checkpoint, handle)


class Preempted(SIGTERMException):
    """Training stopped by a signal after ``last.ckpt`` was written with the state of a whole step.

    A :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException`, so Lightning treats it as its
    own preemption; ``wdlab fit`` turns it into the resume hint and the exit status of :attr:`signum`.
    """

    def __init__(self, signum: int, path: Path, epoch: int, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at epoch {epoch}, step {step}; saved {path}")
        self.signum, self.path, self.epoch, self.step = signum, path, epoch, step


#: The signals that stop training cleanly: what schedulers send (SIGTERM) and Ctrl-C (SIGINT).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is written at every epoch end, optionally every N steps,
    and on SIGTERM or Ctrl-C. It also makes every checkpoint write of the trainer atomic.

    Args:
        save_last: keep ``<dirpath>/last.ckpt`` up to date (the file ``--ckpt_path last`` resumes from).
            Unlike ``ModelCheckpoint(save_last=True)`` it is written at every epoch end whether or not
            a top-k checkpoint is, and always under the same name (no ``last-v1.ckpt``).
        last_every_n_steps: also write ``last.ckpt`` every this many optimizer steps (for long epochs,
            e.g. ImageNet32x32: 10,010 steps per epoch at batch 128). ``None``: epoch ends only.
        agree_every_n_steps: under DDP, how often (in optimizer steps) the ranks agree on whether one
            of them received a stop signal: one all-reduce of a flag. A signal to any rank stops every
            rank at the same batch, at most this many steps later. Ignored in a single process, which
            stops at the end of the step it is in.
        **kwargs: the other arguments of :class:`lightning.pytorch.callbacks.ModelCheckpoint`
            (``monitor``, ``save_top_k``, ``filename``, ... for best-k checkpoints).

    Preemption: on SIGTERM (what cloud schedulers, SLURM and ``docker stop`` send) or SIGINT (Ctrl-C)
    training goes on to the end of the current optimizer step -- with ``accumulate_grad_batches`` > 1
    that is the end of the accumulation window, so no half-accumulated gradient is lost -- then
    ``last.ckpt`` is written with the exact state after that step (weights, optimizer, schedule
    position, data position, RNG streams, callback states) and :class:`Preempted` is raised
    (``wdlab fit`` turns it into a resume hint and exit status 0 for SIGTERM, 130 for SIGINT).
    A second Ctrl-C aborts at once, without saving.

    Exact resume, for any LightningModule (:class:`~wdlab.training.exact.ExactResume`): every checkpoint
    of the trainer also holds the random streams, the position in the epoch of plain ``DataLoader``\\ s
    (replayed on resume) and the run shape recorded by :func:`wdlab.training.configure_optimizers`.
    """

    def __init__(
        self,
        *,
        save_last: bool = True,
        last_every_n_steps: int | None = None,
        agree_every_n_steps: int = 20,
        **kwargs: Any,
    ) -> None:
        if last_every_n_steps is not None:
            _check_steps("last_every_n_steps", last_every_n_steps)
        _check_steps("agree_every_n_steps", agree_every_n_steps)
        # ModelCheckpoint's own "last" logic stays off: it only writes last.ckpt when it also writes
        # a top-k file and renames it last-v1.ckpt when one exists; ours is below.
        super().__init__(save_last=False, **kwargs)
        self.keep_last = bool(save_last)
        self.last_every_n_steps = last_every_n_steps
        self.agree_every_n_steps = agree_every_n_steps
        self._last_saved_step = -1
        self._step_at_last_batch_end = -1
        self._stop_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        #: RNG streams, plain loaders' position and run shape in every checkpoint (any LightningModule).
        self.exact_resume = ExactResume()

    @property
    def last_checkpoint_path(self) -> Path:
        """Where ``last.ckpt`` goes (valid after set-up)."""
        return Path(os.fspath(self.dirpath)) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # the default: make it atomic
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Replaces Lightning's handlers for the training loop: ours only raise a flag, acted on at the
        # end of an optimizer step, where the state is consistent. (Lightning's SIGTERM handler stops
        # at a batch end even inside an accumulation window, whose partial gradient a checkpoint
        # cannot hold; its Ctrl-C handling exits 1 without saving.)
        # A resume from a checkpoint of an epoch's last batch (a snapshot, a SIGTERM there) must start
        # the next epoch as a new one, or every later epoch-end last.ckpt resumes one epoch short.
        start_next_epoch_after_last_batch_restore(trainer)
        # Exact resume: the loader position (replaying a plain DataLoader's interrupted epoch), then the
        # random streams of the checkpoint (wdlab.training.exact).
        self.exact_resume.train_start(trainer, pl_module)
        self._stop_signal = None
        self._step_at_last_batch_end = trainer.global_step
        for signum in STOP_SIGNALS:
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._on_stop_signal)
            except ValueError:  # not the main thread: leave signal handling to Lightning
                pass

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.exact_resume.train_epoch_start(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        self.exact_resume.save(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self.exact_resume.load(pl_module, checkpoint)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._stop_signal == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait
        if self._stop_signal is None:
            self._stop_signal = signum
            if signum == signal.SIGINT:
                write("wdlab: Ctrl-C: stopping at the end of this step and saving last.ckpt "
                      "(Ctrl-C again to abort without saving)")

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            try:
                signal.signal(signum, handler)
            except ValueError:
                pass
        self._previous_handlers = {}

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_signal_handlers()
        super().on_exception(trainer, pl_module, exception)

    # -- saving ------------------------------------------------------------------------------
    def _stop_agreed(self, trainer: L.Trainer) -> int | None:
        """The signal to stop on at this step end, the same on every rank (``None``: go on)."""
        received = self._stop_signal
        if received is None and bool(getattr(trainer, "received_sigterm", False)):
            received = signal.SIGTERM  # Lightning's handler got it first (before training started)
        if trainer.world_size == 1:
            return received
        if trainer.global_step % self.agree_every_n_steps != 0:
            return None
        # One collective every agree_every_n_steps steps (not every step): the largest signal number
        # received on any rank (SIGTERM 15 > SIGINT 2), or 0.
        flag = torch.tensor(int(received or 0), device=trainer.strategy.root_device)
        agreed = int(trainer.strategy.reduce(flag, reduce_op="max").item())
        return agreed or None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        stepped = step != self._step_at_last_batch_end  # this batch ended an accumulation window
        self._step_at_last_batch_end = step
        if not stepped:
            return
        due = self.last_every_n_steps is not None and step > 0 and step % self.last_every_n_steps == 0
        stop = self._stop_agreed(trainer)
        if stop is not None or due:
            self.save_last_now(trainer)
        if stop is not None:
            path = self.last_checkpoint_path
            say(f"wdlab: {signal.Signals(stop).name} received: saved {path} "
                f"(epoch {trainer.current_epoch + 1}, step {step})")
            raise Preempted(stop, path, trainer.current_epoch, step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self.save_last_now(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_signal_handlers()
        super().on_train_end(trainer, pl_module)
        self.save_last_now(trainer)  # a run stopped by max_steps mid-epoch; no-op if already saved

    def save_last_now(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` with the current state unless it already holds this step (collective
        under DDP: call it on every rank; rank 0 writes)."""
        if not self.keep_last or trainer.global_step == self._last_saved_step or trainer.fast_dev_run:
            return  # (fast_dev_run: Lightning's "checkpointing is suppressed", which ModelCheckpoint obeys)
        path = self.last_checkpoint_path
        self._last_saved_step = trainer.global_step  # before saving: it is part of the saved state
        self.last_model_path = str(path)
        trainer.save_checkpoint(path, weights_only=self.save_weights_only)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["last_saved_step"] = self._last_saved_step
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._last_saved_step = int(state_dict.get("last_saved_step", -1))


def _check_steps(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


# ------------------------------------------------------------------------------------------- checks
_REQUIRED_KEYS = ("state_dict", "optimizer_states", "lr_schedulers", "loops", "global_step", "epoch")


def check_checkpoint(path: str | os.PathLike, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Open ``path`` as a resume would and return its metadata (``epoch``, ``global_step``).

    Raises :class:`CheckpointError` if the file is missing, truncated or corrupt (every zip entry's
    CRC is verified), not a Lightning training checkpoint, or (given ``model``) if its weights do not
    fit the model: missing or unexpected parameters, or different shapes.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise CheckpointError(f"checkpoint {path} is corrupt (bad CRC in {bad}); use another checkpoint of the run "
                                  "(an earlier snapshot, or last.ckpt)")
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "use another checkpoint of the run (an earlier snapshot, or last.ckpt)"
        ) from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in _REQUIRED_KEYS):
        missing = [k for k in _REQUIRED_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
        raise CheckpointError(
            f"checkpoint {path} is not a Lightning training checkpoint (no {', '.join(missing)}); "
            "pass a .ckpt written by 'wdlab fit' (a weights-only file cannot resume a run)"
        )
    if model is not None:
        check_weights_fit(path, shapes_of(checkpoint["state_dict"]), shapes_of(model.state_dict()))
    return {"epoch": int(checkpoint["epoch"]), "global_step": int(checkpoint["global_step"])}


def shapes_of(state_dict: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape (non-tensor entries get ``()``)."""
    return {k: tuple(v.shape) if hasattr(v, "shape") else () for k, v in state_dict.items()}


def check_weights_fit(
    path: str | os.PathLike,
    saved: dict[str, tuple[int, ...]],
    expected: dict[str, tuple[int, ...]],
    fix: str = "resume with the configuration the run was started with (its config.yaml)",
) -> None:
    """Raise :class:`CheckpointError` unless the saved tensor shapes are exactly the model's."""
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    wrong = [f"{k} is {list(saved[k])} in the checkpoint but {list(v)} in the model"
             for k, v in expected.items() if k in saved and saved[k] != v]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} of another shape (e.g. {wrong[0]})")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit the configured model: tensors {'; '.join(problems)}; {fix}"
        )
