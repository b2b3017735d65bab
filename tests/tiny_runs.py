"""The pieces the tests' tiny ``wdlab fit`` command lines share: the built-in data's size (:func:`builtin_data`)
and quiet output (:data:`QUIET`). Each module keeps its own run (epochs, schedule, logging), written with them."""

from __future__ import annotations

#: no progress bar, no model summary
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def builtin_data(num_train: int, num_test: int | None = None, batch_size: int | None = None) -> list[str]:
    """``--data.init_args.*`` for the built-in data of a config (the quickstart's): ``num_train`` training images,
    ``num_test`` test images and batches of ``batch_size`` (each left at the config's value when not given)."""
    args = ["--data.init_args.num_train", str(num_train)]
    if num_test is not None:
        args += ["--data.init_args.num_test", str(num_test)]
    if batch_size is not None:
        args += ["--data.init_args.batch_size", str(batch_size)]
    return args
