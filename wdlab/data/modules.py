"""The data path every wdlab datamodule shares (:class:`ImageDataModule`); the datamodule of each image source
(CIFAR-10, ImageNet32x32, MNIST, Fashion-MNIST, the built-in set) is in :mod:`wdlab.data.sources`.

All of them share one airbench-style data path (the in-memory, batched, on-device loading of Keller
Jordan's airbench CIFAR-10 speedruns, here for every dataset):

* the images live in memory as ONE uint8 ``(N, 3, 32, 32)`` tensor (a read-only numpy memmap for
  ImageNet32x32) and the labels as one int64 tensor; :class:`~wdlab.data.tensors.BatchTensorDataset`
  serves each batch with a single gather through ``__getitems__``, so a standard ``DataLoader``
  (which Lightning can still give a ``DistributedSampler`` under DDP) does no per-image Python work;
* augmentation (4-pixel zero-pad random crop + horizontal flip where flips preserve the label, training
  batches only) and normalization run batched on the device in :meth:`on_after_batch_transfer`;
* with ``on_device`` (automatic on CUDA) the arrays are copied to the GPU once and every batch is
  gathered there (:class:`~wdlab.data.device.DataPlacement` decides and holds the copies): no host
  work, no host-to-device copy and no host synchronisation per step, the same batches in the same
  order; when the data would not fit, the host loader serves pinned batches that Lightning copies
  asynchronously;
* the training order is a pure function of ``(seed, epoch)`` (:class:`~wdlab.data.sampling.EpochShuffleSampler`,
  a ``DistributedSampler`` that shards by rank under DDP) and the training loader
  (:class:`~wdlab.data.sampling.ResumableDataLoader`) saves its position in Lightning checkpoints, so a
  run resumed mid-epoch sees exactly the batches it would have seen; augmentation draws from torch's
  global RNG on the batch's device, which ``seed_everything`` and the checkpointed RNG state
  (:class:`~wdlab.training.ImageClassifier`) reproduce. No loader draws from the global RNG.

Attributes read by the training module (valid after ``setup("fit")``; for the built-in dataset
right after construction): ``num_classes``, ``num_train`` (training images actually used, after
the validation split), ``batch_size`` (per device), ``mean`` / ``std`` (per channel, in units of
[0, 1], from the full official training set).

A subclass adds its own arguments and passes the shared ones through ``**kwargs``: jsonargparse follows
``super().__init__(**kwargs)`` to this class's signature, so ``--data.help CLASS`` and ``--print_config``
list every ``--data.*`` option with its type and default. The base class saves all of them as hyperparameters.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from wdlab._checks import check_int
from wdlab._device import auto_on_cuda, is_cuda
from wdlab.data.augment import normalize, random_crop_flip
from wdlab.data.device import DataPlacement, DeviceBatchLoader, ResumableDeviceLoader
from wdlab.data.sampling import EpochShuffleSampler, ResumableDataLoader, seeded_generator
from wdlab.data.tensors import BatchTensorDataset, DatasetArrays, collate_batch, split_indices

__all__ = ["ImageDataModule"]


def _run_seed() -> int:
    """The run's global seed, as ``seed_everything`` recorded it (LightningCLI seeds before it builds the data)."""
    # PL_GLOBAL_SEED: the environment variable through which Lightning's seed_everything hands the seed
    # to worker processes (lightning.fabric.utilities.seed); there is no other accessor.
    value = os.environ.get("PL_GLOBAL_SEED")
    if value is None:
        raise ValueError("data seed: null follows seed_everything, which is not set: set seed_everything or data seed")
    return int(value)


class ImageDataModule(L.LightningDataModule):
    """Shared data path; subclasses implement :meth:`_load` (returning the arrays and statistics).

    Options every datamodule shares (all ``--data.<name>`` on the command line):

    * ``channels_last``: batches in channels-last (NHWC) memory format, and the network of
      :class:`~wdlab.training.ImageClassifier` follows. ``None`` (default): on for batches on a CUDA
      device (tensor-core convolutions are NHWC), off elsewhere. ``True`` is worth trying on CPU too
      (the quickstart config sets it: ~25 % faster convolutions there).
    * ``on_device``: where the dataset lives during training and evaluation. ``None`` (default):
      on the GPU when training on CUDA and the images take at most 25 % of the free device memory,
      else in host memory with pinned batches; on CPU it changes nothing. ``True``: always on the
      training device (on CPU: the device-path loader over host memory, the same batches).
      ``False``: always the host ``DataLoader`` (what ``num_workers`` applies to).
    * ``seed``: the training order (and the host loaders' generator). ``None``: the run's global seed
      (``seed_everything``), so that a sweep's seeds vary the data order with the initialization.
    * ``val_split`` / ``train_subset`` / ``split_seed``: hold out a seeded random ``val_split`` of the
      training images for validation, then train on a seeded random ``train_subset`` of the rest (all of
      it when ``None``); both drawn with ``split_seed`` (``None``: ``seed``), so a fixed ``split_seed``
      keeps the same training and validation images in every run whatever its seed.
    """

    num_classes: int = 0
    image_shape: tuple[int, int, int] = (3, 32, 32)  # (channels, height, width) of one image
    padding: int = 4  # the paper's "regular augmentation": 4-pixel zero padding, random 32x32 crop
    flip: bool = True  # random horizontal flips (the paper's too); off where a mirror image changes the class

    def __init__(
        self,
        batch_size: int = 128,
        val_split: int = 0,
        eval_batch_size: int | None = None,
        augment: bool = True,
        seed: int | None = 0,
        num_workers: int = 0,
        channels_last: bool | None = None,
        on_device: bool | None = None,
        train_subset: int | None = None,
        split_seed: int | None = None,
    ) -> None:
        super().__init__()
        if on_device is not None and not isinstance(on_device, bool):
            raise ValueError(f"on_device must be true, false or null (automatic), got {on_device!r}")
        self.on_device = on_device
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.eval_batch_size = (
            self.batch_size if eval_batch_size is None else check_int("eval_batch_size", eval_batch_size, 1)
        )
        self.val_split = check_int("val_split", val_split, 0)
        self.augment = bool(augment)
        self.seed = _run_seed() if seed is None else int(seed)
        self.split_seed = self.seed if split_seed is None else int(split_seed)
        self.train_subset = None if train_subset is None else check_int("train_subset", train_subset, 1)
        self.num_workers = check_int("num_workers", num_workers, 0)
        if channels_last is not None and not isinstance(channels_last, bool):
            raise ValueError(f"channels_last must be true, false or null (automatic), got {channels_last!r}")
        self.channels_last = channels_last
        self.num_train: int | None = None
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        self.train_dataset: BatchTensorDataset | None = None
        self.val_dataset: BatchTensorDataset | None = None
        self.test_dataset: BatchTensorDataset | None = None
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._placement = DataPlacement()
        # Here rather than in each subclass: called from this frame, Lightning collects the arguments of
        # every __init__ in the chain, so the saved hyperparameters hold the shared options' defaults too.
        self.save_hyperparameters()

    @property
    def data_on_device(self) -> bool | None:
        """Whether the loaders serve batches from device-resident data (the device path): None until a
        trainer asks for a loader, then decided once for that trainer (see :meth:`_resolve_placement`)."""
        return self._placement.data_on_device

    # ----------------------------------------------------------------------------------- loading
    def _load(self) -> DatasetArrays:
        """The whole dataset: train and test arrays, and the training set's channel mean and std."""
        raise NotImplementedError

    def _install(self, data: DatasetArrays) -> None:
        train_images, train_labels, test_images, test_labels, mean, std = data
        n = len(train_labels)
        if self.val_split:
            if self.val_split >= n:
                raise ValueError(f"val_split={self.val_split} leaves no training images (the training set has {n})")
            train_idx, val_idx = split_indices(n, self.val_split, self.split_seed)
            self.val_dataset = BatchTensorDataset(train_images, train_labels, val_idx)
        else:
            train_idx = None
            self.val_dataset = None
        if self.train_subset is not None:
            pool = np.arange(n) if train_idx is None else train_idx
            if self.train_subset > len(pool):
                raise ValueError(
                    f"train_subset={self.train_subset} is more than the {len(pool)} training images left after "
                    f"val_split={self.val_split}: choose at most {len(pool)}"
                )
            # its own stream ([split_seed, n, 1]): the subset does not change the validation split
            chosen = np.random.default_rng([self.split_seed, n, 1]).permutation(len(pool))[: self.train_subset]
            train_idx = np.sort(pool[chosen])
        self.train_dataset = BatchTensorDataset(train_images, train_labels, train_idx)
        self.test_dataset = BatchTensorDataset(test_images, test_labels)
        self.num_train = len(self.train_dataset)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._norm = {}
        self._placement.reset()

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self._install(self._load())

    # ------------------------------------------------------------------------------- dataloaders
    def _require(self, dataset: BatchTensorDataset | None) -> BatchTensorDataset:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not been called")
        return dataset

    def _trainer_device(self) -> torch.device | None:
        trainer = self.trainer
        strategy = getattr(trainer, "strategy", None) if trainer is not None else None
        return getattr(strategy, "root_device", None)

    def _resolve_placement(self) -> torch.device | None:
        """The device holding the data for the loaders (the device path), or None (host loader):
        decided once per attached trainer, for all splits together (:meth:`DataPlacement.resolve`)."""
        datasets = [d for d in (self.train_dataset, self.val_dataset, self.test_dataset) if d is not None]
        arrays = [d.images for d in datasets] + [d.labels for d in datasets]
        return self._placement.resolve(self.trainer, self._trainer_device(), self.on_device, arrays, rank_zero_info)

    def _loader(
        self, dataset: BatchTensorDataset, train: bool, device_path: bool = True, shard: bool = True
    ) -> DataLoader | DeviceBatchLoader:
        trainer = self.trainer
        world_size, rank = getattr(trainer, "world_size", 1), getattr(trainer, "global_rank", 0)
        if not shard:
            world_size, rank = 1, 0
        placement = self._resolve_placement() if device_path else None
        if placement is not None:
            images = self._placement.copy(dataset.images, placement)
            labels = self._placement.copy(dataset.labels, placement)
            if train:
                sampler = EpochShuffleSampler(dataset, seed=self.seed, num_replicas=world_size, rank=rank)
                return ResumableDeviceLoader(dataset, images, labels, sampler=sampler, batch_size=self.batch_size)
            # what Lightning injects into an evaluation DataLoader under DDP (it cannot into this loader)
            eval_sampler: Any = (
                DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
                if world_size > 1
                else SequentialSampler(dataset)
            )
            return DeviceBatchLoader(dataset, images, labels, sampler=eval_sampler, batch_size=self.eval_batch_size)
        device = self._trainer_device()
        common: dict[str, Any] = {
            "collate_fn": collate_batch,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "generator": seeded_generator(self.seed),
            # pinned batches: Lightning's copy to the GPU is then asynchronous (non_blocking)
            "pin_memory": is_cuda(device),
        }
        if not train:
            return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, drop_last=False, **common)
        # Shard by rank ourselves (Lightning keeps a DistributedSampler it is given), so that the
        # global batches are the same for any number of processes.
        sampler = EpochShuffleSampler(dataset, seed=self.seed, num_replicas=world_size, rank=rank)
        return ResumableDataLoader(dataset, sampler=sampler, batch_size=self.batch_size, **common)

    def train_dataloader(self) -> DataLoader | DeviceBatchLoader:
        return self._loader(self._require(self.train_dataset), train=True)

    def val_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """The held-out part of the training set if ``val_split > 0``, else the test set (as the paper)."""
        dataset = self.val_dataset if self.val_split else self.test_dataset
        return self._loader(self._require(dataset), train=False)

    def whole_val_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """The evaluation set of :meth:`val_dataloader`, whole and in order on every DDP rank.

        For callbacks that evaluate outside Lightning's validation loop (the anytime snapshots): the
        device path shards its evaluation loaders by rank itself, as Lightning would shard a host
        ``DataLoader``; this one is never sharded.
        """
        dataset = self.val_dataset if self.val_split else self.test_dataset
        return self._loader(self._require(dataset), train=False, shard=False)

    def test_dataloader(self) -> DataLoader | DeviceBatchLoader:
        return self._loader(self._require(self.test_dataset), train=False)

    def whole_test_dataloader(self) -> DataLoader | DeviceBatchLoader:
        """The test set, whole and in order on every DDP rank (as :meth:`whole_val_dataloader`)."""
        return self._loader(self._require(self.test_dataset), train=False, shard=False)

    def predict_dataloader(self) -> DataLoader | DeviceBatchLoader:
        # Always the host loader: Lightning tracks prediction indices through a DataLoader's sampler.
        return self._loader(self._require(self.test_dataset), train=False, device_path=False)

    # -------------------------------------------------------------------- on-device augmentation
    def _norm_tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean is None or self.std is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not been called (mean/std unknown)")
        if device not in self._norm:
            self._norm[device] = (
                torch.tensor(self.mean, dtype=torch.float32, device=device),
                torch.tensor(self.std, dtype=torch.float32, device=device),
            )
        return self._norm[device]

    def transform_batch(self, batch: Any, training: bool) -> Any:
        """uint8 batch -> (augmented if ``training`` and ``augment``) normalized float batch."""
        images, labels = batch
        if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8):
            return batch  # already transformed (or not ours): leave it alone
        if training and self.augment:
            images = random_crop_flip(images, padding=self.padding, flip=self.flip)
        mean, std = self._norm_tensors(images.device)
        channels_last = auto_on_cuda(self.channels_last, images.device)
        return normalize(images, mean, std, channels_last=channels_last), labels

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        training = bool(trainer is not None and trainer.training)
        return self.transform_batch(batch, training)
