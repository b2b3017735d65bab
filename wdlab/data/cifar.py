"""Reader for the official CIFAR-10 python release (no Lightning, nothing is ever downloaded).

Accepted layouts, searched in this order:

1. ``root/cifar-10-batches-py/`` holding ``data_batch_1..5`` and ``test_batch``;
2. ``root`` itself being that folder;
3. the archive ``root/cifar-10-python.tar.gz`` (or ``root`` being the archive), read member by
   member straight from the compressed stream without extracting anything to disk.

Each batch file is a Python-2 pickle of a dict with ``data`` (uint8, N x 3072, channel-planar:
1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane) and ``labels`` (N ints in
0..9). Keys may be ``bytes`` or ``str``; any N is accepted.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from wdlab.data._files import UNREADABLE_FILE_ERRORS, load_pickle_dict, stream_md5
from wdlab.data.errors import CIFAR10_URL, DatasetError

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_ARCHIVE_MD5",
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_MD5",
    "CIFAR10_TEST_FILES",
    "CIFAR10_TRAIN_FILES",
    "CIFARArrays",
    "decode_cifar_batch",
    "find_cifar10",
    "load_cifar10",
]

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# The official md5 sums (the same values torchvision checks).
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

_EXPECTED = f"{CIFAR10_FOLDER}/{{{','.join(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)}}} or {CIFAR10_ARCHIVE}"
_SKIP_HINT = "pass verify_checksums=False to skip the check for a modified or re-packed copy"


@dataclass(frozen=True)
class CIFARArrays:
    """The decoded dataset: images ``(N, 3, 32, 32)`` uint8 (C-contiguous), labels ``(N,)`` int64."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # the folder or archive the data came from


def decode_cifar_batch(
    batch: dict[str, Any], where: str, num_classes: int = 10, label_offset: int = 0, hint: str = CIFAR10_URL
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one decoded batch dict and return ``(images (N,3,32,32) uint8, labels (N,) int64)``.

    ``labels`` must lie in ``label_offset .. label_offset + num_classes - 1``; the returned labels are
    shifted to ``0 .. num_classes - 1``. Shared with the ImageNet32 reader (same layout).
    """
    for key in ("data", "labels"):
        if key not in batch:
            raise DatasetError(
                f"{where}: malformed batch file, key {key!r} missing (has {sorted(batch)}); "
                f"re-extract the official release from {hint}"
            )
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(
            f"{where}: malformed batch file, 'data' must be a uint8 N x 3072 array, got {desc}; "
            f"re-extract the official release from {hint}"
        )
    try:
        labels = np.asarray(batch["labels"])
        if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise TypeError
        labels = labels.astype(np.int64)
    except (TypeError, ValueError):
        raise DatasetError(
            f"{where}: malformed batch file, 'labels' must be a list of ints; "
            f"re-extract the official release from {hint}"
        ) from None
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(
            f"{where}: malformed batch file, {data.shape[0]} images but {labels.shape[0]} labels; "
            f"re-extract the official release from {hint}"
        )
    lo, hi = label_offset, label_offset + num_classes - 1
    if labels.size and (labels.min() < lo or labels.max() > hi):
        bad = labels[(labels < lo) | (labels > hi)][0]
        raise DatasetError(
            f"{where}: label {int(bad)} out of range {lo}..{hi}; re-extract the official release from {hint}"
        )
    return data.reshape(-1, 3, 32, 32), labels - label_offset


def _decode_stream(f: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = load_pickle_dict(f)
    except UNREADABLE_FILE_ERRORS as exc:
        raise DatasetError(
            f"{where}: cannot unpickle ({type(exc).__name__}: {exc}); the file is truncated or not a CIFAR "
            f"batch, re-extract the official release from {CIFAR10_URL}"
        ) from None
    return decode_cifar_batch(batch, where)


def _is_batch_folder(folder: Path) -> bool:
    return folder.is_dir() and any((folder / n).is_file() for n in CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)


def find_cifar10(root: str | os.PathLike[str]) -> tuple[str, Path]:
    """Locate the release under ``root``: returns ``("folder", path)`` or ``("archive", path)``."""
    root = Path(root).expanduser()
    names = CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES
    folders = [root / CIFAR10_FOLDER, root]
    for folder in folders:
        if folder.is_dir() and all((folder / n).is_file() for n in names):
            return "folder", folder
    archives = [root] if root.is_file() else [root / CIFAR10_ARCHIVE]
    for archive in archives:
        if archive.is_file():
            return "archive", archive
    for folder in folders:  # a partial extraction: say exactly what is missing
        if _is_batch_folder(folder):
            missing = [n for n in names if not (folder / n).is_file()]
            raise DatasetError(
                f"CIFAR-10 is incomplete in {folder}: missing {', '.join(missing)} (and no {CIFAR10_ARCHIVE} "
                f"in {root}); get the official python release from {CIFAR10_URL} (nothing is downloaded)"
            )
    raise DatasetError(
        f"CIFAR-10 not found: expected {_EXPECTED} in {root} (searched {root / CIFAR10_FOLDER}, {root}, "
        f"{root / CIFAR10_ARCHIVE}); get the official python release from {CIFAR10_URL} "
        "(wdlab never downloads)"
    )


def _check_md5(actual: str, expected: str, where: str) -> None:
    if actual != expected:
        raise DatasetError(f"{where}: md5 mismatch, expected {expected}, got {actual}; {_SKIP_HINT}")


def _read_folder(folder: Path, verify: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES:
        path = folder / name
        raw = path.read_bytes()  # read once: hashed and unpickled from memory
        if verify:
            _check_md5(hashlib.md5(raw).hexdigest(), CIFAR10_MD5[name], str(path))
        out[name] = _decode_stream(io.BytesIO(raw), str(path))
    return out


def _read_archive(archive: Path, verify: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if verify:
        with open(archive, "rb") as f:
            _check_md5(stream_md5(f), CIFAR10_ARCHIVE_MD5, str(archive))
    wanted = {f"{CIFAR10_FOLDER}/{n}": n for n in CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES}
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        # Stream mode ("r|gz"): one sequential pass over the compressed file, nothing written to disk.
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isfile():
                    continue
                f = tar.extractfile(member)
                assert f is not None
                out[name] = _decode_stream(f, f"{archive}:{member.name}")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DatasetError(
            f"{archive}: cannot read the archive ({type(exc).__name__}: {exc}); it is truncated or not a "
            f"tar.gz, get the official python release from {CIFAR10_URL}"
        ) from None
    missing = [n for n in wanted.values() if n not in out]
    if missing:
        raise DatasetError(
            f"{archive}: archive lacks {', '.join(f'{CIFAR10_FOLDER}/{n}' for n in missing)}; "
            f"get the official python release from {CIFAR10_URL}"
        )
    return out


def load_cifar10(root: str | os.PathLike[str], verify_checksums: bool = True) -> CIFARArrays:
    """Read CIFAR-10 from ``root`` (see the module docstring for the accepted layouts).

    With ``verify_checksums`` the md5 of every batch file (or of the archive) must match the
    official release. Raises :class:`DatasetError` (one line) on anything missing or malformed.
    """
    kind, path = find_cifar10(root)
    parts = _read_folder(path, verify_checksums) if kind == "folder" else _read_archive(path, verify_checksums)

    def cat(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(np.concatenate([parts[n][0] for n in names]))
        return images, np.concatenate([parts[n][1] for n in names])

    train_images, train_labels = cat(CIFAR10_TRAIN_FILES)
    test_images, test_labels = cat(CIFAR10_TEST_FILES)
    if len(train_images) == 0 or len(test_images) == 0:
        raise DatasetError(f"{path}: the training or test batches hold no images; get the release from {CIFAR10_URL}")
    return CIFARArrays(train_images, train_labels, test_images, test_labels, str(path))
