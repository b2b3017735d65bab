"""The airbench-style in-memory dataset: one uint8 image tensor, one int64 label tensor.

``BatchTensorDataset.__getitems__`` serves a whole batch with one gather, so a standard
``DataLoader(batch_size=..., shuffle=...)`` does no per-image Python work, and Lightning can still
swap in a ``DistributedSampler`` under DDP. No Lightning imports here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from wdlab.data._files import channel_stats

__all__ = ["BatchTensorDataset", "DatasetArrays", "collate_batch", "split_indices"]

Batch = tuple[torch.Tensor, torch.Tensor]


class DatasetArrays(NamedTuple):
    """A whole dataset as a datamodule's ``_load`` returns it.

    Images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64 (torch tensors, or numpy arrays / read-only
    memmaps); ``mean`` / ``std`` per channel in units of [0, 1], from the full official training set.
    """

    train_images: torch.Tensor | np.ndarray
    train_labels: torch.Tensor | np.ndarray
    test_images: torch.Tensor | np.ndarray
    test_labels: torch.Tensor | np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_numpy(
        cls,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ) -> DatasetArrays:
        """In-memory numpy arrays as tensors (no copy); ``stats``: ``(mean, std)``, by default the training
        images' own (:func:`~wdlab.data._files.channel_stats`)."""
        mean, std = channel_stats(train_images) if stats is None else stats
        arrays = (torch.from_numpy(a) for a in (train_images, train_labels, test_images, test_labels))
        return cls(*arrays, mean, std)


def collate_batch(batch: Batch) -> Batch:
    """Pass-through collate function: ``__getitems__`` already returns the collated batch."""
    return batch


class BatchTensorDataset(Dataset):
    """Images ``(N, C, H, W)`` uint8 (a torch tensor, or a numpy array / read-only memmap) and labels.

    ``indices`` (optional) selects a subset without copying the images: item ``i`` of the dataset
    is row ``indices[i]`` of ``images``. Batches come back as ``(uint8 images, int64 labels)``.
    """

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        indices: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels) if isinstance(labels, np.ndarray) else labels)
        self.labels = self.labels.to(torch.int64)
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.labels) if self.indices is None else len(self.indices)

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if self.indices is not None:
            idx = self.indices[idx]
        if isinstance(self.images, torch.Tensor):
            images = self.images.index_select(0, idx)
        else:  # numpy array or memmap: one fancy-indexing read, then a zero-copy view
            images = torch.from_numpy(np.ascontiguousarray(self.images[idx.numpy()]))
        return images, self.labels.index_select(0, idx)

    def __getitem__(self, index: int) -> Batch:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]

    # A memmap must not be pickled by value when the DataLoader starts worker processes with
    # "spawn": send its path instead and reopen it on the other side.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        images = self.images
        filename = getattr(images, "filename", None) if isinstance(images, np.memmap) else None
        if filename and str(filename).endswith(".npy"):
            whole = np.load(filename, mmap_mode="r")
            if whole.shape == images.shape and whole.dtype == images.dtype:  # not a slice of the file
                state["images"] = ("__npy_memmap__", str(filename))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        images = state.get("images")
        if isinstance(images, tuple) and len(images) == 2 and images[0] == "__npy_memmap__":
            state["images"] = np.load(images[1], mmap_mode="r")
        self.__dict__.update(state)


def split_indices(n: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into (train, held-out) index arrays, each sorted.

    The permutation comes from ``np.random.default_rng([seed, n])`` (never a global RNG), so the
    same seed gives the same split on any machine.
    """
    if not 0 <= holdout < n:
        raise ValueError(f"val_split must be in [0, {n - 1}] for a training set of {n} images, got {holdout}")
    perm = np.random.default_rng([int(seed), int(n)]).permutation(n)
    return np.sort(perm[holdout:]), np.sort(perm[:holdout])
