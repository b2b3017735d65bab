"""Exact resume: everything beyond Lightning's own checkpoint that makes a resumed run continue
exactly as an uninterrupted one, and the run directory that makes resuming find what a run wrote.

Lightning restores weights, optimizer, scheduler, loop counters and callback states. wdlab adds:

* **random streams, data position and run shape**: :mod:`wdlab.training.exact` (:class:`ExactResume`,
  run by :class:`ResumableCheckpoint` for any LightningModule; :func:`capture_rng_states`,
  :func:`restore_rng_states` and :data:`RNG_STATES_KEY` are re-exported here). The loaders of
  :mod:`wdlab.data.sampling` save ``{"epoch", "batches"}`` themselves (the data layer's part);
  plain ``DataLoader``\\ s get their interrupted epoch replayed;
* **the run directory** (:func:`run_directory`, :func:`resolve_ckpt_path`): Lightning's default
  (``<save_dir>/<name>/version_N``) gives every invocation a new folder, so ``--ckpt_path last``
  after a crash would look in an empty one and silently start from scratch. wdlab pins the run
  directory to ``<save_dir>/<name>`` (``runs/<logger name>``) unless a logger ``version`` is given,
  and decides what a ``ckpt_path`` means before anything is written:

  - no ``ckpt_path`` and the run directory already holds checkpoints -> error (nothing is overwritten);
  - ``last`` -> ``<run dir>/checkpoints/last.ckpt``, which must exist;
  - ``auto`` -> ``last.ckpt`` if it exists, else a fresh start (for job scripts that are re-queued);
  - a path -> that file; every checkpoint is checked (truncated, corrupt, other model) before use.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L

from wdlab.training.checkpoints import CheckpointError, ResumableCheckpoint, check_checkpoint
from wdlab.training.exact import RNG_STATES_KEY, capture_rng_states, restore_rng_states, restore_training_state
from wdlab.training.snapshots import SNAPSHOT_DIRNAME

__all__ = [
    "RNG_STATES_KEY",
    "RunDirectoryError",
    "capture_rng_states",
    "check_run_directory_writable",
    "checkpoint_dir",
    "checkpoint_dir_of",
    "is_rank_zero_process",
    "resolve_ckpt_path",
    "restore_rng_states",
    "restore_training_state",
    "run_directory",
]

#: Rank variables set by torchrun, Lightning's process launcher and SLURM.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


# ------------------------------------------------------------------------------------- run directory
def is_rank_zero_process() -> bool:
    """True in the process of global rank 0 (or when not launched as part of a group), from the environment.

    Needed before the trainer has set up its process group (Lightning only knows ranks after that).
    """
    return all(os.environ.get(var, "0") in ("", "0") for var in _RANK_VARIABLES)


def run_directory(trainer: L.Trainer) -> Path:
    """The folder that holds the run's logs, ``config.yaml``, ``checkpoints/`` and ``snapshots/``."""
    return Path(trainer.log_dir if trainer.log_dir is not None else trainer.default_root_dir)


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """Where the checkpoint callback writes (``last.ckpt``), resolved as Lightning resolves it."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ResumableCheckpoint) and callback.dirpath is not None:
            return Path(os.fspath(callback.dirpath))
    if trainer.loggers:
        logger = trainer.loggers[0]
        return checkpoint_dir_of(None, logger.save_dir or trainer.default_root_dir, logger.name, logger.version,
                                 trainer.default_root_dir)
    return checkpoint_dir_of(None, None, None, None, trainer.default_root_dir)


def checkpoint_dir_of(
    dirpath: str | None, save_dir: str | None, name: str | None, version: int | str | None, default_root_dir: str
) -> Path:
    """The rule of :func:`checkpoint_dir` on plain values (before a trainer exists): the checkpoint
    callback's ``dirpath``; else ``<save_dir>/<name>/<version>/checkpoints`` of the first logger (an int
    version is ``version_N``); else ``<default_root_dir>/checkpoints``."""
    if dirpath is not None:
        return Path(os.fspath(dirpath))
    if save_dir is not None:
        folder = version if isinstance(version, str) else f"version_{version}"
        return Path(save_dir, str(name), folder, "checkpoints")
    return Path(default_root_dir, "checkpoints")


def resolve_ckpt_path(
    trainer: L.Trainer,
    model: L.LightningModule,
    ckpt_path: str | None,
    fitting: bool,
    directory: Path | None = None,
) -> str | None:
    """Turn ``ckpt_path`` (``None``, ``"last"``, ``"auto"`` or a file) into a checked file or ``None``.

    ``last``/``auto`` look for ``last.ckpt`` in ``directory``, by default the trainer's :func:`checkpoint_dir`.
    Raises :class:`~wdlab.training.checkpoints.CheckpointError` with the fix in one line.
    """
    last = (checkpoint_dir(trainer) if directory is None else directory) / "last.ckpt"
    if ckpt_path is None:
        if fitting and is_rank_zero_process():
            _refuse_to_overwrite(trainer)
        return None
    if ckpt_path in ("last", "auto"):
        if not last.is_file():
            if ckpt_path == "auto":
                if fitting and is_rank_zero_process():
                    _refuse_to_overwrite(trainer)
                return None
            raise CheckpointError(
                f"--ckpt_path last: there is no {last} to resume from; start the run without --ckpt_path "
                "(or use --ckpt_path auto: resume if a last.ckpt exists, else start)"
            )
        ckpt_path = str(last)
    check_checkpoint(ckpt_path, model)
    return ckpt_path


class RunDirectoryError(ValueError):
    """A run folder the process cannot create or write; the message names the folder and the fix."""


def check_run_directory_writable(trainer: L.Trainer, fitting: bool) -> None:
    """Refuse, before anything is written, a run directory this process could not write: otherwise the
    first write (the logger's folder, ``config.yaml``, or ``last.ckpt`` an epoch later) is a traceback.

    The usual cause is a container whose user does not own the bind-mounted ``runs/`` (Docker creates a
    missing one as root). Checks the nearest existing folder of each place the run writes to."""
    run_dir = run_directory(trainer)
    folders = [run_dir, checkpoint_dir(trainer), run_dir / SNAPSHOT_DIRNAME] if fitting else [run_dir]
    elsewhere = ("--trainer.logger.init_args.save_dir DIR" if trainer.loggers else "--trainer.default_root_dir DIR")
    for folder in folders:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        where = f"cannot write the run folder {run_dir}"
        if not existing.is_dir():
            raise RunDirectoryError(f"{where}: {existing} is a file, not a folder; move it away, or write "
                                    f"elsewhere with {elsewhere}")
        if os.access(existing, os.W_OK | os.X_OK):
            continue
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            raise RunDirectoryError(f"{where}: {existing} is on a read-only file system (a ':ro' mount?); mount "
                                    f"it writable, or write elsewhere with {elsewhere}")
        uid, gid = os.getuid(), os.getgid()
        raise RunDirectoryError(
            f"{where}: {existing} is not writable by this user (uid {uid}, gid {gid}); give it to that user "
            f"(on a Docker host: sudo chown -R {uid}:{gid} runs), run as the folder's owner (docker run --user "
            f"\"$(id -u):$(id -g)\"), or write elsewhere with {elsewhere}"
        )


def _refuse_to_overwrite(trainer: L.Trainer) -> None:
    run_dir = run_directory(trainer)
    found = sorted(checkpoint_dir(trainer).glob("*.ckpt")) + sorted((run_dir / SNAPSHOT_DIRNAME).glob("*.ckpt"))
    if found:
        elsewhere = ("--trainer.logger.init_args.name NAME" if trainer.loggers
                     else "--trainer.default_root_dir DIR")
        raise CheckpointError(
            f"{run_dir} already holds a run ({found[0]}); resume it with --ckpt_path last, or start a new run "
            f"elsewhere with {elsewhere} (or delete the folder)"
        )
