"""A training order that is a pure function of (seed, epoch), and a loader that can resume mid-epoch.

Exact resume needs the data order of the interrupted epoch and the position inside it:

* :class:`EpochShuffleSampler` is a ``DistributedSampler``: epoch ``e`` visits
  ``randperm(N, seed + e)`` (padded to a multiple of the number of replicas), replica ``r`` taking
  every ``num_replicas``-th index starting at ``r``. Nothing is carried from one epoch to the next,
  so no generator state has to be saved, and the same global batches are formed on one process
  and under DDP. Lightning calls ``set_epoch`` at every epoch start and, because it already is a
  ``DistributedSampler``, keeps it under DDP instead of swapping in its own.
* :class:`ResumableDataLoader` counts the batches it has served in the current epoch and exposes
  ``state_dict()`` / ``load_state_dict()`` (the protocol of torchdata's ``StatefulDataLoader``, which
  Lightning saves in its checkpoints). After a restore, the first iteration of the same epoch skips
  the batches already trained on, without loading them.

No Lightning imports here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

__all__ = ["EpochShuffleSampler", "ResumableDataLoader", "ServedBatches"]


class EpochShuffleSampler(DistributedSampler):
    """``DistributedSampler(shuffle=True, drop_last=False)`` that can start an epoch part-way through.

    ``start_at(epoch, position)`` makes the next iteration over ``epoch`` begin at ``position``
    (an index into this replica's share of the epoch); other epochs are unaffected. ``len()`` stays
    the full share, so progress counters that compare against it keep working.
    """

    def __init__(self, dataset: Dataset, *, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self._resume: tuple[int, int] | None = None

    def start_at(self, epoch: int, position: int) -> None:
        self._resume = (int(epoch), int(position))

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start = 0
        if self._resume is not None:
            epoch, position = self._resume
            self._resume = None  # a later epoch (or a re-run of this one) starts from the beginning
            if epoch == self.epoch:
                start = position
        return iter(indices[start:])


class ServedBatches:
    """The position of a resumable training loader: ``k`` batches of epoch ``e`` have been handed out.

    Shared by :class:`ResumableDataLoader` (host) and :class:`~wdlab.data.device.ResumableDeviceLoader`
    (device-resident data), so both save and restore the same ``{"epoch": e, "batches": k}`` and a run
    may resume on either path. The class using it has ``sampler`` (an :class:`EpochShuffleSampler`) and
    ``batch_size``, calls :meth:`_reset_position` at construction, :meth:`_begin_epoch` when the first
    batch of an epoch is requested and increments ``_served`` per batch handed out.
    """

    sampler: Any
    batch_size: Any
    _served: int
    _served_epoch: int

    def _reset_position(self) -> None:
        self._served = 0
        self._served_epoch = self.sampler.epoch

    def _begin_epoch(self) -> None:
        sampler: EpochShuffleSampler = self.sampler
        epoch = sampler.epoch
        resume = sampler._resume
        skipped = resume[1] // self.batch_size if resume is not None and resume[0] == epoch else 0
        self._served_epoch, self._served = epoch, skipped

    def state_dict(self) -> dict[str, int]:
        if self._served == 0:  # nothing handed out yet: the position is the start of the current epoch
            return {"epoch": self.sampler.epoch, "batches": 0}
        return {"epoch": self._served_epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        self._served_epoch, self._served = epoch, batches
        self.sampler.start_at(epoch, batches * self.batch_size)


class ResumableDataLoader(ServedBatches, DataLoader):
    """A ``DataLoader`` over an :class:`EpochShuffleSampler` whose position survives a checkpoint.

    ``state_dict()`` is ``{"epoch": e, "batches": k}``: ``k`` batches of epoch ``e`` have been handed
    out. ``load_state_dict`` arranges for the next iteration over epoch ``e`` to continue with batch
    ``k + 1``; the batches of an epoch are the same whether it was interrupted or not.
    """

    def __init__(self, dataset: Dataset, *, sampler: EpochShuffleSampler, batch_size: int, **kwargs: Any) -> None:
        if not isinstance(sampler, EpochShuffleSampler):
            raise TypeError(f"ResumableDataLoader needs an EpochShuffleSampler, got {type(sampler).__name__}")
        DataLoader.__init__(self, dataset, batch_size=batch_size, sampler=sampler, drop_last=False, **kwargs)
        self._reset_position()

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        # A generator: nothing below runs until the first batch is requested, i.e. after Lightning
        # has called set_epoch() for the epoch about to start.
        self._begin_epoch()
        for batch in DataLoader.__iter__(self):
            self._served += 1
            yield batch


def seeded_generator(seed: int) -> torch.Generator:
    """A private generator for a DataLoader, so that creating its iterator does not draw from the
    global RNG (DataLoader draws its workers' base seed from ``generator`` or, without one, from
    torch's global generator, which would shift the augmentation stream of a resumed run)."""
    return torch.Generator().manual_seed(int(seed))
