"""Training: the LightningModule composing wdlab.optim, wdlab.models and wdlab.data, and its callbacks."""

from wdlab.training.angular import AngularUpdateMonitor
from wdlab.training.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    Preempted,
    ResumableCheckpoint,
    check_checkpoint,
)
from wdlab.training.evaluation import TestCurve
from wdlab.training.metrics import ErrorRate
from wdlab.training.module import ImageClassifier
from wdlab.training.optimizers import configure_optimizers
from wdlab.training.snapshots import AnytimeSnapshots

__all__ = [
    "AngularUpdateMonitor",
    "AnytimeSnapshots",
    "AtomicCheckpointIO",
    "CheckpointError",
    "ErrorRate",
    "ImageClassifier",
    "Preempted",
    "ResumableCheckpoint",
    "TestCurve",
    "check_checkpoint",
    "configure_optimizers",
]
