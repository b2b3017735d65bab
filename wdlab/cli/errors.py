"""The one error handler of every ``wdlab`` command: bad input is one line on stderr and exit status 2.

``WDLAB_DEBUG=1`` re-raises instead, for the full traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["one_line", "report_errors"]


def one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace runs collapsed), or its type when it has none."""
    return " ".join(str(error).split()) or type(error).__name__


def report_errors(prog: str, errors: tuple[type[BaseException], ...], command: Callable[[], int]) -> int:
    """Run ``command``; an error of the ``errors`` types is printed as ``<prog>: error: <message>`` -> 2."""
    try:
        return command()
    except errors as error:
        if os.environ.get("WDLAB_DEBUG"):
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 2
