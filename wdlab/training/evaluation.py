"""Evaluation: top-k correctness and the one whole-split evaluation loop.

* :func:`topk_correct` is the top-k rule every error rate in wdlab uses (training and evaluation
  metrics, anytime snapshots, snapshot ensembles): ties between scores go to the lower class index.
* :func:`split_outputs` runs a network over every batch of a loader in eval mode without gradients
  and yields ``(outputs, labels)`` on the device; :func:`evaluate_error` (the anytime snapshots,
  :class:`TestCurve`) and the snapshot ensembles build on it.
* :class:`TestCurve`: the test error at every validation pass, for runs that validate on a held-out split.
* :func:`limited_batches` is Lightning's ``limit_{val,test}_batches`` rule, for the evaluations that run outside
  Lightning's loops (:class:`TestCurve`, the snapshot ensembles).
* :func:`evaluate_validation_step` evaluates any LightningModule with its own ``validation_step``
  (the anytime snapshots of modules that are not wdlab classifiers): what the step logs, averaged.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.data import extract_batch_size
from torch import nn

from wdlab.training.exact import capture_rng_states, restore_rng_states

__all__ = ["TestCurve", "evaluate_error", "evaluate_validation_step", "every_batch", "limited_batches",
           "split_outputs", "topk_correct"]

Batch = tuple[torch.Tensor, torch.Tensor]


def topk_correct(scores: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Per row of ``scores`` ``(N, C)``: whether ``target`` ``(N,)`` is among its ``min(k, C)`` highest scores.

    k = 1 is ``argmax`` (ties go to the lower class index, as in torchmetrics); the result stays on
    the device (no host synchronisation).
    """
    target = target.to(torch.int64)
    if k == 1:
        return scores.argmax(dim=1) == target
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return (top == target.unsqueeze(1)).any(dim=1)


def every_batch(limit: int | float) -> bool:
    """Whether a ``limit_{val,test}_batches`` value lets every batch through: the float 1.0 (the int 1 is one
    batch), so a loader without a length needs no count."""
    return isinstance(limit, float) and limit == 1.0


def limited_batches(num_batches: int, limit: int | float) -> int:
    """How many of a loader's ``num_batches`` batches Lightning's ``limit_{val,test}_batches`` value lets through.

    An int counts batches, ``min(limit, num_batches)``; a float in [0, 1] is a fraction, ``int(num_batches *
    limit)`` (1.0: every batch); a float above 1 with no fractional part counts batches, as the Trainer reads it.
    A fraction that leaves less than one batch is refused (as Lightning refuses it), not rounded to nothing.
    """
    if isinstance(limit, float) and limit > 1 and limit.is_integer():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0 or (
            isinstance(limit, float) and not limit <= 1):
        raise ValueError(f"batch limit {limit!r}: use a number of batches (an integer) or a fraction in [0, 1]")
    count = min(limit, num_batches) if isinstance(limit, int) else int(num_batches * limit)
    if count == 0 and limit > 0 and num_batches > 0:
        raise ValueError(f"batch limit {limit!r} of {num_batches} batches leaves no batch: use at least "
                         f"{1 / num_batches:.4g}, or a number of batches")
    return count


def split_outputs(
    net: nn.Module,
    loader: Iterable[Any],
    device: torch.device,
    transform: Callable[[Batch], Batch] | None = None,
    forward_context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(outputs, labels)`` of ``net`` for every batch of ``loader``, in eval mode, without gradients.

    Each batch is moved to ``device`` and passed through ``transform`` (the datamodule's evaluation
    transform); ``forward_context`` wraps the forward pass (e.g. the trainer's precision). Training
    mode is restored afterwards. Nothing is drawn from any random stream.
    """
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                images = batch[0].to(device, non_blocking=True)
                labels = batch[1].to(device, non_blocking=True)
                if transform is not None:
                    images, labels = transform((images, labels))
                with forward_context():
                    outputs = net(images)
                yield outputs, labels
    finally:
        net.train(was_training)


def evaluate_error(trainer: L.Trainer, pl_module: L.LightningModule, split: str = "val",
                   limit_batches: int | float = 1.0) -> tuple[float, float]:
    """Top-1 and top-5 error (fractions) of ``pl_module`` on the datamodule's evaluation set (``split="val"``:
    the held-out split, or the test set without one) or on its test set (``split="test"``): on its first
    :func:`limited_batches` ``(len(loader), limit_batches)`` batches (default: every batch).

    Runs under the trainer's precision; it draws nothing from any random stream, so it does not
    change the course of the run. Every rank evaluates the whole set (no collective needed; the
    results are identical).
    """
    datamodule = trainer.datamodule
    if datamodule is None or not hasattr(datamodule, "transform_batch"):
        raise ValueError("evaluating an error rate needs a wdlab datamodule (with transform_batch)")
    if split not in ("val", "test"):
        raise ValueError(f"split {split!r}: use 'val' or 'test'")
    device = pl_module.device
    wrong = torch.zeros(2, dtype=torch.int64, device=device)  # counted on the device, read back once
    total = 0
    # The whole set on every rank (not the DDP shard Lightning's validation uses), on the data path.
    whole = f"whole_{split}_dataloader"
    loader = getattr(datamodule, whole if hasattr(datamodule, whole) else f"{split}_dataloader")()
    if not every_batch(limit_batches):
        loader = itertools.islice(loader, limited_batches(len(loader), limit_batches))
    outputs = split_outputs(
        pl_module,
        loader,
        device,
        transform=lambda batch: datamodule.transform_batch(batch, training=False),
        forward_context=trainer.precision_plugin.forward_context,
    )
    for logits, labels in outputs:
        logits = logits.float()
        wrong += torch.stack([(~topk_correct(logits, labels, 1)).sum(), (~topk_correct(logits, labels, 5)).sum()])
        total += len(labels)
    if total == 0:
        raise ValueError("the evaluation set is empty")
    wrong1, wrong5 = wrong.tolist()
    return wrong1 / total, wrong5 / total


def evaluate_validation_step(
    trainer: L.Trainer, pl_module: L.LightningModule, loaders: Iterable[Any]
) -> dict[str, float]:
    """Run ``pl_module.validation_step`` over every batch of ``loaders`` (in eval mode, without gradients,
    under the trainer's precision) and return what it logs, each value averaged over the batches weighted by
    their size (Lightning's epoch-level mean; a logged torchmetrics ``Metric`` is computed, then reset).
    A step that logs nothing but returns a scalar contributes it as ``val_loss``.

    Outside Lightning's validation loop: no hooks, loop counters or logged metrics of the run change, and the
    random streams are put back afterwards, so a snapshot does not change the course of training. Under
    DDP the sums are reduced over the ranks (every rank must call it).
    """
    loaders = list(loaders)
    sums: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    metrics: dict[str, Any] = {}
    batch_size_now: list[int] = [1]

    def collect(name: str, value: Any, *args: Any, batch_size: int | None = None, **kwargs: Any) -> None:
        if isinstance(value, Mapping):  # log_dict-style values are not expected here; keep the scalars
            return
        if hasattr(value, "compute") and hasattr(value, "reset"):  # a torchmetrics Metric: computed at the end
            metrics[name] = value
            return
        size = batch_size if batch_size is not None else batch_size_now[0]
        value = torch.as_tensor(value, dtype=torch.float64, device=pl_module.device).detach()
        sums[name] = sums.get(name, torch.zeros((), dtype=torch.float64, device=pl_module.device)) + value * size
        weights[name] = weights.get(name, 0.0) + size

    def log_dict(values: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        for name, value in values.items():
            collect(name, value, **{k: v for k, v in kwargs.items() if k == "batch_size"})

    takes_index = len(loaders) > 1 and "dataloader_idx" in inspect.signature(pl_module.validation_step).parameters
    rng = capture_rng_states()
    was_training = pl_module.training
    pl_module.log, pl_module.log_dict = collect, log_dict  # instance attributes shadow the methods
    pl_module.eval()
    try:
        with torch.no_grad(), trainer.precision_plugin.val_step_context():
            for index, loader in enumerate(loaders):
                for batch_idx, batch in enumerate(loader):
                    try:
                        batch_size_now[0] = extract_batch_size(batch)
                    except Exception:  # an unusual batch: weight 1
                        batch_size_now[0] = 1
                    batch = trainer.strategy.batch_to_device(batch, dataloader_idx=index)
                    extra = {"dataloader_idx": index} if takes_index else {}
                    out = pl_module.validation_step(batch, batch_idx, **extra)
                    if not sums and not metrics and isinstance(out, torch.Tensor) and out.numel() == 1:
                        collect("val_loss", out)
    finally:
        del pl_module.log, pl_module.log_dict
        pl_module.train(was_training)
        restore_rng_states(rng)
    names = sorted(sums)
    results: dict[str, float] = {}
    if names:
        totals = torch.stack([sums[n] for n in names] + [torch.tensor(weights[n], dtype=torch.float64,
                                                                      device=pl_module.device) for n in names])
        if trainer.world_size > 1:
            totals = trainer.strategy.reduce(totals, reduce_op="sum")
        half = len(names)
        results = {n: float(totals[i] / totals[half + i]) for i, n in enumerate(names)}
    for name, metric in metrics.items():
        results[name] = float(metric.compute())
        metric.reset()
    return results


class TestCurve(L.Callback):
    """The test error at every validation pass, logged as ``test/err`` and ``test/err5`` at that step: on the
    batches the run's test uses (``trainer.limit_test_batches`` applies, as in Lightning's test loop).

    For runs that choose on a held-out split (``val_split > 0``): their per-epoch ``val/err`` is the held-out
    error and the test set is otherwise evaluated once, after training; a learning curve of the test error
    (e.g. test error against training loss) needs it at every validation. Without a held-out split the
    validation pass already is the test set, and the callback refuses to run twice over it. It draws nothing
    from any random stream, so the run's course is the same with and without it.

        wdlab fit --config X --data.init_args.val_split 5000 --trainer.callbacks+=wdlab.training.TestCurve
    """

    __test__ = False  # not a pytest test class, whatever its name

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not getattr(trainer.datamodule, "val_split", 0):
            raise ValueError("TestCurve: this run has no held-out split (data val_split is 0), so its validation "
                             "pass is the test set already (val/err): drop the callback, or set a val_split")
        if trainer.limit_test_batches == 0:
            raise ValueError("TestCurve: trainer.limit_test_batches is 0, so there is no test batch to evaluate: "
                             "drop the callback, or the limit")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        err, err5 = evaluate_error(trainer, pl_module, split="test", limit_batches=trainer.limit_test_batches)
        # logged like the validation metrics (same step), not as a step of its own
        pl_module.log_dict({"test/err": err, "test/err5": err5}, on_epoch=True)
