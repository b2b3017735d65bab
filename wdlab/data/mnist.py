"""Reader for MNIST and Fashion-MNIST in their official IDX format (no Lightning, nothing is downloaded).

Both releases are four files under ``root``, each plain or gzip-compressed (``NAME`` or ``NAME.gz``):
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``. An IDX file is a big-endian header -- two zero bytes, a type byte (0x08:
unsigned byte), the number of dimensions, then each dimension as a 32-bit integer -- followed by the
values in row-major order: magic 0x00000803 for the images (N x 28 x 28) and 0x00000801 for the labels
(N values in 0..9). Debian's package ``dataset-fashion-mnist`` installs the official ``.gz`` files of
Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``.

How 28x28 grayscale meets the 3x32x32 networks (:func:`to_rgb32`): every image is zero-padded by 2
pixels on each side to 32x32 and its one channel is repeated 3 times, so every network and config
written for CIFAR-10 (3 input channels, 32x32, 10 classes) trains on it unchanged. The background of
both datasets is 0, so the padding only widens the black frame.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wdlab.data.errors import FASHION_MNIST_URL, MNIST_URL, DatasetError

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "MNIST_FILES",
    "MNISTArrays",
    "find_mnist",
    "load_mnist",
    "read_idx_images",
    "read_idx_labels",
    "to_rgb32",
]

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
#: The official file names (each may also be the gzip-compressed NAME.gz), by role.
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_SIZE = 28
MNIST_NUM_CLASSES = 10
#: Where each dataset's official files come from, by the name the errors use.
SOURCES = {
    "MNIST": MNIST_URL,
    "Fashion-MNIST": f"{FASHION_MNIST_URL} (Debian: apt-get install dataset-fashion-mnist puts them in "
    "/usr/share/datasets/fashion-mnist)",
}


@dataclass(frozen=True)
class MNISTArrays:
    """The decoded release as in the files: images ``(N, 1, 28, 28)`` uint8, labels ``(N,)`` int64 in 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # the folder the files came from


def _fix(dataset: str) -> str:
    return f"get the official files of {dataset} from {SOURCES.get(dataset, MNIST_URL)} (nothing is downloaded)"


def find_mnist(root: str | os.PathLike[str], dataset: str = "MNIST") -> dict[str, Path]:
    """The four official files under ``root`` by role (:data:`MNIST_FILES`), each ``NAME`` or else ``NAME.gz``."""
    root = Path(root).expanduser()
    found: dict[str, Path] = {}
    for role, name in MNIST_FILES.items():
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
    missing = [name for role, name in MNIST_FILES.items() if role not in found]
    if missing:
        what = "not found" if len(missing) == len(MNIST_FILES) else "incomplete"
        raise DatasetError(
            f"{dataset} {what} in {root}: missing {', '.join(f'{n}[.gz]' for n in missing)}; {_fix(dataset)}"
        )
    return found


def _read_bytes(path: Path, dataset: str) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is truncated or not gzip, {_fix(dataset)}"
        ) from None


def _read_idx(path: Path, magic: int, dims: int, dataset: str) -> np.ndarray:
    raw = _read_bytes(path, dataset)
    kind = "image" if magic == IDX_IMAGES_MAGIC else "label"
    header = 4 + 4 * dims
    if len(raw) >= 4 and int.from_bytes(raw[:4], "big") != magic:
        got = int.from_bytes(raw[:4], "big")
        raise DatasetError(
            f"{path}: not an IDX {kind} file (magic 0x{got:08X}, expected 0x{magic:08X}); {_fix(dataset)}"
        )
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes); {_fix(dataset)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = int(np.prod(shape, dtype=np.int64))
    body = len(raw) - header
    if body != expected:
        state = "truncated" if body < expected else "longer than its header says"
        raise DatasetError(
            f"{path}: {state}: the header announces {' x '.join(map(str, shape))} = {expected} bytes of data, "
            f"the file holds {body}; {_fix(dataset)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_images(path: str | os.PathLike[str], dataset: str = "MNIST") -> np.ndarray:
    """The images of one IDX image file (``.gz`` by suffix) as ``(N, 28, 28)`` uint8; checks magic, size, length."""
    path = Path(path)
    images = _read_idx(path, IDX_IMAGES_MAGIC, 3, dataset)
    if images.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise DatasetError(
            f"{path}: images of {images.shape[1]}x{images.shape[2]} pixels, expected "
            f"{MNIST_SIZE}x{MNIST_SIZE}; {_fix(dataset)}"
        )
    return images


def read_idx_labels(path: str | os.PathLike[str], dataset: str = "MNIST") -> np.ndarray:
    """The labels of one IDX label file (``.gz`` by suffix) as ``(N,)`` int64 in 0..9; checks magic, length, range."""
    path = Path(path)
    labels = _read_idx(path, IDX_LABELS_MAGIC, 1, dataset)
    if labels.size and labels.max() >= MNIST_NUM_CLASSES:
        bad = int(labels[labels >= MNIST_NUM_CLASSES][0])
        raise DatasetError(
            f"{path}: label {bad} out of range 0..{MNIST_NUM_CLASSES - 1}; {_fix(dataset)}"
        )
    return labels.astype(np.int64)


def load_mnist(root: str | os.PathLike[str], dataset: str = "MNIST") -> MNISTArrays:
    """Read the four official files under ``root`` (see the module docstring); ``dataset`` names it in errors.

    Raises :class:`DatasetError` (one line naming the file and the fix) on anything missing or malformed:
    wrong magic number, truncated or over-long file, images that are not 28x28, a label outside 0..9,
    image and label counts that differ, an empty split.
    """
    files = find_mnist(root, dataset)
    arrays = {}
    for split in ("train", "test"):
        images = read_idx_images(files[f"{split}_images"], dataset)
        labels = read_idx_labels(files[f"{split}_labels"], dataset)
        if len(images) != len(labels):
            raise DatasetError(
                f"{files[f'{split}_labels']}: {len(labels)} labels for the {len(images)} images of "
                f"{files[f'{split}_images']}; the two files come from different releases, {_fix(dataset)}"
            )
        if len(images) == 0:
            raise DatasetError(f"{files[f'{split}_images']}: holds no images; {_fix(dataset)}")
        arrays[split] = (np.ascontiguousarray(images[:, None]), labels)
    return MNISTArrays(*arrays["train"], *arrays["test"], source=str(Path(root).expanduser()))


def to_rgb32(images: np.ndarray) -> np.ndarray:
    """``(N, 1, 28, 28)`` uint8 -> ``(N, 3, 32, 32)``: 2 zero pixels on every side, the channel repeated 3 times."""
    if images.ndim != 4 or images.shape[1:] != (1, MNIST_SIZE, MNIST_SIZE):
        raise ValueError(f"expected (N, 1, {MNIST_SIZE}, {MNIST_SIZE}) images, got shape {images.shape}")
    pad = (32 - MNIST_SIZE) // 2
    out = np.zeros((images.shape[0], 3, 32, 32), dtype=np.uint8)
    out[:, :, pad : pad + MNIST_SIZE, pad : pad + MNIST_SIZE] = images  # broadcast over the 3 channels
    return out
