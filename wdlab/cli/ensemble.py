"""``wdlab ensemble``: evaluate anytime snapshots and their ensembles (:mod:`wdlab.experiments.ensemble`).

::

    wdlab ensemble --config configs/quickstart.yaml --snapshots runs/quickstart/snapshots
    wdlab ensemble --config X --snapshots a.ckpt b.ckpt --split val --csv ensemble.csv --data.root /data/cifar10

The model and datamodule come from the config exactly as for ``wdlab fit`` (any further ``--key value``
options override it), built by the same LightningCLI.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from wdlab.cli.errors import report_errors
from wdlab.data import DatasetError
from wdlab.experiments.ensemble import (
    PROG,
    EnsembleError,
    evaluate_snapshots,
    find_snapshots,
    format_table,
    inspect_snapshots,
    write_csv,
)
from wdlab.training.evaluation import every_batch

# Trainer settings that cannot fail on this machine: the trainer LightningCLI builds is never used here.
_NEUTRAL_TRAINER = (
    "--trainer.accelerator=cpu --trainer.devices=1 --trainer.num_nodes=1 --trainer.strategy=auto "
    "--trainer.precision=32-true --trainer.logger=false"
).split()


def _subcommand_only_keys() -> set[str]:
    """Top-level keys of a saved ``fit`` config (``ckpt_path``, ...) that the option-only parser rejects."""
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    keys: set[str] = set()
    for name, skip in LightningCLI.subcommands().items():
        keys |= set(inspect.signature(getattr(L.Trainer, name)).parameters) - set(skip) - {"self"}
    return keys


def _usable_config(config: str, tmpdir: Callable[[], str]) -> str:
    """``config`` itself, or a copy without the subcommand-only keys a run's saved ``config.yaml`` has."""
    import yaml

    path = Path(config)
    if not path.is_file():
        return config  # let the parser report it
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return config
    if not isinstance(data, dict):
        return config
    drop = _subcommand_only_keys() & set(data)
    if not drop:
        return config
    copy = Path(tmpdir()) / f"{len(os.listdir(tmpdir()))}-{path.name}"
    copy.write_text(yaml.safe_dump({k: v for k, v in data.items() if k not in drop}, sort_keys=False))
    return str(copy)


def _build(configs: Sequence[str], overrides: Sequence[str]) -> tuple[Any, Any]:
    """``(model, datamodule)`` from the configs and overrides, as ``wdlab fit`` would build them."""
    from wdlab.cli.build import ConfigError, build_from_options

    tmp: list[str] = []

    def tmpdir() -> str:
        if not tmp:
            tmp.append(tempfile.mkdtemp(prefix="wdlab-ensemble-"))
        return tmp[0]

    try:
        args: list[str] = []
        for config in configs:
            args += ["--config", _usable_config(config, tmpdir)]
        args += [*overrides, *_NEUTRAL_TRAINER]
        try:
            cli = build_from_options(args)
        except ConfigError as error:
            raise EnsembleError(f"the model/data config: {error}") from None
    finally:
        if tmp:
            shutil.rmtree(tmp[0], ignore_errors=True)
    return cli.model, cli.datamodule



def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EnsembleError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)



# ---------------------------------------------------------------------------------------- command
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"wdlab: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description=(
            "Evaluate each snapshot (checkpoint) of a run and the ensembles of the last k snapshots "
            "(averaged softmax outputs; Huang et al. 2017, 'Snapshot Ensembles'). Any further --key value "
            "options override the config, as for 'wdlab fit' (e.g. --data.root /data/cifar10)."
        ),
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="the config the run was trained with (may repeat; later ones override earlier); "
        "default: RUN_DIR/config.yaml next to the snapshots folder if there is one",
    )
    parser.add_argument(
        "--snapshots",
        nargs="+",
        required=True,
        metavar="PATH",
        help="a folder (all its *.ckpt files, e.g. RUN_DIR/snapshots) or checkpoint files",
    )
    parser.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="evaluate on the test set (default) or the validation split",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto (default): cuda if available, else cpu"
    )
    parser.add_argument(
        "--batch_size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="evaluation batch size (default: the datamodule's eval_batch_size)",
    )
    parser.add_argument(
        "--limit_batches",
        type=_batch_limit,
        default=1.0,
        metavar="N",
        help="evaluate the first N batches of the split (an integer), or that fraction of them (a number in (0, 1]); "
        "Lightning's limit_test_batches rule, for a quick look or to match a run tested on fewer batches "
        "(default: 1.0, every batch)",
    )
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE", help="also write the table as CSV")
    return parser


def _batch_limit(text: str) -> int | float:
    """``--limit_batches``: "2" (or "2.0") is two batches, "0.25" a quarter of them, "1.0" every batch."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of batches or a fraction in (0, 1], got {text!r}")
    if value.is_integer() and (value > 1 or "." not in text):
        return int(value)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of batches or a fraction in (0, 1], got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _default_config(snapshots: Sequence[Path]) -> list[str]:
    """RUN_DIR/config.yaml for snapshots in RUN_DIR/snapshots/ (or RUN_DIR/checkpoints/), if it exists."""
    candidates = {p.resolve().parent.parent / "config.yaml" for p in snapshots}
    return [str(candidates.pop())] if len(candidates) == 1 and next(iter(candidates)).is_file() else []


def _main(argv: Sequence[str]) -> int:
    args, overrides = _parser().parse_known_args(list(argv))
    paths = find_snapshots(args.snapshots)
    device = _device(args.device)
    if args.csv is not None and not args.csv.resolve().parent.is_dir():
        raise EnsembleError(f"cannot write --csv {args.csv}: {args.csv.parent} is not a directory")

    snapshots = inspect_snapshots(paths)  # every checkpoint loads and is placed in training, before any evaluation
    infos = snapshots.infos

    configs = list(args.config)
    if not configs and (configs := _default_config(paths)):
        print(f"{PROG}: using the run's config {configs[0]}", file=sys.stderr)
    model, datamodule = _build(configs, overrides)
    if getattr(datamodule, "num_classes", None) is None:
        raise EnsembleError(f"{type(datamodule).__name__} has no num_classes attribute (use a wdlab.data datamodule)")
    if not hasattr(model, "net"):
        raise EnsembleError(f"{type(model).__name__} has no .net (use wdlab.training.ImageClassifier)")
    snapshots.check_fit(model)
    if args.batch_size is not None:
        attribute = "eval_batch_size" if hasattr(datamodule, "eval_batch_size") else "batch_size"
        setattr(datamodule, attribute, args.batch_size)

    try:
        singles, ensembles = evaluate_snapshots(infos, model, datamodule, args.split, device, args.limit_batches)
    except torch.cuda.OutOfMemoryError:
        raise _OutOfMemory("out of GPU memory; pass a smaller --batch_size") from None
    rows = [*singles, *ensembles]
    num_classes = int(datamodule.num_classes)
    limited = "" if every_batch(args.limit_batches) else f" (--limit_batches {args.limit_batches}: not the whole split)"
    print(
        f"{args.split} split: {singles[0].num_examples} images{limited}, {num_classes} classes; "
        f"{len(singles)} snapshots evaluated on {device.type}"
    )
    print(format_table(rows, top5=min(5, num_classes)))
    if args.csv is not None:
        try:
            write_csv(args.csv, rows)
        except OSError as error:
            raise EnsembleError(f"cannot write --csv {args.csv}: {error.strerror or error}") from error
    return 0


def main(argv: Sequence[str]) -> int:
    """``wdlab ensemble ARGS``: print the snapshot / ensemble table; return the exit status.

    0 on success; 2 with a one-line ``wdlab: error: ...`` on stderr for bad input (missing or empty
    snapshot paths, unloadable checkpoints, checkpoints that do not fit the configured model, a class
    count mismatch, dataset errors, bad options). ``WDLAB_DEBUG=1`` re-raises instead.
    """
    try:
        return report_errors("wdlab", (EnsembleError, DatasetError, ValueError, OSError, _OutOfMemory),
                             lambda: _main(argv))
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, already printed)
        return exit_.code if isinstance(exit_.code, int) else 2


class _OutOfMemory(EnsembleError):
    """CUDA ran out of memory during the evaluation."""


