"""The training layer's error for a checkpoint that cannot be resumed from (re-exported by ``checkpoints``)."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file, the problem and the fix."""
