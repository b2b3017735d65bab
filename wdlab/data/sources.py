"""The datamodule of each image source: CIFAR-10, ImageNet32x32, MNIST, Fashion-MNIST and the built-in set.

Each one only finds and reads its files (the Lightning-free readers of :mod:`wdlab.data`) and says what
its images are; the data path they share -- in-memory batches, augmentation on the device, the resumable
training order -- is :class:`~wdlab.data.modules.ImageDataModule`'s, whose options every one of them
takes through ``**kwargs``.
"""

from __future__ import annotations

import os
from typing import Any

from wdlab._checks import check_int
from wdlab.data._files import channel_stats
from wdlab.data.builtin import BUILTIN_NUM_CLASSES, make_builtin_dataset
from wdlab.data.cifar import find_cifar10, load_cifar10
from wdlab.data.errors import DatasetError
from wdlab.data.imagenet32 import (
    IMAGENET32_NUM_CLASSES,
    build_imagenet32_cache,
    find_imagenet32,
    imagenet32_cache_is_valid,
    load_imagenet32_cache,
)
from wdlab.data.mnist import MNIST_NUM_CLASSES, find_mnist, load_mnist, to_rgb32
from wdlab.data.modules import ImageDataModule
from wdlab.data.tensors import DatasetArrays

__all__ = [
    "BuiltinDataModule",
    "CIFAR10DataModule",
    "FashionMNISTDataModule",
    "ImageNet32DataModule",
    "MNISTDataModule",
]


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 from the official python release in ``root`` (folder or ``cifar-10-python.tar.gz``).

    Validation uses the test set (as in the paper) unless ``val_split = n > 0``: then a seeded random
    ``n`` of the 50,000 training images are held out for ``val_dataloader``; ``test_dataloader``
    always uses the 10,000 test images. ``mean``/``std`` are the statistics of all training images.
    The other arguments are :class:`ImageDataModule`'s.
    """

    num_classes = 10

    def __init__(self, root: str, verify_checksums: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = os.fspath(root)
        self.verify_checksums = bool(verify_checksums)

    def prepare_data(self) -> None:
        find_cifar10(self.root)  # fail fast, in one line, if the release is not there

    def _load(self) -> DatasetArrays:
        data = load_cifar10(self.root, verify_checksums=self.verify_checksums)
        return DatasetArrays.from_numpy(data.train_images, data.train_labels, data.test_images, data.test_labels)


class ImageNet32DataModule(ImageDataModule):
    """ImageNet32x32 (1000 classes) from the official pickles or ``.npz`` files under ``root``.

    ``prepare_data()`` converts the release once into a memory-mappable uint8 cache in ``cache_dir``
    (default: ``root``); ``setup()`` memory-maps it, so DDP ranks share one copy via the page cache.
    The official validation set is the test set; ``val_split = n > 0`` holds out a seeded random
    ``n`` training images for ``val_dataloader``. Labels are 0..999. The other arguments are
    :class:`ImageDataModule`'s.
    """

    num_classes = IMAGENET32_NUM_CLASSES

    def __init__(self, root: str, cache_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = os.fspath(root)
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else self.root

    def prepare_data(self) -> None:
        build_imagenet32_cache(self.root, self.cache_dir)

    def _load(self) -> DatasetArrays:
        if not imagenet32_cache_is_valid(self.cache_dir):
            trainer = self.trainer
            if trainer is not None and trainer.world_size > 1:
                raise DatasetError(
                    f"no valid ImageNet32x32 cache in {self.cache_dir}; prepare_data() should have built it "
                    "(check prepare_data_per_node and that cache_dir is on a filesystem every node sees)"
                )
            find_imagenet32(self.root)  # a clear error if the raw release is missing too
            build_imagenet32_cache(self.root, self.cache_dir)
        cache = load_imagenet32_cache(self.cache_dir)
        return DatasetArrays(
            cache.train_images, cache.train_labels, cache.val_images, cache.val_labels, cache.mean, cache.std
        )


class MNISTDataModule(ImageDataModule):
    """MNIST (handwritten digits, 10 classes) from the four official IDX files under ``root``
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each plain or ``.gz``; :mod:`wdlab.data.mnist`).

    The 28x28 grayscale images meet the CIFAR-10 networks as 3x32x32: zero-padded by 2 pixels on every
    side, the channel repeated 3 times (:func:`~wdlab.data.mnist.to_rgb32`), so every config trains on it
    with only the data changed. ``mean``/``std`` are the pixel statistics of the 60,000 official 28x28
    training images (the published 0.1307 / 0.3081 for MNIST), the same for the three channels.
    Augmentation: the paper's 4-pixel zero-padded random crop (a shift of up to 4 pixels, which the
    digits' empty margin, about 6 pixels in the padded frame, absorbs), without flips: a mirrored digit
    is another symbol or none.
    Validation uses the 10,000 test images unless ``val_split = n > 0`` (a seeded random ``n`` of
    the training images). The other arguments are :class:`ImageDataModule`'s.
    """

    num_classes = MNIST_NUM_CLASSES
    flip = False
    #: The dataset's name in errors (which also say where its official files come from).
    dataset_name = "MNIST"

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = os.fspath(root)

    def prepare_data(self) -> None:
        find_mnist(self.root, self.dataset_name)  # fail fast, in one line, if a file is not there

    def _load(self) -> DatasetArrays:
        data = load_mnist(self.root, self.dataset_name)
        (mean,), (std,) = channel_stats(data.train_images)  # the official 28x28 pixels, not the padding
        return DatasetArrays.from_numpy(
            to_rgb32(data.train_images), data.train_labels, to_rgb32(data.test_images), data.test_labels,
            stats=((mean,) * 3, (std,) * 3),
        )


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando's clothing images, 10 classes) from its four official IDX files under
    ``root``: the same file names and format as MNIST (:class:`MNISTDataModule`, which this reads
    through), the same 3x32x32 padding. Debian's package ``dataset-fashion-mnist`` installs them in
    ``/usr/share/datasets/fashion-mnist``.

    ``mean``/``std``: the published 0.2860 / 0.3530 of the official training set. Augmentation: the
    4-pixel padded random crop and random horizontal flips, which preserve every class here (a
    mirrored shirt, shoe or bag is still one). The other arguments are :class:`ImageDataModule`'s.
    """

    flip = True
    dataset_name = "Fashion-MNIST"


class BuiltinDataModule(ImageDataModule):
    """The built-in synthetic 10-class dataset (:func:`wdlab.data.builtin.make_builtin_dataset`).

    Generated deterministically from ``seed`` at construction, so ``num_train``, ``mean`` and
    ``std`` are available immediately. ``seed`` also seeds the shuffling and the validation split.
    The other arguments are :class:`ImageDataModule`'s.
    """

    num_classes = BUILTIN_NUM_CLASSES

    def __init__(self, num_train: int = 2000, num_test: int = 2000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_train_total = check_int("num_train", num_train, 1)
        self.num_test = check_int("num_test", num_test, 1)
        self.setup()

    def _load(self) -> DatasetArrays:
        return DatasetArrays.from_numpy(*make_builtin_dataset(self.num_train_total, self.num_test, self.seed))
