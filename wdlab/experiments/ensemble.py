"""Snapshot ensembles: evaluate "anytime" snapshots and the ensembles of their averaged softmax outputs.

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

import csv
import itertools
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wdlab._io import atomic_write
from wdlab.training.checkpoints import CheckpointError, check_weights_fit, shapes_of
from wdlab.training.evaluation import every_batch, limited_batches, split_outputs, topk_correct
from wdlab.training.fastpaths import resolve_channels_last

__all__ = [
    "EnsembleError",
    "InspectedSnapshots",
    "ResultRow",
    "SnapshotInfo",
    "evaluate_snapshots",
    "find_snapshots",
    "format_table",
    "inspect_snapshots",
    "snapshot_info",
    "write_csv",
]

PROG = "wdlab ensemble"
_FIT_FIX = "pass the --config the run was trained with"
_EPOCH_IN_NAME = re.compile(r"epoch-(\d+)")
_PERIOD_IN_NAME = re.compile(r"period-(\d+)")


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
        lines = str(error).strip().splitlines()
        detail = f"{type(error).__name__}: {lines[0].strip()}" if lines else type(error).__name__
        raise EnsembleError(f"{path}: not a loadable checkpoint: truncated or corrupt ({detail}); pass the run's "
                            "other snapshots or its last.ckpt") from error
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


@dataclass(frozen=True)
class InspectedSnapshots:
    """Snapshots in training order, with what is needed to check them against a model before evaluating."""

    infos: list[SnapshotInfo]
    shapes: dict[Path, dict[str, tuple[int, ...]]]
    nets: dict[Path, str]

    def check_fit(self, model: torch.nn.Module) -> None:
        """Raise :class:`EnsembleError` naming the first snapshot whose weights do not fit ``model``."""
        expected = shapes_of(model.state_dict())
        for info in self.infos:
            _check_fit(info.path, expected, self.shapes[info.path], self.nets[info.path])


def inspect_snapshots(paths: Sequence[Path]) -> InspectedSnapshots:
    """Load every checkpoint once and place it in training (fail fast, before any evaluation).

    Warns on stderr about two snapshots from the same epoch and step.
    """
    infos, shapes, nets = [], {}, {}
    for path in paths:
        checkpoint = _load_checkpoint(path)
        infos.append(snapshot_info(path, checkpoint))
        shapes[path], nets[path] = shapes_of(checkpoint["state_dict"]), _net_description(checkpoint)
        del checkpoint
    infos.sort(key=lambda i: (i.epoch, i.step, i.name))
    for a, b in itertools.pairwise(infos):
        if (a.epoch, a.step) == (b.epoch, b.step):
            print(
                f"{PROG}: warning: {a.path} and {b.path} are both from epoch {a.epoch}, step {a.step}", file=sys.stderr
            )
    return InspectedSnapshots(infos, shapes, nets)


def _loader(datamodule: Any, split: str) -> Any:
    datamodule.prepare_data()
    datamodule.setup("test" if split == "test" else "validate")
    return datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()


def _transform(datamodule: Any) -> Callable[[Any], Any]:
    if hasattr(datamodule, "transform_batch"):
        return lambda batch: datamodule.transform_batch(batch, training=False)
    return lambda batch: datamodule.on_after_batch_transfer(batch, 0)


# ------------------------------------------------------------------------------------- evaluation
def _predict(
    net: torch.nn.Module,
    loader: Any,
    transform: Callable[[Any], Any],
    device: torch.device,
    num_classes: int,
    info: SnapshotInfo,
    progress: str,
    num_batches: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (float32, CPU, N x classes) and labels of one snapshot on the first ``num_batches``
    batches of the split (None: every batch)."""
    from tqdm.auto import tqdm

    probs, labels = [], []
    total = num_batches if num_batches is not None else len(loader) if hasattr(loader, "__len__") else None
    batches = tqdm(itertools.islice(loader, num_batches), total=total, desc=progress, leave=False,
                   file=sys.stderr, disable=None, dynamic_ncols=True)
    for logits, y in split_outputs(net, batches, device, transform):
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
    return int((~topk_correct(scores, labels, k)).sum())


def evaluate_snapshots(
    infos: list[SnapshotInfo],
    model: Any,
    datamodule: Any,
    split: str,
    device: torch.device,
    limit_batches: int | float = 1.0,
) -> tuple[list[ResultRow], list[ResultRow]]:
    """Per-snapshot rows (in training order) and ensemble-of-last-k rows (k = 1..n), on the whole split or on its
    first batches (``limit_batches``: a number of batches or a fraction, Lightning's rule,
    :func:`~wdlab.training.evaluation.limited_batches`).

    The snapshots are evaluated latest first, so the ensembles are running sums of softmax outputs
    (only one N x classes sum is kept in memory, however many snapshots there are).
    """
    num_classes = int(datamodule.num_classes)
    loader = _loader(datamodule, split)
    num_batches = None if every_batch(limit_batches) else limited_batches(len(loader), limit_batches)
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
        probs, labels = _predict(net, loader, transform, device, num_classes, info, f"[{k}/{n}] {info.name}",
                                 num_batches)
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
    with atomic_write(path, "w", newline="") as f:
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
