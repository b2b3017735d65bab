"""Low-level helpers shared by the readers: safe unpickling, md5, .npy streaming, pixel statistics.

No Lightning here (and no torch either): plain numpy and the standard library.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from wdlab._io import fsync_file

#: What reading a truncated, corrupt or foreign batch file can raise (pickle, npz, tar.gz alike).
UNREADABLE_FILE_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
    ImportError, OSError, zlib.error, tarfile.TarError, zipfile.BadZipFile, UnicodeDecodeError,
)

__all__ = [
    "ChannelHistogram",
    "NpyStreamWriter",
    "channel_stats",
    "load_pickle_dict",
    "normalize_keys",
    "stream_md5",
]

# Globals a dataset pickle may reference: numpy's array/scalar reconstruction (under its numpy 1.x
# and 2.x module names) and the helpers that Python 3 uses to pickle bytes at protocol <= 2.
# Anything else (os.system, ...) is refused: these files come from the internet.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("__builtin__", "bytes"),  # Python-2 names, mapped by the unpickler's fix_imports
    ("__builtin__", "bytearray"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (not a plain data pickle)")


def load_pickle_dict(fileobj: IO[bytes]) -> dict[str, Any]:
    """Unpickle a dataset batch (Python 2 or 3 pickle) into a dict with ``str`` keys.

    ``encoding="latin1"`` is what numpy documents for Python-2 pickles of arrays; Python-2 ``str``
    keys then arrive as ``str``, and keys that were pickled as ``bytes`` are decoded here.
    Raises ``pickle.UnpicklingError``/``EOFError``/``ValueError``/... on broken input; the caller
    turns that into a :class:`DatasetError` naming the file.
    """
    obj = _RestrictedUnpickler(fileobj, encoding="latin1").load()
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a pickled dict, got {type(obj).__name__}")
    return normalize_keys(obj)


def normalize_keys(obj: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(key, bytes):
            key = key.decode("latin1")
        out[str(key)] = value
    return out


def stream_md5(fileobj: IO[bytes], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    while True:
        chunk = fileobj.read(chunk_size)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)


class ChannelHistogram:
    """Exact per-channel pixel statistics of uint8 images (N, C, H, W), accumulated chunk by chunk."""

    def __init__(self, channels: int = 3) -> None:
        self.counts = np.zeros((channels, 256), dtype=np.int64)

    def update(self, images: np.ndarray, chunk: int = 16384) -> None:
        for start in range(0, images.shape[0], chunk):
            block = np.asarray(images[start : start + chunk])
            for c in range(self.counts.shape[0]):
                self.counts[c] += np.bincount(block[:, c].ravel(), minlength=256)

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (population) standard deviation in units of [0, 1]."""
        values = np.arange(256, dtype=np.float64) / 255.0
        total = self.counts.sum(axis=1).astype(np.float64)
        if np.any(total == 0):
            raise ValueError("no pixels to compute statistics from")
        mean = (self.counts * values).sum(axis=1) / total
        var = (self.counts * (values - mean[:, None]) ** 2).sum(axis=1) / total
        return tuple(float(m) for m in mean), tuple(float(s) for s in np.sqrt(var))

    @classmethod
    def of(cls, images: np.ndarray) -> ChannelHistogram:
        hist = cls(images.shape[1])
        hist.update(images)
        return hist


class NpyStreamWriter:
    """Write a C-order ``.npy`` file whose first dimension is only known at the end.

    A fixed 128-byte header is reserved, rows are appended, and ``close()`` writes the real
    header. The result is a standard ``.npy`` (``np.load(..., mmap_mode="r")`` works on it).
    """

    HEADER_BYTES = 128

    def __init__(self, path: str | os.PathLike[str], row_shape: Iterable[int], dtype: Any) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._f: IO[bytes] | None = open(self.path, "wb")
        self._f.write(b"\0" * self.HEADER_BYTES)

    def append(self, rows: np.ndarray) -> None:
        assert self._f is not None
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"row shape {rows.shape[1:]} != {self.row_shape}")
        self._f.write(memoryview(rows.reshape(-1).view(np.uint8)))
        self.rows += rows.shape[0]

    def _header(self) -> bytes:
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, *self.row_shape),
        }
        text = repr(header).encode("latin1")
        prefix_len = 6 + 2 + 2  # magic, version 1.0, uint16 header length
        pad = self.HEADER_BYTES - prefix_len - len(text) - 1
        if pad < 0:
            raise ValueError("npy header does not fit")
        body = text + b" " * pad + b"\n"
        return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body

    def close(self) -> None:
        if self._f is None:
            return
        self._f.flush()
        self._f.seek(0)
        self._f.write(self._header())
        fsync_file(self._f)
        self._f.close()
        self._f = None



def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel pixel mean and std (units of [0, 1]) of uint8 images ``(N, C, H, W)``, exactly."""
    return ChannelHistogram.of(images).mean_std()
