"""Model, datamodule and trainer built from ``wdlab fit`` options for commands that do not fit: ``wdlab sweep``
checks the cells of its grid build before any runs (:func:`check_cell_builds`, run by a sweep slot's cell server),
``wdlab ensemble`` builds the model its snapshots load into.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Iterator, Sequence

from wdlab.cli.errors import one_line
from wdlab.cli.lightning import WdlabCLI, build_cli
from wdlab.cli.parser_errors import ConfigError, explain_parser_error, usage_error_line

__all__ = ["ConfigError", "build_from_options", "check_cell_builds"]


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info lines (seed, GPU available, tips) and warnings about an unused trainer."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def build_from_options(args: Sequence[str]) -> WdlabCLI:
    """Model, datamodule and trainer from ``--config X --key value ...`` options, built and not run.

    Raises :class:`ConfigError` with the parser's or the constructor's reason on one line (jsonargparse
    prints a usage block and a multi-line error; only the error is kept).
    """
    captured = io.StringIO()
    try:
        with _quiet_lightning(), contextlib.redirect_stderr(captured):
            cli = build_cli(args, run=False)
    except SystemExit as exit_:  # jsonargparse: usage + "error: ..." on stderr
        if not exit_.code:
            sys.stderr.write(captured.getvalue())
            raise
        raise ConfigError(usage_error_line(captured.getvalue())) from None
    except ArgumentError as error:  # the parser's refusal (exit_on_error=False): one message
        raise ConfigError(explain_parser_error(one_line(error), args)) from None
    except (ValueError, TypeError) as error:  # a constructor's own check, e.g. the optimizer's hyperparameters
        raise ConfigError(one_line(error)) from None
    sys.stderr.write(captured.getvalue())
    return cli


def check_cell_builds(options: Sequence[str], prepare_data: bool = True) -> None:
    """Build a sweep cell's model, datamodule and trainer from its ``wdlab fit`` options (nothing is trained).

    Raises :class:`ConfigError` with the one-line reason: a configuration error every cell of the grid shares
    (a typo, or a ``weight_decay`` grid on a config that sets ``weight_decay_norm``), or a cell configuration a
    sweep cannot read results from (no TensorBoard logger, no test after fit). With ``prepare_data`` the
    datamodule's ``prepare_data()`` runs too, so that missing dataset files are found once instead of failing
    every cell in turn (a cache it builds, e.g. ImageNet32x32's, is then built once).
    """
    from lightning.pytorch.loggers import TensorBoardLogger

    from wdlab.data import DatasetError

    try:
        cli = build_from_options(options)
    except ConfigError as error:
        raise ConfigError(f"the cells' configuration is invalid: {error}") from None
    if not isinstance(cli.trainer.logger, TensorBoardLogger):
        raise ConfigError(
            "the sweep reads each cell's results from its TensorBoard events: set trainer.logger to "
            "lightning.pytorch.loggers.TensorBoardLogger (wdlab's default)"
        )
    if cli.config.get("test_after_fit") is False:
        raise ConfigError("the sweep's results are the cells' test errors: drop --test_after_fit false")
    if prepare_data and cli.datamodule is not None:
        try:
            cli.datamodule.prepare_data()
        except (DatasetError, OSError) as error:
            raise ConfigError(f"the cells' data cannot be read: {error}") from None
