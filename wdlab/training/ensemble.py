"""``wdlab ensemble``: evaluate "anytime" snapshots and the ensembles of their averaged softmax outputs.

Snapshot ensembles (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free"; also reported
in the SGDR paper): a run with warm restarts saves a snapshot at the end of every period
(``RUN_DIR/snapshots/period-<i>-epoch-<e>.ckpt``); averaging the softmax outputs of the last ``k``
snapshots often beats the final model alone. ::

    wdlab ensemble --config configs/quickstart.yaml --snapshots runs/quickstart/snapshots
    wdlab ensemble --config X --snapshots a.ckpt b.ckpt --split val --csv ensemble.csv --data.root /data/cifar10

The model and datamodule come from the config exactly as for ``wdlab fit`` (any further ``--key value``
options override it); each snapshot's weights are loaded into the model and its network is run on the
whole split. The table lists every snapshot (in training order) and the ensemble of the last ``k``
snapshots for ``k = 1..n``, with top-1 / top-5 errors in percent.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import inspect
import io
import itertools
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from wdlab.training.checkpoints import CheckpointError, check_weights_fit, shapes_of
from wdlab.training.fastpaths import resolve_channels_last

__all__ = ["EnsembleError", "ResultRow", "SnapshotInfo", "find_snapshots", "run_ensemble", "snapshot_info"]

PROG = "wdlab ensemble"
_FIT_FIX = "pass the --config the run was trained with"
_EPOCH_IN_NAME = re.compile(r"epoch-(\d+)")
_PERIOD_IN_NAME = re.compile(r"period-(\d+)")
# Trainer settings that cannot fail on this machine: the trainer LightningCLI builds is never used here.
_NEUTRAL_TRAINER = (
    "--trainer.accelerator=cpu --trainer.devices=1 --trainer.num_nodes=1 --trainer.strategy=auto "
    "--trainer.precision=32-true --trainer.logger=false"
).split()


class EnsembleError(Exception):
    """A one-line problem with the command's input (printed as ``wdlab: error: ...``, exit status 2)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """Where a snapshot sits in training: ``epoch`` = completed epochs, ``step`` = optimizer steps."""

    path: Path
    epoch: int
    step: int
    period: int | None = None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ResultRow:
    """One line of the table: a snapshot (``members == 1``, ``label`` = file name) or an ensemble."""

    label: str
    members: int
    first: SnapshotInfo
    last: SnapshotInfo
    top1_wrong: int
    top5_wrong: int
    num_examples: int
    is_ensemble: bool

    @property
    def top1_err(self) -> float:
        """Top-1 error in percent."""
        return 100.0 * self.top1_wrong / self.num_examples

    @property
    def top5_err(self) -> float:
        """Top-5 error (top-min(5, classes)) in percent."""
        return 100.0 * self.top5_wrong / self.num_examples

    def epochs(self) -> str:
        a, b = self.first.epoch, self.last.epoch
        return str(b) if a == b else f"{a}-{b}"

    def steps(self) -> str:
        a, b = self.first.step, self.last.step
        return str(b) if a == b else f"{a}-{b}"


# ----------------------------------------------------------------------------------------- snapshots
def find_snapshots(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand ``--snapshots``: a directory gives all its ``*.ckpt`` files, a file is taken as it is.

    Duplicates are dropped. Raises :class:`EnsembleError` for a missing path or a directory without
    checkpoints.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.ckpt") if p.is_file())
            if not files:
                raise EnsembleError(f"no snapshots (*.ckpt files) in {path}")
        elif path.is_file():
            files = [path]
        else:
            raise EnsembleError(f"{path}: no such file or directory")
        for file in files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append(file)
    return found


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return int(value.item())
    return None


def snapshot_info(path: Path, checkpoint: dict[str, Any]) -> SnapshotInfo:
    """The snapshot's place in training, from (in this order of preference) ``checkpoint["wdlab_snapshot"]``,
    ``epoch-<e>`` / ``period-<i>`` in the file name, or Lightning's ``epoch`` (0-based, so + 1) and ``global_step``.
    """
    meta = checkpoint.get("wdlab_snapshot")
    meta = meta if isinstance(meta, dict) else {}
    ckpt_epoch = _as_int(checkpoint.get("epoch"))
    ckpt_step = _as_int(checkpoint.get("global_step"))

    epoch = _as_int(meta.get("epoch"))
    if epoch is None and (match := _EPOCH_IN_NAME.search(path.name)):
        epoch = int(match.group(1))
    if epoch is None and ckpt_epoch is not None:
        epoch = ckpt_epoch + 1
    step = _as_int(meta.get("step"))
    if step is None:
        step = ckpt_step
    period = _as_int(meta.get("period"))
    if period is None and (match := _PERIOD_IN_NAME.search(path.name)):
        period = int(match.group(1))
    if epoch is None or step is None:
        raise EnsembleError(f"{path}: not a Lightning checkpoint (no epoch / global_step)")
    return SnapshotInfo(path=path, epoch=epoch, step=step, period=period)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated, corrupt, not a torch file, unpicklable class, ...
        detail = " ".join(str(error).split()) or type(error).__name__
        raise EnsembleError(f"{path}: not a loadable checkpoint, corrupt or truncated? ({detail[:200]})") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise EnsembleError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def _net_description(checkpoint: dict[str, Any]) -> str:
    """``" (the checkpoint's net: PreActResNet(depth=8, ...))"`` if the checkpoint records it, else ``""``."""
    net = (checkpoint.get("hyper_parameters") or {}).get("net")
    if not (isinstance(net, dict) and "class_path" in net):
        return ""
    args = ", ".join(f"{k}={v}" for k, v in (net.get("init_args") or {}).items())
    return f" (the checkpoint's net: {str(net['class_path']).rsplit('.', 1)[-1]}({args}))"


def _check_fit(path: Path, expected: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]], net: str) -> None:
    """Raise :class:`EnsembleError` if a checkpoint's state_dict does not fit the configured model."""
    try:
        check_weights_fit(path, got, expected, fix=f"{_FIT_FIX}{net}")
    except CheckpointError as error:
        raise EnsembleError(str(error)) from None


# --------------------------------------------------------------------------------- model and data
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


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info lines (seed, GPU available, tips) and warnings about the unused trainer."""
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


def _build(configs: Sequence[str], overrides: Sequence[str]) -> tuple[Any, Any]:
    """``(model, datamodule)`` from the configs and overrides, as ``wdlab fit`` would build them."""
    from wdlab.cli import build_cli

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
        captured = io.StringIO()
        try:
            with _quiet_lightning(), contextlib.redirect_stderr(captured):
                cli = build_cli(args, run=False)
        except SystemExit as exit_:  # jsonargparse: usage + "error: ..." on stderr
            if not exit_.code:
                sys.stderr.write(captured.getvalue())
                raise
            text = captured.getvalue()
            match = re.search(r"^error:(.*)", text, re.MULTILINE | re.DOTALL)
            message = match.group(1) if match else text
            raise EnsembleError(f"the model/data config: {' '.join(message.split())}") from None
        sys.stderr.write(captured.getvalue())
    finally:
        if tmp:
            shutil.rmtree(tmp[0], ignore_errors=True)
    return cli.model, cli.datamodule


def _loader(datamodule: Any, split: str) -> Any:
    datamodule.prepare_data()
    datamodule.setup("test" if split == "test" else "validate")
    return datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()


def _transform(datamodule: Any) -> Callable[[Any], Any]:
    if hasattr(datamodule, "transform_batch"):
        return lambda batch: datamodule.transform_batch(batch, training=False)
    return lambda batch: datamodule.on_after_batch_transfer(batch, 0)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EnsembleError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)


# ------------------------------------------------------------------------------------- evaluation
def _predict(
    net: torch.nn.Module,
    loader: Any,
    transform: Callable[[Any], Any],
    device: torch.device,
    num_classes: int,
    info: SnapshotInfo,
    progress: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (float32, CPU, N x classes) and labels of one snapshot on the whole split."""
    from tqdm.auto import tqdm

    probs, labels = [], []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=progress, leave=False, file=sys.stderr, disable=None, dynamic_ncols=True):
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            x, y = transform((x, y))
            logits = net(x)
            if logits.ndim != 2 or logits.shape[1] != num_classes:
                raise EnsembleError(
                    f"{info.path}: the network outputs shape {tuple(logits.shape)} but the dataset has {num_classes} "
                    f"classes; {_FIT_FIX} (and its --data)"
                )
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
            labels.append(y.cpu())
    if not probs:
        raise EnsembleError("the evaluation split is empty")
    return torch.cat(probs), torch.cat(labels)


def _wrong(scores: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many rows of ``scores`` do not rank the label among their top ``k``."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return int((top != labels[:, None]).all(dim=1).sum())


def _evaluate(
    infos: list[SnapshotInfo],
    model: Any,
    datamodule: Any,
    split: str,
    device: torch.device,
) -> tuple[list[ResultRow], list[ResultRow]]:
    """Per-snapshot rows (in training order) and ensemble-of-last-k rows (k = 1..n).

    The snapshots are evaluated latest first, so the ensembles are running sums of softmax outputs
    (only one N x classes sum is kept in memory, however many snapshots there are).
    """
    num_classes = int(datamodule.num_classes)
    loader = _loader(datamodule, split)
    transform = _transform(datamodule)
    channels_last = resolve_channels_last(getattr(datamodule, "channels_last", None), device)
    model.num_classes = num_classes
    model.to(device)
    model.eval()
    singles: dict[Path, ResultRow] = {}
    ensembles: list[ResultRow] = []
    total: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    n = len(infos)
    for k, info in enumerate(reversed(infos), start=1):
        checkpoint = _load_checkpoint(info.path)
        model.load_state_dict(checkpoint["state_dict"])
        del checkpoint
        net = model.net.to(memory_format=torch.channels_last) if channels_last else model.net
        net.eval()
        probs, labels = _predict(net, loader, transform, device, num_classes, info, f"[{k}/{n}] {info.name}")
        if reference is None:
            reference = labels
        elif not torch.equal(labels, reference):
            raise EnsembleError(f"the {split} split came back in another order for {info.path}; it must be fixed")
        single = ResultRow(
            info.name, 1, info, info, _wrong(probs, labels, 1), _wrong(probs, labels, 5), len(labels), is_ensemble=False
        )
        singles[info.path] = single
        total = probs if total is None else total.add_(probs)  # accumulates into the latest snapshot's probs
        ensemble = ResultRow(
            f"ensemble of last {k}",
            k,
            info,
            infos[-1],
            _wrong(total, labels, 1),
            _wrong(total, labels, 5),
            len(labels),
            is_ensemble=True,
        )
        ensembles.append(ensemble)
        print(
            f"{PROG}: [{k}/{n}] {info.name}: top-1 err {single.top1_err:.2f} %, "
            f"ensemble of last {k}: {ensemble.top1_err:.2f} %",
            file=sys.stderr,
        )
    return [singles[info.path] for info in infos], ensembles


# ----------------------------------------------------------------------------------------- output
def format_table(rows: Sequence[ResultRow], top5: int = 5) -> str:
    """The aligned text table (errors in percent, 2 decimals); ``top5`` = min(5, classes) for the header."""
    header = ("snapshot", "epoch", "step", "top-1 err", f"top-{top5} err")
    body = [(r.label, r.epochs(), r.steps(), f"{r.top1_err:.2f} %", f"{r.top5_err:.2f} %") for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = []
    for i, line in enumerate([header, *body]):
        if i and rows[i - 1].is_ensemble and not rows[i - 2].is_ensemble:
            lines.append("")  # a blank line between the snapshots and the ensembles
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


CSV_FIELDS = (
    "name",
    "kind",
    "members",
    "period",
    "first_epoch",
    "last_epoch",
    "first_step",
    "last_step",
    "top1_err_pct",
    "top5_err_pct",
    "top1_wrong",
    "top5_wrong",
    "num_examples",
)


def write_csv(path: Path, rows: Sequence[ResultRow]) -> None:
    """The table as CSV (errors in percent with 4 decimals, plus the exact counts)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for r in rows:
            period = "" if r.is_ensemble or r.last.period is None else r.last.period
            writer.writerow(
                [
                    r.label,
                    "ensemble" if r.is_ensemble else "snapshot",
                    r.members,
                    period,
                    r.first.epoch,
                    r.last.epoch,
                    r.first.step,
                    r.last.step,
                    f"{r.top1_err:.4f}",
                    f"{r.top5_err:.4f}",
                    r.top1_wrong,
                    r.top5_wrong,
                    r.num_examples,
                ]
            )


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
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE", help="also write the table as CSV")
    return parser


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

    # Pass 1: every checkpoint loads and says where it sits in training (fail fast, before any evaluation).
    infos, shapes, nets = [], {}, {}
    for path in paths:
        checkpoint = _load_checkpoint(path)
        info = snapshot_info(path, checkpoint)
        infos.append(info)
        shapes[path], nets[path] = shapes_of(checkpoint["state_dict"]), _net_description(checkpoint)
        del checkpoint
    infos.sort(key=lambda i: (i.epoch, i.step, i.name))
    for a, b in itertools.pairwise(infos):
        if (a.epoch, a.step) == (b.epoch, b.step):
            print(
                f"{PROG}: warning: {a.path} and {b.path} are both from epoch {a.epoch}, step {a.step}", file=sys.stderr
            )

    configs = list(args.config)
    if not configs and (configs := _default_config(paths)):
        print(f"{PROG}: using the run's config {configs[0]}", file=sys.stderr)
    model, datamodule = _build(configs, overrides)
    if getattr(datamodule, "num_classes", None) is None:
        raise EnsembleError(f"{type(datamodule).__name__} has no num_classes attribute (use a wdlab.data datamodule)")
    if not hasattr(model, "net"):
        raise EnsembleError(f"{type(model).__name__} has no .net (use wdlab.training.ImageClassifier)")
    expected = shapes_of(model.state_dict())
    for info in infos:
        _check_fit(info.path, expected, shapes[info.path], nets[info.path])
    if args.batch_size is not None:
        attribute = "eval_batch_size" if hasattr(datamodule, "eval_batch_size") else "batch_size"
        setattr(datamodule, attribute, args.batch_size)

    singles, ensembles = _evaluate(infos, model, datamodule, args.split, device)
    rows = [*singles, *ensembles]
    num_classes = int(datamodule.num_classes)
    print(
        f"{args.split} split: {singles[0].num_examples} images, {num_classes} classes; "
        f"{len(singles)} snapshots evaluated on {device.type}"
    )
    print(format_table(rows, top5=min(5, num_classes)))
    if args.csv is not None:
        try:
            write_csv(args.csv, rows)
        except OSError as error:
            raise EnsembleError(f"cannot write --csv {args.csv}: {error.strerror or error}") from error
    return 0


def run_ensemble(argv: Sequence[str]) -> int:
    """``wdlab ensemble ARGS``: print the snapshot / ensemble table; return the exit status.

    0 on success; 2 with a one-line ``wdlab: error: ...`` on stderr for bad input (missing or empty
    snapshot paths, unloadable checkpoints, checkpoints that do not fit the configured model, a class
    count mismatch, dataset errors, bad options). ``WDLAB_DEBUG=1`` re-raises instead.
    """
    from wdlab.data import DatasetError

    try:
        return _main(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, already printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    except (EnsembleError, DatasetError, ValueError, OSError, torch.cuda.OutOfMemoryError) as error:
        if os.environ.get("WDLAB_DEBUG"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, torch.cuda.OutOfMemoryError):
            message = "out of GPU memory; pass a smaller --batch_size"
        print(f"wdlab: error: {message}", file=sys.stderr)
        return 2
