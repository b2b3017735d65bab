"""Write small dataset files in EXACTLY the official formats, for tests (no downloads, ever).

Importable from any test module as ``from data_files import ...``: ``tests/conftest.py`` puts ``tests/`` on
``sys.path`` (pytest's default ``--import-mode=prepend``; no ``__init__.py`` in the test folders).

* CIFAR-10 python release: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``,
  each a Python-2 pickle (protocol 2, ``bytes`` keys as Python 2's ``str`` keys load with
  ``encoding="bytes"``, numpy arrays under the numpy-1.x module name ``numpy.core.multiarray``),
  and the archive ``cifar-10-python.tar.gz`` holding that folder.
* ImageNet32x32: ``Imagenet32_train/train_data_batch_1..10`` + ``Imagenet32_val/val_data``
  (Python-3 pickles with ``str`` keys ``data``, ``labels`` (1..1000), ``mean``) or the
  ``Imagenet32_{train,val}_npz/*.npz`` variant with the same keys.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
IMAGENET32_TRAIN = tuple(f"train_data_batch_{i}" for i in range(1, 11))
IMAGENET32_VAL = "val_data"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def random_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random uint8 images (n, 3, 32, 32)."""
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def py2_pickle(obj: object) -> bytes:
    """Pickle like Python 2 + numpy 1.x did: protocol 2, arrays via ``numpy.core.multiarray``."""
    return pickle.dumps(obj, protocol=2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch_bytes(images: np.ndarray, labels, name: str = "data_batch_1", str_keys: bool = False) -> bytes:
    """One CIFAR-10 batch file: dict with ``batch_label``, ``labels``, ``data`` (N x 3072), ``filenames``."""
    n = len(images)
    d = {
        b"batch_label": f"{name} of CIFAR-10".encode(),
        b"labels": [int(x) for x in labels],
        b"data": np.ascontiguousarray(images).reshape(n, 3072),
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)],
    }
    if str_keys:
        d = {k.decode(): v for k, v in d.items()}
    return py2_pickle(d)


@dataclass
class CifarFixture:
    """What was written: the arrays (for comparison) and the md5 of every file."""

    train_images: np.ndarray  # (N, 3, 32, 32) uint8, batches 1..5 concatenated
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    files: dict[str, bytes]  # file name -> contents
    md5: dict[str, str]  # file name -> md5 (the archive under its own name when written)
    path: Path  # the folder or archive written


def make_cifar_files(
    per_batch: int | tuple[int, ...] = 8, test_size: int = 6, seed: int = 0, str_keys: bool = False
) -> CifarFixture:
    """Build (in memory) the six batch files plus ``batches.meta``; ``per_batch`` may differ per file."""
    rng = np.random.default_rng(seed)
    sizes = (per_batch,) * 5 if isinstance(per_batch, int) else tuple(per_batch)
    files: dict[str, bytes] = {}
    train_x, train_y = [], []
    for name, n in zip(CIFAR_TRAIN, sizes, strict=True):
        x, y = random_images(n, rng), rng.integers(0, 10, n)
        files[name] = cifar_batch_bytes(x, y, name, str_keys)
        train_x.append(x)
        train_y.append(y)
    test_x, test_y = random_images(test_size, rng), rng.integers(0, 10, test_size)
    files[CIFAR_TEST] = cifar_batch_bytes(test_x, test_y, CIFAR_TEST, str_keys)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    files["batches.meta"] = py2_pickle({b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072})
    return CifarFixture(
        np.concatenate(train_x),
        np.concatenate(train_y).astype(np.int64),
        test_x,
        test_y.astype(np.int64),
        files,
        {k: md5(v) for k, v in files.items()},
        Path(),
    )


def write_cifar_folder(root: Path, fixture: CifarFixture | None = None, inside: bool = True, **kw) -> CifarFixture:
    """Write the extracted release: ``root/cifar-10-batches-py/...`` (or straight into ``root``)."""
    fixture = fixture or make_cifar_files(**kw)
    folder = Path(root) / CIFAR_FOLDER if inside else Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in fixture.files.items():
        (folder / name).write_bytes(data)
    fixture.path = folder
    return fixture


def write_cifar_archive(root: Path, fixture: CifarFixture | None = None, **kw) -> CifarFixture:
    """Write ``root/cifar-10-python.tar.gz`` with the member folder ``cifar-10-batches-py/``."""
    fixture = fixture or make_cifar_files(**kw)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo(CIFAR_FOLDER)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        for name in ["batches.meta", *CIFAR_TRAIN, "readme.html", CIFAR_TEST]:
            data = fixture.files.get(name, b"<html>CIFAR-10</html>")
            info = tarfile.TarInfo(f"{CIFAR_FOLDER}/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    path = Path(root) / CIFAR_ARCHIVE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    fixture.md5[CIFAR_ARCHIVE] = md5(buf.getvalue())
    fixture.path = path
    return fixture


@dataclass
class ImageNet32Fixture:
    train_images: np.ndarray  # (N, 3, 32, 32) uint8, batches 1..10 concatenated
    train_labels: np.ndarray  # 0..999 (the files hold 1..1000)
    val_images: np.ndarray
    val_labels: np.ndarray
    paths: dict[str, Path]  # official name -> file written


def imagenet32_batch(images: np.ndarray, labels0: np.ndarray, with_mean: bool = True) -> dict:
    """The official dict: ``data`` N x 3072 uint8, ``labels`` list of ints 1..1000, ``mean`` (train)."""
    data = np.ascontiguousarray(images).reshape(len(images), 3072)
    d = {"data": data, "labels": [int(x) + 1 for x in labels0]}
    if with_mean:
        d["mean"] = data.mean(axis=0) if len(data) else np.zeros(3072)
    return d


def write_imagenet32_file(path: Path, batch: dict) -> Path:
    """Write one file; ``.npz`` by suffix, else a Python-3 pickle (as the official release)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, **{k: np.asarray(v) for k, v in batch.items()})
    else:
        path.write_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def write_imagenet32(
    root: Path,
    form: str = "pickle",
    subfolders: bool = True,
    per_batch: int = 5,
    val_size: int = 7,
    seed: int = 0,
) -> ImageNet32Fixture:
    """Write the ten training batches and ``val_data`` (``form`` "pickle" or "npz")."""
    rng = np.random.default_rng(seed)
    suffix = ".npz" if form == "npz" else ""
    train_dir = Path(root) / (("Imagenet32_train_npz" if suffix else "Imagenet32_train") if subfolders else "")
    val_dir = Path(root) / (("Imagenet32_val_npz" if suffix else "Imagenet32_val") if subfolders else "")
    xs, ys, paths = [], [], {}
    for name in IMAGENET32_TRAIN:
        x, y = random_images(per_batch, rng), rng.integers(0, 1000, per_batch)
        paths[name] = write_imagenet32_file(train_dir / (name + suffix), imagenet32_batch(x, y))
        xs.append(x)
        ys.append(y)
    vx, vy = random_images(val_size, rng), rng.integers(0, 1000, val_size)
    paths[IMAGENET32_VAL] = write_imagenet32_file(
        val_dir / (IMAGENET32_VAL + suffix), imagenet32_batch(vx, vy, with_mean=False)
    )
    return ImageNet32Fixture(np.concatenate(xs), np.concatenate(ys).astype(np.int64), vx, vy.astype(np.int64), paths)


def one_line(exc) -> str:
    """The message of a ``pytest.raises`` ExceptionInfo, asserted to be one line."""
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def real_fashion_mnist() -> Path:
    """The official Fashion-MNIST files as Debian's ``dataset-fashion-mnist`` installs them; the calling test
    skips when they are absent, except in CI (``CI=true``), which installs the package (``.ci/run``) and so fails."""
    import pytest

    if not all((DEBIAN_FASHION_MNIST / f"{name}.gz").is_file() for name in MNIST_NAMES):
        message = f"no Fashion-MNIST in {DEBIAN_FASHION_MNIST}: apt-get install dataset-fashion-mnist"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI installs it in .ci/run)")
        pytest.skip(message)
    return DEBIAN_FASHION_MNIST
