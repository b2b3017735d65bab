"""Error rates as torchmetrics metrics (fractions in [0, 1], synchronized across DDP ranks)."""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassAccuracy


class ErrorRate(MulticlassAccuracy):
    """Top-k error = 1 - top-k accuracy, micro-averaged over all samples (the paper's test error)."""

    def __init__(self, num_classes: int, top_k: int = 1) -> None:
        super().__init__(num_classes=num_classes, top_k=min(top_k, num_classes), average="micro")

    def compute(self) -> torch.Tensor:
        return 1.0 - super().compute()
