"""Error rates as torchmetrics metrics (fractions in [0, 1], synchronized across DDP ranks)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from wdlab.training.evaluation import topk_correct


class ErrorRate(Metric):
    """Top-k error = 1 - top-k accuracy, micro-averaged over all samples (the paper's test error).

    Written out instead of ``torchmetrics.classification.MulticlassAccuracy`` because that one costs
    a host synchronisation per update on CUDA (its argument validation calls ``torch.unique`` on the
    labels and its top-1 statistics go through a ``bincount``): once per training step, that stalls
    the GPU queue (the host waits for every queued kernel before it can issue the next step: the cost of
    per-step ``.item()`` logging in Lightning #7093). Here an update is three device ops and two
    additions to device-resident counters; the only read-back is ``compute()`` at the epoch end.
    Ties between logits go to the lower class index (:func:`~wdlab.training.evaluation.topk_correct`).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    errors: torch.Tensor
    total: torch.Tensor

    def __init__(self, num_classes: int, top_k: int = 1) -> None:
        super().__init__()
        if num_classes < 1 or top_k < 1:
            raise ValueError(f"num_classes and top_k must be >= 1, got {num_classes} and {top_k}")
        self.num_classes = int(num_classes)
        self.top_k = min(int(top_k), self.num_classes)
        self.add_state("errors", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """``logits``: ``(N, num_classes)``; ``target``: ``(N,)`` class indices."""
        if logits.ndim != 2 or logits.shape[1] != self.num_classes or target.shape != logits.shape[:1]:
            raise ValueError(
                f"ErrorRate expects logits (N, {self.num_classes}) and targets (N,), got {tuple(logits.shape)} "
                f"and {tuple(target.shape)}"
            )
        self.errors += (~topk_correct(logits, target, self.top_k)).sum()
        self.total += target.numel()

    def compute(self) -> torch.Tensor:
        return self.errors.double().div(self.total.clamp(min=1)).float()
