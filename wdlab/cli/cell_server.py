"""A process that imports torch, Lightning and wdlab's command line once and then runs ``wdlab fit`` cells of a
sweep, each in a child process forked from it.

Why: a fresh ``python -m wdlab fit`` spends most of its start-up importing torch, torchvision (through
torchmetrics) and Lightning -- 5 s on an idle 2-core machine, 10-13 s when the other core is busy -- which is a
quarter of a one-minute cell. A child forked from this process starts with all of that loaded. It is still a
process of its own: its own session (a signal reaches it alone), its own log, its exit status; what one cell does
to the process state (seeds, threads, signal handlers, warning filters) dies with it, so a cell computes exactly
what a fresh process computes.

The server itself never runs torch code: no OpenMP or CUDA is initialized before a fork (a child forked from a
process with running OpenMP threads or a CUDA context can hang). Its environment is the cells' (the sweep starts
one server per slot with that slot's ``CUDA_VISIBLE_DEVICES`` / ``OMP_NUM_THREADS``).

The sweep's configuration check (:func:`wdlab.cli.build.check_cell_builds`: the first cell's objects build, its
data files are there) runs here too, in a child of the slot-0 server, before any cell: the sweep process itself then
never imports Lightning, and the first cell starts on a server that has already imported it.

Protocol, one JSON object per line. Stdin: ``{"args": [...], "log": "PATH"}`` runs ``wdlab fit ARGS`` with stdout
and stderr appended to ``PATH``; ``{"check": true, "args": [...], "log": "PATH"}`` runs the check on the ``wdlab
fit`` options ``ARGS`` instead (exit status 2 and a last line ``wdlab: error: REASON`` in the log when they do not
build or their data files are missing; else a last line with the optimizer registry the cells see). Stdout:
``{"pid": N}`` once the child exists, then ``{"pid": N, "returncode": R}`` when it has ended. End of stdin: the
server exits.

    python -m wdlab.cli.cell_server                 (started by ``wdlab sweep``; not a user command)
    python -m wdlab.cli.cell_server --check ARGS    (the check in this process, for ``--launcher fresh``)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from typing import Any, TextIO

__all__ = ["check", "preload", "serve"]


def preload() -> None:
    """Import what every ``wdlab fit`` imports (and nothing that runs a torch kernel)."""
    import lightning.pytorch  # noqa: F401  torch, torchmetrics and torchvision come with it

    import wdlab.cli.lightning  # noqa: F401


def check(args: list[str]) -> int:
    """The configuration check of a sweep's cells on the ``wdlab fit`` options ``args``: 0 when they build and
    their data files are there, with a last line on stdout giving the optimizer registry the cells see
    (``CHECK_FACTS`` and :func:`~wdlab.experiments.cells.optimizer_facts` as JSON, read by the sweep instead of
    importing torch itself); else 2 with ``wdlab: error: REASON`` on stderr."""
    from wdlab.cli.build import ConfigError, check_cell_builds
    from wdlab.cli.errors import report_errors
    from wdlab.experiments.cells import CHECK_FACTS, optimizer_facts

    def checked() -> int:
        check_cell_builds(args)
        print(CHECK_FACTS + json.dumps(optimizer_facts()), flush=True)  # after the build: its plug-ins loaded
        return 0

    return report_errors("wdlab", (ConfigError,), checked)


def _run_child(request: dict[str, Any]) -> None:
    """In the forked child: the cell's session, log and command; never returns."""
    code = 1
    try:
        os.setsid()  # Ctrl-C in the sweep's terminal reaches the sweep only; it stops cells with SIGTERM
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        sys.argv = ["wdlab"]  # the arguments go to main(); LightningCLI warns when sys.argv holds them too
        if request.get("check"):
            code = check(list(request["args"]))
        else:
            from wdlab.cli import main

            code = main(["fit", *request["args"]])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # the cell's own failure, written to its log as a fresh process would write it
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed stream: nothing more to lose
                pass
        os._exit(code)


def serve(requests: TextIO, replies: TextIO) -> int:
    """Run each request of ``requests`` in a forked child, one at a time; the protocol of the module docstring."""
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        replies.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--check"]:
        return check(argv[1:])
    # the sweep stops cells itself (SIGTERM to each child); Ctrl-C in its terminal is not for this process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preload()
    return serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
