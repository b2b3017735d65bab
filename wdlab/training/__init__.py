"""Training: the LightningModule composing wdlab.optim, wdlab.models and wdlab.data."""

from wdlab.training.metrics import ErrorRate
from wdlab.training.module import ImageClassifier

__all__ = ["ErrorRate", "ImageClassifier"]
