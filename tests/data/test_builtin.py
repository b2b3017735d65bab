"""wdlab.data.builtin: the built-in synthetic dataset (deterministic, pinned bytes) and BuiltinDataModule."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from wdlab.data import (
    BuiltinDataModule,
    BuiltinSpec,
    channel_stats,
    make_builtin_dataset,
)


# -------------------------------------------------------------------------------- built-in dataset
def test_builtin_is_deterministic():
    a = make_builtin_dataset(300, 100, seed=3)
    b = make_builtin_dataset(300, 100, seed=3)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    c = make_builtin_dataset(300, 100, seed=4)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])
    x, y, xt, yt = a
    assert x.shape == (300, 3, 32, 32) and x.dtype == np.uint8 and xt.shape == (100, 3, 32, 32)
    assert y.dtype == np.int64 and yt.dtype == np.int64
    assert set(y.tolist()) == set(range(10)) and 0 <= yt.min() and yt.max() <= 9
    # the test set does not depend on the size of the training set (independent streams)
    np.testing.assert_array_equal(make_builtin_dataset(50, 100, seed=3)[2], xt)


def test_builtin_golden_hash():
    """Pins the exact bytes: the generator uses only seeded numpy streams and exactly rounded
    element-wise float32 arithmetic, so every machine must produce these. A failure after a numpy
    upgrade means its random streams changed (and with them the built-in dataset)."""
    digest = hashlib.sha256()
    for arr in make_builtin_dataset(64, 32, seed=0):
        digest.update(np.ascontiguousarray(arr).tobytes())
    assert digest.hexdigest() == "465f2a53f68144b1b9b0362e622a2553949f7682e2a94a7ad52662c04287dcd8"


def test_builtin_defaults_and_spec():
    x, y, xt, _ = make_builtin_dataset()
    assert x.shape == (2000, 3, 32, 32) and xt.shape == (2000, 3, 32, 32)
    counts = np.bincount(y, minlength=10)
    assert counts.min() > 150 and counts.max() < 250  # balanced in expectation (200 each)
    assert 90 < x.mean() < 170 and x.std() > 20  # not saturated, not flat
    noisy = make_builtin_dataset(300, 100, seed=3, spec=BuiltinSpec(label_noise=0.3))
    clean = make_builtin_dataset(300, 100, seed=3)
    np.testing.assert_array_equal(noisy[0], clean[0])  # same images,
    assert 0.15 < (noisy[1] != clean[1]).mean() < 0.45  # some training labels replaced,
    np.testing.assert_array_equal(noisy[3], clean[3])  # the test labels stay clean
    for bad in ({"own_parts": (1, 3)}, {"distractors": (0, 10)}, {"part_size": (8, 13)}, {"label_noise": 1.0}):
        with pytest.raises(ValueError):
            BuiltinSpec(**bad)


def test_builtin_does_not_touch_global_rng():
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    torch_state = torch.get_rng_state()
    make_builtin_dataset(20, 10, seed=0)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_builtin_datamodule_ready_after_construction():
    dm = BuiltinDataModule(batch_size=32, num_train=200, num_test=60, seed=1)
    assert dm.num_classes == 10 and dm.num_train == 200 and dm.batch_size == 32
    x, _, _, _ = make_builtin_dataset(200, 60, seed=1)
    assert (dm.mean, dm.std) == channel_stats(x)
    assert all(0.0 < m < 1.0 for m in dm.mean) and all(0.0 < s < 1.0 for s in dm.std)
    dm.setup("fit")  # idempotent
    assert dm.num_train == 200
    split = BuiltinDataModule(num_train=200, num_test=60, seed=1, val_split=50)
    assert split.num_train == 150 and len(split.val_dataset) == 50
    assert (split.mean, split.std) == (dm.mean, dm.std)
