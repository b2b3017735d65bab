"""The one exception type the dataset readers raise."""

from __future__ import annotations

__all__ = ["CIFAR10_URL", "FASHION_MNIST_URL", "IMAGENET32_URL", "MNIST_URL", "DatasetError"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGENET32_URL = "https://image-net.org/download-images (downsampled ImageNet 32x32)"
MNIST_URL = "https://yann.lecun.com/exdb/mnist/"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"


class DatasetError(ValueError):
    """A dataset is missing, incomplete, malformed or fails its checksum.

    The message is always a single line naming the file (or the expected files and the folder
    that was searched) and what to do about it. Nothing is ever downloaded.
    """
