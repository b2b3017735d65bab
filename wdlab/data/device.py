"""Device-resident datasets: the airbench data path. No Lightning imports here.

The whole uint8 image tensor and the labels are copied to the GPU once; a batch is then one
``index_select`` on the device, so loading costs no host work, no host-to-device copy and no
host synchronisation per step. The order comes from the very same samplers as the host loaders
(:class:`~wdlab.data.sampling.EpochShuffleSampler` for training, sequential or
``DistributedSampler(shuffle=False)`` for evaluation), evaluated once per epoch on the host and
copied to the device in one transfer: the same images in the same batches as
:class:`~wdlab.data.sampling.ResumableDataLoader`, with the same resume position in checkpoints.

Where the data lives is decided by :class:`DataPlacement` (the datamodules hold one): CIFAR-10
(150 MB as uint8) and ImageNet32x32 (3.9 GB) fit on any current datacenter GPU; the automatic choice
falls back to pinned host memory when the data would take more than :data:`MAX_DEVICE_FRACTION` of
the free device memory (:func:`fits_on_device`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from wdlab._device import is_cuda
from wdlab.data.sampling import EpochShuffleSampler, ServedBatches
from wdlab.data.tensors import Batch, BatchTensorDataset

__all__ = [
    "MAX_DEVICE_FRACTION",
    "DataPlacement",
    "DeviceBatchLoader",
    "ResumableDeviceLoader",
    "fits_on_device",
    "to_device",
    "total_nbytes",
]

#: Automatic placement keeps the dataset to at most this share of the device's free memory, leaving
#: the rest for the network's weights, optimizer state and activations.
MAX_DEVICE_FRACTION = 0.25


def fits_on_device(nbytes: int, device: torch.device, fraction: float = MAX_DEVICE_FRACTION) -> bool:
    """Whether ``nbytes`` of data may be held on ``device`` (CUDA: at most ``fraction`` of its free memory)."""
    if not is_cuda(device):
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


def to_device(array: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """One tensor on ``device`` holding ``array`` (a tensor, a numpy array or a read-only memmap).

    On the host this copies nothing: a tensor stays as it is, a numpy array / memmap is wrapped
    (pages are read on first use). To a GPU it is one transfer.
    """
    if isinstance(array, np.ndarray):
        with warnings.catch_warnings():  # a read-only memmap: torch warns that the tensor is not writable
            warnings.simplefilter("ignore", UserWarning)
            array = torch.from_numpy(array)
    return array.to(device)


class DeviceBatchLoader:
    """Iterates ``(uint8 images, int64 labels)`` batches gathered on the device where the data lives.

    Args:
        dataset: the host dataset (its length, and its ``indices`` if it is a subset such as the
            training part of a validation split); only its size and subset are used.
        images, labels: the full arrays ``dataset`` indexes into, already on the target device
            (see :func:`to_device`); shared between the splits that use the same arrays.
        sampler: yields the dataset positions of one epoch in order (it decides order and DDP shard).
        batch_size: consecutive positions form a batch; the last one may be smaller (``drop_last=False``,
            as the host loaders).

    ``sampler`` and ``batch_sampler = None`` are attributes because Lightning looks for them (to call
    ``set_epoch`` at every epoch start and to tell whether a loader shuffles).
    """

    batch_sampler = None

    def __init__(
        self,
        dataset: BatchTensorDataset,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        sampler: Sampler[int],
        batch_size: int,
    ) -> None:
        if images.device != labels.device:
            raise ValueError(f"images on {images.device} but labels on {labels.device}")
        self.dataset = dataset
        self.images = images
        self.labels = labels
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.device = images.device
        self._subset = None if dataset.indices is None else dataset.indices.to(self.device)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        return self._gather(self._order())

    def _order(self) -> torch.Tensor:
        """This epoch's rows of ``images`` in order, on the device (one host-to-device copy per epoch)."""
        positions = torch.as_tensor(list(self.sampler), dtype=torch.int64)
        if self.device.type == "cuda":
            positions = positions.pin_memory().to(self.device, non_blocking=True)
        else:
            positions = positions.to(self.device)
        return positions if self._subset is None else self._subset.index_select(0, positions)

    def _gather(self, rows: torch.Tensor) -> Iterator[Batch]:
        for start in range(0, rows.shape[0], self.batch_size):
            idx = rows[start : start + self.batch_size]
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)


class ResumableDeviceLoader(ServedBatches, DeviceBatchLoader):
    """The training loader of the device path: :class:`DeviceBatchLoader` over an
    :class:`~wdlab.data.sampling.EpochShuffleSampler` whose position survives a checkpoint, with the
    ``state_dict()`` / ``load_state_dict()`` of :class:`~wdlab.data.sampling.ResumableDataLoader`
    (the two are interchangeable: a run may resume on the other path)."""

    def __init__(
        self,
        dataset: BatchTensorDataset,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        sampler: EpochShuffleSampler,
        batch_size: int,
    ) -> None:
        if not isinstance(sampler, EpochShuffleSampler):
            raise TypeError(f"ResumableDeviceLoader needs an EpochShuffleSampler, got {type(sampler).__name__}")
        DeviceBatchLoader.__init__(self, dataset, images, labels, sampler=sampler, batch_size=batch_size)
        self._reset_position()

    def __iter__(self) -> Iterator[Batch]:
        return self._batches()

    def _batches(self) -> Iterator[Batch]:
        # A generator: nothing runs before the first batch is requested, i.e. after set_epoch().
        self._begin_epoch()
        for batch in self._gather(self._order()):
            self._served += 1
            yield batch


def total_nbytes(arrays: Sequence[Any]) -> int:
    """Total bytes of distinct arrays (tensors or numpy arrays), each counted once."""
    seen: dict[int, int] = {}
    for array in arrays:
        if isinstance(array, torch.Tensor):
            seen[id(array)] = array.numel() * array.element_size()
        else:
            seen[id(array)] = int(np.asarray(array).nbytes)
    return sum(seen.values())


class DataPlacement:
    """Where a datamodule's arrays live while its loaders serve them, and their copies on that device.

    :meth:`resolve` decides once per ``owner`` (the trainer the loaders are built for), for all splits
    together, so that the training and evaluation loaders of one run never disagree. ``on_device``:
    ``True``, the trainer's device; ``False``, the host loader; ``None`` (automatic), the device only
    when it is CUDA and the arrays fit (:func:`fits_on_device`), else the host loader with pinned batches.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the decision and the copies (the datamodule loaded new arrays)."""
        self.device: torch.device | None = None
        self._owner: object | None = None
        # keyed by id(array): splits that share an array (a validation split) share its device copy
        self._copies: dict[tuple[int, torch.device], torch.Tensor] = {}

    @property
    def data_on_device(self) -> bool | None:
        """Whether the loaders serve batches from device-resident data; None until :meth:`resolve` decided."""
        return None if self._owner is None else self.device is not None

    def resolve(
        self,
        owner: object | None,
        device: torch.device | None,
        on_device: bool | None,
        arrays: Sequence[Any],
        note: Callable[[str], None] = print,
    ) -> torch.device | None:
        """The device holding the data for ``owner``'s loaders, or None (host loader).

        ``device``: the trainer's device; ``arrays``: every array the loaders index (counted once each);
        ``note`` receives the one-line reason when the automatic choice falls back to host memory.
        Without an owner (a datamodule used outside a trainer, as ``wdlab ensemble`` does) it is None,
        undecided.
        """
        if owner is None:
            return None
        if owner is self._owner:
            return self.device
        placement: torch.device | None = None
        if device is not None and on_device is not False:
            if on_device is True:
                placement = device
            elif is_cuda(device):
                nbytes = total_nbytes(arrays)
                if fits_on_device(nbytes, device):
                    placement = device
                else:
                    note(
                        f"wdlab: the dataset ({nbytes / 2**30:.1f} GiB) would take more than "
                        f"{MAX_DEVICE_FRACTION:.0%} of the free memory of {device}: serving pinned batches from "
                        "host memory instead (--data.on_device true forces the device)"
                    )
        self.device, self._owner = placement, owner
        return placement

    def copy(self, array: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
        """``array`` on ``device`` (:func:`to_device`), made once per array and device."""
        key = (id(array), device)
        if key not in self._copies:
            self._copies[key] = to_device(array, device)
        return self._copies[key]
