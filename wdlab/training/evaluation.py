"""Evaluation: top-k correctness and the one whole-split evaluation loop.

* :func:`topk_correct` is the top-k rule every error rate in wdlab uses (training and evaluation
  metrics, anytime snapshots, snapshot ensembles): ties between scores go to the lower class index.
* :func:`split_outputs` runs a network over every batch of a loader in eval mode without gradients
  and yields ``(outputs, labels)`` on the device; :func:`evaluate_error` (the anytime snapshots)
  and the snapshot ensembles build on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lightning as L
import torch
from torch import nn

__all__ = ["evaluate_error", "split_outputs", "topk_correct"]

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


def evaluate_error(trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[float, float]:
    """Top-1 and top-5 error (fractions) of ``pl_module`` on the datamodule's evaluation set.

    Runs under the trainer's precision; it draws nothing from any random stream, so it does not
    change the course of the run. Every rank evaluates the whole set (no collective needed; the
    results are identical).
    """
    datamodule = trainer.datamodule
    if datamodule is None or not hasattr(datamodule, "transform_batch"):
        raise ValueError("AnytimeSnapshots needs a wdlab datamodule (with transform_batch) to evaluate snapshots")
    device = pl_module.device
    wrong = torch.zeros(2, dtype=torch.int64, device=device)  # counted on the device, read back once
    total = 0
    # The whole set on every rank (not the DDP shard Lightning's validation uses), on the data path.
    loader = datamodule.whole_val_dataloader() if hasattr(datamodule, "whole_val_dataloader") else (
        datamodule.val_dataloader()
    )
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
