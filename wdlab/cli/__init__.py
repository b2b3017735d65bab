"""The ``wdlab`` command line: one module per command, dispatched here.

==============================  =====================================================
command                         module
==============================  =====================================================
fit, validate, test, predict    :mod:`wdlab.cli.lightning` (LightningCLI)
ensemble                        :mod:`wdlab.cli.ensemble`
sweep                           :mod:`wdlab.cli.sweep`
report                          :mod:`wdlab.cli.report`
optimizers                      :mod:`wdlab.cli.optimizers`
decay-of                        :mod:`wdlab.cli.decay_of`
==============================  =====================================================

Each command module has ``main(argv) -> int`` and reports bad input through the one error handler
(:mod:`wdlab.cli.errors`). A command's module is imported only when it runs, so ``wdlab --help``
and ``wdlab optimizers`` do not load Lightning.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import wdlab

__all__ = ["COMMANDS", "build_cli", "main"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

#: Command -> the module (under wdlab.cli) whose ``main(argv)`` runs it.
COMMANDS = {
    **dict.fromkeys(LIGHTNING_COMMANDS, "lightning"),
    "ensemble": "ensemble",
    "sweep": "sweep",
    "report": "report",
    "optimizers": "optimizers",
    "decay-of": "decay_of",
}

USAGE = """usage: wdlab [--version] <command> [args]

commands:
  fit          train a model:           wdlab fit --config configs/quickstart.yaml
  validate     evaluate on the validation split (the test set unless val_split > 0)
  test         evaluate on the test set: wdlab test --config X --ckpt_path CKPT
  ensemble     evaluate anytime snapshots and their ensembles:
               wdlab ensemble --config X --snapshots runs/NAME/snapshots
  sweep        a grid of fit runs (lr x weight decay heatmaps; resumable, --jobs N):
               wdlab sweep --config X --grid model.optimizer.lr=0.1,0.05 \\
                 --grid model.optimizer.weight_decay=0,1e-3 --out DIR
  report       heatmaps with coupling numbers from sweeps, learning/anytime curves from runs:
               wdlab report DIR... [--out OUT]
  optimizers   list the optimizer registry: entries, defaults, schedule and decay parameterization
  decay-of     which weight decay an optimizer applies, one line per parameter group:
               wdlab decay-of torch.optim.AdamW --lr 1e-3 --weight_decay 0.01

Resume a run: the same command plus --ckpt_path last (or --ckpt_path auto in job scripts that are
re-queued); runs live in runs/<logger name>/ (config.yaml, checkpoints/, snapshots/, TensorBoard events).

'wdlab <command> --help' shows a command's options; every config value can be overridden on the
command line, e.g. --model.optimizer.lr 0.01 --trainer.max_epochs 5 --data.root /data/cifar10.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``wdlab ARGS`` (``None``: ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] == "--version":
        print(f"wdlab {wdlab.__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"wdlab: unknown command {args[0]!r}; run 'wdlab --help' for the list of commands", file=sys.stderr)
        return 2
    if args[0] in LIGHTNING_COMMANDS:
        from wdlab.cli.errors import report_errors

        if report_errors("wdlab", (ValueError,), lambda: _check_optimizer_name(args[1:])) == 2:
            return 2
    module = importlib.import_module(f"wdlab.cli.{COMMANDS[args[0]]}")
    if args[0] in LIGHTNING_COMMANDS:
        return module.main(None if argv is None else args)  # LightningCLI parses the subcommand itself
    return module.main(args[1:])


def _check_optimizer_name(args: Sequence[str]) -> int:
    """An unknown ``--model.optimizer.name`` given on the command line is refused before Lightning is imported
    (seconds sooner than the parser would); the full check follows the parsing (``WdlabCLI.parse_arguments``)."""
    name = None
    arguments = iter(args)
    for arg in arguments:
        if arg == "--model.optimizer.name":
            name = next(arguments, None)
        elif arg.startswith("--model.optimizer.name="):
            name = arg.partition("=")[2]
    if name is not None and name not in ("null", "None", ""):
        from wdlab.optim.registry import REGISTRY

        REGISTRY.lookup(name)
    return 0


def __getattr__(name: str) -> Any:
    if name == "build_cli":  # wdlab.cli.build_cli without importing Lightning for every command
        from wdlab.cli.lightning import build_cli

        return build_cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
