"""Datasets for wdlab: CIFAR-10, ImageNet32x32, MNIST, Fashion-MNIST and a built-in synthetic dataset.

The readers (:mod:`~wdlab.data.cifar`, :mod:`~wdlab.data.imagenet32`, :mod:`~wdlab.data.mnist`), the generator
(:mod:`~wdlab.data.builtin`) and the batched augmentation (:mod:`~wdlab.data.augment`) are plain
numpy/torch; only :mod:`~wdlab.data.modules` and :mod:`~wdlab.data.sources` know about Lightning. Nothing is
ever downloaded: a missing or broken dataset raises :class:`DatasetError` with a one-line explanation.

The datamodules are imported lazily, so ``import wdlab.data.cifar`` (or any reader) does not
import Lightning.
"""

from typing import TYPE_CHECKING, Any

from wdlab.data._files import channel_stats
from wdlab.data.augment import normalize, random_crop_flip
from wdlab.data.builtin import BuiltinSpec, make_builtin_dataset
from wdlab.data.cifar import CIFARArrays, find_cifar10, load_cifar10
from wdlab.data.errors import DatasetError
from wdlab.data.imagenet32 import (
    ImageNet32Cache,
    build_imagenet32_cache,
    find_imagenet32,
    load_imagenet32_cache,
    read_imagenet32_file,
)
from wdlab.data.mnist import MNISTArrays, find_mnist, load_mnist, read_idx_images, read_idx_labels, to_rgb32
from wdlab.data.sampling import EpochShuffleSampler, ResumableDataLoader
from wdlab.data.tensors import BatchTensorDataset, DatasetArrays, collate_batch

__all__ = [
    "BatchTensorDataset",
    "BuiltinDataModule",
    "BuiltinSpec",
    "CIFAR10DataModule",
    "CIFARArrays",
    "DatasetArrays",
    "DatasetError",
    "EpochShuffleSampler",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageNet32Cache",
    "ImageNet32DataModule",
    "MNISTArrays",
    "MNISTDataModule",
    "ResumableDataLoader",
    "build_imagenet32_cache",
    "channel_stats",
    "collate_batch",
    "find_cifar10",
    "find_imagenet32",
    "find_mnist",
    "load_cifar10",
    "load_imagenet32_cache",
    "load_mnist",
    "make_builtin_dataset",
    "normalize",
    "random_crop_flip",
    "read_idx_images",
    "read_idx_labels",
    "read_imagenet32_file",
    "to_rgb32",
]

_LAZY = {"BuiltinDataModule", "CIFAR10DataModule", "FashionMNISTDataModule", "ImageDataModule",
         "ImageNet32DataModule", "MNISTDataModule"}  # named here so that Lightning loads only on use

if TYPE_CHECKING:
    from wdlab.data.modules import ImageDataModule
    from wdlab.data.sources import (
        BuiltinDataModule,
        CIFAR10DataModule,
        FashionMNISTDataModule,
        ImageNet32DataModule,
        MNISTDataModule,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from wdlab.data import modules, sources

        return getattr(modules if name == "ImageDataModule" else sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
