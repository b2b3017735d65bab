"""Where a ``wdlab fit|validate|test|predict`` run writes, decided on the parsed config before anything is built.

:mod:`wdlab.training.resume` owns the run directory once a trainer exists (:func:`~wdlab.training.resume.run_directory`,
:func:`~wdlab.training.resume.resolve_ckpt_path`); this module edits the LightningCLI config so that the
trainer it builds writes where a resume will look:

* a TensorBoard/CSV logger without a ``version`` writes into ``<save_dir>/<name>`` (:func:`pin_logger_version`);
* ``test|validate|predict`` write into ``<run dir>/eval/<checkpoint stem>/`` (:func:`pin_evaluation_dir`);
* the run's ``checkpoints/`` is found from the config alone (:func:`configured_checkpoint_dir`), for the
  moments when the trainer cannot tell (``fast_dev_run``) or does not exist yet (the checkpoint check
  before LightningCLI reads its hyperparameters).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wdlab.training.resume import checkpoint_dir_of

__all__ = ["EVAL_DIRNAME", "configured_checkpoint_dir", "evaluation_name", "pin_evaluation_dir", "pin_logger_version"]

#: Where ``wdlab test|validate|predict`` write, inside the run directory: ``eval/<checkpoint stem>/``.
EVAL_DIRNAME = "eval"


def pin_logger_version(logger_config: Any) -> None:
    """In a LightningCLI config: a TensorBoard/CSV logger without a ``version`` gets ``""``, i.e. the run
    directory ``<save_dir>/<name>`` (instead of a new ``version_N`` per invocation)."""
    init_args = getattr(logger_config, "init_args", None)
    class_path = str(getattr(logger_config, "class_path", ""))
    if init_args is None or not class_path.endswith(("TensorBoardLogger", "CSVLogger")):
        return
    if getattr(init_args, "version", None) is None:
        init_args.version = ""


def evaluation_name(ckpt_path: str | None) -> str:
    """The folder name of an evaluation of ``ckpt_path``: the checkpoint's stem (``last`` for
    ``last``/``auto``; ``initial`` when no checkpoint is given, i.e. the freshly built model)."""
    if ckpt_path is None:
        return "initial"
    if ckpt_path in ("last", "auto"):
        return "last"
    return Path(ckpt_path).stem


def pin_evaluation_dir(config: Any) -> None:
    """In a LightningCLI config of ``test|validate|predict``: the TensorBoard/CSV logger writes into
    ``<run dir>/eval/<checkpoint stem>/`` instead of the run directory, so an evaluation never adds to the
    training record (its HPARAMS, curves, config.yaml stay as training left them). The checkpoints the
    run directory holds are still found there (``--ckpt_path last``)."""
    logger_config = config.get("trainer", {}).get("logger")
    init_args = getattr(logger_config, "init_args", None)
    class_path = str(getattr(logger_config, "class_path", ""))
    if init_args is None:
        return
    folder = f"{EVAL_DIRNAME}/{evaluation_name(config.get('ckpt_path'))}"
    if class_path.endswith("TensorBoardLogger"):  # <save_dir>/<name>/<version>/<sub_dir>; checkpoints stay put
        init_args.sub_dir = folder
    elif class_path.endswith("CSVLogger"):  # no sub_dir: the version goes one level deeper ...
        run_dir = Path(init_args.save_dir or ".", str(init_args.name or ""), str(init_args.version or ""))
        if config.get("checkpoint") is not None and config["checkpoint"].get("dirpath") is None:
            config["checkpoint"]["dirpath"] = str(run_dir / "checkpoints")  # ... and last.ckpt stays where it is
        init_args.version = str(Path(str(init_args.version or ""), folder))


def configured_checkpoint_dir(config: Any) -> Path:
    """The run directory's ``checkpoints/`` found from the config, as
    :func:`~wdlab.training.resume.checkpoint_dir` finds it from the trainer (which cannot under
    ``fast_dev_run``: Lightning replaces the logger by a dummy that has no directory)."""
    trainer = config.get("trainer") or {}
    logger = trainer.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    init_args = getattr(logger, "init_args", None)
    root = trainer.get("default_root_dir") or os.getcwd()
    dirpath = (config.get("checkpoint") or {}).get("dirpath")
    if init_args is not None and getattr(init_args, "save_dir", None) is not None:
        version = getattr(init_args, "version", None)
        return checkpoint_dir_of(dirpath, init_args.save_dir, getattr(init_args, "name", None),
                                 "" if version is None else version, root)  # pinned as pin_logger_version does
    return checkpoint_dir_of(dirpath, None, None, None, root)
