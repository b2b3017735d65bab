"""The run directory: one fixed folder per run, so that resuming finds what the run wrote.

Lightning's default (``<save_dir>/<name>/version_N``) gives every invocation a new folder, so
``--ckpt_path last`` after a crash would look in an empty one and silently start from scratch.
wdlab pins the run directory to ``<save_dir>/<name>`` (``runs/<logger name>``) unless a logger
``version`` is given, and decides what a ``ckpt_path`` means before anything is written:

* no ``ckpt_path`` and the run directory already holds checkpoints -> error (nothing is overwritten);
* ``last`` -> ``<run dir>/checkpoints/last.ckpt``, which must exist;
* ``auto`` -> ``last.ckpt`` if it exists, else a fresh start (for job scripts that are re-queued);
* a path -> that file; every checkpoint is checked (truncated, corrupt, other model) before use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L

from wdlab.training.checkpoints import CheckpointError, ResumableCheckpoint, check_checkpoint
from wdlab.training.snapshots import SNAPSHOT_DIRNAME

__all__ = ["checkpoint_dir", "is_rank_zero_process", "resolve_ckpt_path", "run_directory"]

#: Rank variables set by torchrun, Lightning's process launcher and SLURM.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


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
        save_dir = logger.save_dir or trainer.default_root_dir
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(save_dir, str(logger.name), version, "checkpoints")
    return Path(trainer.default_root_dir, "checkpoints")


def resolve_ckpt_path(
    trainer: L.Trainer, model: L.LightningModule, ckpt_path: str | None, fitting: bool
) -> str | None:
    """Turn ``ckpt_path`` (``None``, ``"last"``, ``"auto"`` or a file) into a checked file or ``None``.

    Raises :class:`~wdlab.training.checkpoints.CheckpointError` with the fix in one line.
    """
    last = checkpoint_dir(trainer) / "last.ckpt"
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


def _refuse_to_overwrite(trainer: L.Trainer) -> None:
    run_dir = run_directory(trainer)
    found = sorted(checkpoint_dir(trainer).glob("*.ckpt")) + sorted((run_dir / SNAPSHOT_DIRNAME).glob("*.ckpt"))
    if found:
        raise CheckpointError(
            f"{run_dir} already holds a run ({found[0]}); resume it with --ckpt_path last, or start a new run "
            "elsewhere with --trainer.logger.init_args.name NAME (or delete the folder)"
        )


def pin_logger_version(logger_config: Any) -> None:
    """In a LightningCLI config: a TensorBoard/CSV logger without a ``version`` gets ``""``, i.e. the run
    directory ``<save_dir>/<name>`` (instead of a new ``version_N`` per invocation)."""
    init_args = getattr(logger_config, "init_args", None)
    class_path = str(getattr(logger_config, "class_path", ""))
    if init_args is None or not class_path.endswith(("TensorBoardLogger", "CSVLogger")):
        return
    if getattr(init_args, "version", None) is None:
        init_args.version = ""
