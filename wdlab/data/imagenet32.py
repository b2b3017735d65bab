"""Reader and memory-mappable cache for the official ImageNet32x32 release (no Lightning).

Chrabaszcz, Loshchilov & Hutter (2017), "A Downsampled Variant of ImageNet as an Alternative to
the CIFAR datasets". Files ``train_data_batch_1..10`` and ``val_data``, either pickled dicts or
``.npz`` archives with the same names plus ``.npz``; keys ``data`` (uint8 N x 3072, channel-planar
like CIFAR), ``labels`` (1..1000) and, in the training files, ``mean``. They may sit directly in
``root`` or in the official subfolders ``Imagenet32_train/``, ``Imagenet32_val/``,
``Imagenet32_train_npz/``, ``Imagenet32_val_npz/``.

:func:`build_imagenet32_cache` converts them once into ``imagenet32_{train,val}_images.npy``
(N, 3, 32, 32) uint8 plus ``imagenet32_{train,val}_labels.npy`` (int64, 0..999) and a manifest;
every file is written under a temporary name and renamed into place, the manifest last, so an
interrupted conversion is simply redone. :func:`load_imagenet32_cache` opens the images with
``np.load(mmap_mode="r")``: all DDP ranks on a node then share one copy through the page cache.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wdlab._io import atomic_write, fsync_file, replace_all, temporary_name
from wdlab.data._files import UNREADABLE_FILE_ERRORS, ChannelHistogram, NpyStreamWriter, load_pickle_dict
from wdlab.data.cifar import decode_cifar_batch
from wdlab.data.errors import IMAGENET32_URL, DatasetError

__all__ = [
    "IMAGENET32_NUM_CLASSES",
    "IMAGENET32_SUBFOLDERS",
    "IMAGENET32_TRAIN_FILES",
    "IMAGENET32_VAL_FILES",
    "ImageNet32Cache",
    "build_imagenet32_cache",
    "find_imagenet32",
    "imagenet32_cache_is_valid",
    "load_imagenet32_cache",
    "read_imagenet32_file",
]

IMAGENET32_NUM_CLASSES = 1000
IMAGENET32_TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
IMAGENET32_VAL_FILES = ("val_data",)
IMAGENET32_SUBFOLDERS = ("Imagenet32_train", "Imagenet32_val", "Imagenet32_train_npz", "Imagenet32_val_npz")

CACHE_FORMAT = "wdlab-imagenet32-cache"
CACHE_VERSION = 1
MANIFEST_NAME = "imagenet32_manifest.json"
_SPLITS = {"train": IMAGENET32_TRAIN_FILES, "val": IMAGENET32_VAL_FILES}


def _cache_names(split: str) -> tuple[str, str]:
    return f"imagenet32_{split}_images.npy", f"imagenet32_{split}_labels.npy"


def _search_dirs(root: Path) -> list[Path]:
    return [root] + [root / sub for sub in IMAGENET32_SUBFOLDERS]


def find_imagenet32(root: str | os.PathLike[str]) -> dict[str, Path]:
    """Map each of ``train_data_batch_1..10``, ``val_data`` to the file found (pickle or ``.npz``).

    Each name is looked up as ``NAME`` then ``NAME.npz`` in ``root`` and then in the official
    subfolders. Raises :class:`DatasetError` naming what is missing and where it looked.
    """
    root = Path(root).expanduser()
    dirs = _search_dirs(root)
    found: dict[str, Path] = {}
    for name in IMAGENET32_TRAIN_FILES + IMAGENET32_VAL_FILES:
        for folder in dirs:
            hit = next((folder / n for n in (name, name + ".npz") if (folder / n).is_file()), None)
            if hit is not None:
                found[name] = hit
                break
    missing = [n for n in IMAGENET32_TRAIN_FILES + IMAGENET32_VAL_FILES if n not in found]
    if missing:
        what = "not found" if len(missing) == len(IMAGENET32_TRAIN_FILES) + 1 else "incomplete"
        raise DatasetError(
            f"ImageNet32x32 {what}: missing {', '.join(missing)} (each as a pickle or NAME.npz); searched "
            f"{', '.join(str(d) for d in dirs)}; get the official release (Imagenet32_train.zip + "
            f"Imagenet32_val.zip, or the _npz variants) from {IMAGENET32_URL} (wdlab never downloads)"
        )
    return found


def read_imagenet32_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one official file (pickle or ``.npz``): images ``(N,3,32,32)`` uint8, labels 0..999 int64."""
    path = Path(path)
    batch: dict[str, Any]
    try:
        if path.suffix == ".npz":
            if not zipfile.is_zipfile(path):
                raise zipfile.BadZipFile("not a zip archive")
            with np.load(path, allow_pickle=False) as npz:
                batch = {k: npz[k] for k in ("data", "labels") if k in npz.files}
                batch.update({k: None for k in npz.files if k not in batch})
        else:
            with open(path, "rb") as f:
                batch = load_pickle_dict(f)
    except UNREADABLE_FILE_ERRORS as exc:
        raise DatasetError(
            f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is truncated or not an "
            f"ImageNet32x32 batch, get the official release from {IMAGENET32_URL}"
        ) from None
    return decode_cifar_batch(batch, str(path), num_classes=IMAGENET32_NUM_CLASSES, label_offset=1, hint=IMAGENET32_URL)


@dataclass(frozen=True)
class ImageNet32Cache:
    """The opened cache: images are read-only memmaps ``(N, 3, 32, 32)`` uint8, labels int64 0..999."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    directory: Path


def _read_manifest(cache_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((cache_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        return None
    if manifest.get("version") != CACHE_VERSION:
        return None
    return manifest


def _check_split(cache_dir: Path, manifest: dict[str, Any], split: str) -> bool:
    try:
        n = int(manifest[split]["num"])
        images_name, labels_name = _cache_names(split)
        images = np.load(cache_dir / images_name, mmap_mode="r")
        labels = np.load(cache_dir / labels_name, mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (
        images.shape == (n, 3, 32, 32)
        and images.dtype == np.uint8
        and labels.shape == (n,)
        and labels.dtype == np.int64
    )


def imagenet32_cache_is_valid(cache_dir: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> bool:
    """True if ``cache_dir`` holds a complete cache (manifest, shapes and dtypes all consistent).

    If ``root`` is given and the raw files are still there, their sizes must match the ones the
    cache was built from (a replaced release triggers a rebuild).
    """
    cache_dir = Path(cache_dir)
    manifest = _read_manifest(cache_dir)
    if manifest is None or not all(_check_split(cache_dir, manifest, s) for s in _SPLITS):
        return False
    if root is not None:
        try:
            found = find_imagenet32(root)
        except DatasetError:
            return True  # raw files gone (e.g. deleted after conversion): the cache stands alone
        sizes = {name: path.stat().st_size for name, path in found.items()}
        if sizes != {k: v.get("size") for k, v in manifest.get("sources", {}).items()}:
            return False
    return True


def build_imagenet32_cache(
    root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, force: bool = False
) -> Path:
    """Convert the release under ``root`` into the cache in ``cache_dir`` (default: ``root``), once.

    Returns the cache folder. A valid existing cache is reused untouched unless ``force``.
    """
    root = Path(root).expanduser()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else root
    if not force and imagenet32_cache_is_valid(cache, root):
        return cache
    found = find_imagenet32(root)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / f".wdlab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DatasetError(
            f"cannot write the ImageNet32x32 cache to {cache} ({exc.strerror}); pass cache_dir= a writable folder"
        ) from None

    done: list[tuple[Path, Path]] = []  # (temporary, final)
    manifest: dict[str, Any] = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "num_classes": 1000}
    hist = ChannelHistogram(3)
    try:
        for split, names in _SPLITS.items():
            images_name, labels_name = _cache_names(split)
            writer = NpyStreamWriter(temporary_name(cache / images_name), (3, 32, 32), np.uint8)
            done.append((writer.path, cache / images_name))
            labels = []
            try:
                for name in names:
                    images, labs = read_imagenet32_file(found[name])
                    writer.append(images)
                    labels.append(labs)
                    if split == "train":
                        hist.update(images)
                    del images
            finally:
                writer.close()
            labels_tmp = temporary_name(cache / labels_name)
            with open(labels_tmp, "wb") as f:
                np.save(f, np.concatenate(labels).astype(np.int64))
                fsync_file(f)
            done.append((labels_tmp, cache / labels_name))
            manifest[split] = {"num": writer.rows, "images": images_name, "labels": labels_name}
        manifest["mean"], manifest["std"] = hist.mean_std()
        manifest["sources"] = {n: {"path": str(p), "size": p.stat().st_size} for n, p in found.items()}
        (cache / MANIFEST_NAME).unlink(missing_ok=True)  # invalidate first, then swap the data in
        replace_all(done)
        with atomic_write(cache / MANIFEST_NAME, "w") as f:  # the manifest last: it validates the set
            f.write(json.dumps(manifest, indent=2))
    except BaseException:
        for tmp, _ in done:
            tmp.unlink(missing_ok=True)
        raise
    return cache


def load_imagenet32_cache(cache_dir: str | os.PathLike[str]) -> ImageNet32Cache:
    """Open a cache built by :func:`build_imagenet32_cache` (images memory-mapped read-only)."""
    cache = Path(cache_dir).expanduser()
    manifest = _read_manifest(cache)
    if manifest is None or not all(_check_split(cache, manifest, s) for s in _SPLITS):
        raise DatasetError(
            f"no valid ImageNet32x32 cache in {cache} (expected {MANIFEST_NAME} and imagenet32_{{train,val}}_"
            "{images,labels}.npy); run the datamodule's prepare_data() first to convert the release"
        )
    arrays = {}
    for split in _SPLITS:
        images_name, labels_name = _cache_names(split)
        arrays[f"{split}_images"] = np.load(cache / images_name, mmap_mode="r")
        arrays[f"{split}_labels"] = np.load(cache / labels_name)
    return ImageNet32Cache(
        mean=tuple(float(m) for m in manifest["mean"]),
        std=tuple(float(s) for s in manifest["std"]),
        directory=cache,
        **arrays,
    )
