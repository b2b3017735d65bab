"""``wdlab fit --help``: the main options on one screen; ``--help_all`` gives LightningCLI's full list.

The full list (every Trainer, model, data, checkpoint and snapshot option, about 1,400 lines) is what
jsonargparse's ``--help`` prints; :func:`wants_short_help` and :func:`full_help_args` decide which one a
command line asks for, and :func:`short_help` is the short one. Subclass help (``--data.help CLASS``,
``--model.net.help CLASS``) is jsonargparse's, unchanged.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

__all__ = ["FULL_HELP", "full_help_args", "short_help", "wants_short_help"]

#: The option that prints every option (jsonargparse's own --help).
FULL_HELP = "--help_all"
WIDTH = 100
_COLUMN = 36

_PURPOSE = {
    "fit": "Train a model",
    "validate": "Evaluate a model on the validation split (the test set unless val_split > 0)",
    "test": "Evaluate a model on the test set",
    "predict": "Run a model's predictions",
}


def wants_short_help(args: Sequence[str]) -> bool:
    """``wdlab <subcommand> ... --help`` (or ``-h``)."""
    return any(a in ("-h", "--help") for a in args) and FULL_HELP not in args


def full_help_args(args: Sequence[str]) -> list[str]:
    """``args`` with ``--help_all`` as jsonargparse's ``--help``."""
    return ["--help" if a == FULL_HELP else a for a in args]


def _options(subcommand: str) -> list[tuple[str, str]]:
    from wdlab.optim.registry import REGISTRY
    from wdlab.optim.spec import HYPERPARAMETERS

    names = ", ".join(REGISTRY)
    keys = ", ".join(HYPERPARAMETERS)
    common = [
        ("-c, --config FILE", "a YAML config (repeatable: later ones win), e.g. configs/quickstart.yaml"),
        ("--print_config", "print the configuration these options make, and exit"),
    ]
    if subcommand == "fit":
        return [
            *common,
            ("--ckpt_path last|auto|FILE", "resume: this run's last.ckpt (auto: if there is one), or a checkpoint"),
            ("--seed_everything N", "the seed (default 0; true: a random one)"),
            ("--trainer.max_epochs N", "epochs to train"),
            ("--trainer.accelerator cpu|gpu|auto", "where to train (default auto); --trainer.devices N"),
            ("--trainer.logger.init_args.name NAME", "the run directory: runs/NAME"),
            ("--model.optimizer.name NAME", f"the optimizer (default adamwr): {names}; 'wdlab optimizers' "
             "shows their decay and defaults"),
            ("--model.optimizer.KEY VALUE", f"its hyperparameters: {keys}"),
            ("--model.net CLASS", "the network (default wdlab.models.PreActResNet); its options: "
             "--model.net.help CLASS"),
            ("--data CLASS", "the data (default wdlab.data.BuiltinDataModule, no files needed; "
             "wdlab.data.CIFAR10DataModule, ...); its options: --data.help CLASS"),
            ("--test_after_fit true|false", "evaluate the final model on the test set (default true)"),
            ("--print_decay", "print which parameters are decayed (one line per group), and exit"),
            ("--trainer.enable_progress_bar false", "no progress display (default: a bar on a terminal, "
             "a line per epoch otherwise)"),
        ]
    return [
        *common,
        ("--ckpt_path FILE|last", "the checkpoint to evaluate (last: the run's last.ckpt)"),
        ("--data CLASS", "the data (default wdlab.data.BuiltinDataModule); its options: --data.help CLASS"),
        ("--model.net CLASS", "the network; its options: --model.net.help CLASS"),
    ]


def short_help(subcommand: str) -> str:
    """The main options of ``wdlab <subcommand>``, at most :data:`WIDTH` columns."""
    lines = [
        f"usage: wdlab {subcommand} [--config FILE] [--KEY VALUE ...]",
        "",
        *textwrap.wrap(f"{_PURPOSE.get(subcommand, subcommand)}. Every value of a config can be set on the "
                       "command line (--trainer.max_epochs 5, --data.init_args.batch_size 64). The main options:",
                       WIDTH),
        "",
    ]
    for option, text in _options(subcommand):
        first = f"  {option}"
        wrapped = textwrap.wrap(text, WIDTH - _COLUMN)
        if len(first) < _COLUMN - 1:
            lines.append(first.ljust(_COLUMN) + wrapped[0])
            wrapped = wrapped[1:]
        else:
            lines.append(first)
        lines += [" " * _COLUMN + line for line in wrapped]
    lines += ["", f"'wdlab {subcommand} {FULL_HELP}' lists every option (Trainer, model, data, checkpoints; "
              "about 1,400 lines)."]
    return "\n".join(lines)
