"""Model, datamodule and trainer built from ``wdlab fit`` options for commands that do not fit: ``wdlab sweep``
checks every cell of its grid builds before any runs, ``wdlab ensemble`` builds the model its snapshots load into.
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

__all__ = ["ConfigError", "build_from_options"]


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
