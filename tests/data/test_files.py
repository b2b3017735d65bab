"""wdlab.data._files: the helpers the readers share (pixel statistics, .npy streaming), and the readers' independence
of Lightning."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from wdlab.data import (
    channel_stats,
)


# ------------------------------------------------------------------------------------ misc helpers
def test_channel_stats_exact():
    x = np.zeros((2, 3, 2, 2), np.uint8)
    x[:, 0] = 255
    x[0, 1] = 51
    mean, std = channel_stats(x)
    assert mean == pytest.approx((1.0, 0.1, 0.0)) and std == pytest.approx((0.0, 0.1, 0.0))


def test_npy_stream_writer_roundtrip(tmp_path):
    from wdlab.data._files import NpyStreamWriter

    w = NpyStreamWriter(tmp_path / "a.npy", (3, 2), np.uint8)
    chunks = [np.full((n, 3, 2), n, np.uint8) for n in (2, 0, 5)]
    for c in chunks:
        w.append(c)
    w.close()
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    np.testing.assert_array_equal(loaded, np.concatenate(chunks))
    assert hashlib.md5((tmp_path / "a.npy").read_bytes()[:6]).hexdigest() == hashlib.md5(b"\x93NUMPY").hexdigest()


def test_readers_do_not_import_lightning():
    import subprocess
    import sys

    code = (
        "import sys, wdlab.data.cifar, wdlab.data.imagenet32, wdlab.data.mnist, wdlab.data.builtin, "
        "wdlab.data.augment, wdlab.data.tensors, wdlab.data.device; "
        "assert 'lightning' not in sys.modules and 'lightning.pytorch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
