"""wdlab.data.imagenet32: the ImageNet32x32 reader (official pickle and npz files written by tests/data_files.py),
its memory-mappable cache, its one-line errors, and ImageNet32DataModule."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from data_files import (
    IMAGENET32_VAL,
    imagenet32_batch,
    one_line,
    write_imagenet32,
    write_imagenet32_file,
)
from torch.utils.data import DataLoader

from wdlab.data import (
    DatasetError,
    ImageNet32DataModule,
    build_imagenet32_cache,
    channel_stats,
    collate_batch,
    load_imagenet32_cache,
    read_imagenet32_file,
)
from wdlab.data.imagenet32 import MANIFEST_NAME, imagenet32_cache_is_valid


# ------------------------------------------------------------------------------------- ImageNet32x32
@pytest.mark.parametrize("form", ["pickle", "npz"])
@pytest.mark.parametrize("subfolders", [True, False])
def test_imagenet32_cache_roundtrip(tmp_path, form, subfolders):
    fx = write_imagenet32(tmp_path / "raw", form=form, subfolders=subfolders, per_batch=4, val_size=7)
    dm = ImageNet32DataModule(str(tmp_path / "raw"), batch_size=8)
    assert dm.num_classes == 1000
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_train == 40
    assert isinstance(dm.train_dataset.images, np.memmap) and dm.train_dataset.images.mode == "r"
    assert isinstance(dm.test_dataset.images, np.memmap)
    np.testing.assert_array_equal(dm.train_dataset.images, fx.train_images)
    np.testing.assert_array_equal(dm.train_dataset.labels.numpy(), fx.train_labels)
    np.testing.assert_array_equal(dm.test_dataset.images, fx.val_images)
    np.testing.assert_array_equal(dm.test_dataset.labels.numpy(), fx.val_labels)
    assert (dm.mean, dm.std) == channel_stats(fx.train_images)  # exact through the json manifest
    images, labels = next(iter(dm.val_dataloader()))  # val_split=0: the official val set
    assert images.dtype == torch.uint8 and images.shape == (7, 3, 32, 32)
    torch.testing.assert_close(labels, torch.from_numpy(fx.val_labels))
    for name in ("train_images", "train_labels", "val_images", "val_labels"):
        assert (tmp_path / "raw" / f"imagenet32_{name}.npy").is_file()
    assert (tmp_path / "raw" / MANIFEST_NAME).is_file()


def test_imagenet32_label_shift_extremes(tmp_path):
    path = write_imagenet32_file(
        tmp_path / "b", imagenet32_batch(np.zeros((3, 3, 32, 32), np.uint8), np.array([0, 999, 5]))
    )
    _, labels = read_imagenet32_file(path)
    assert labels.tolist() == [0, 999, 5] and labels.dtype == np.int64
    raw = pickle.loads(path.read_bytes())
    assert raw["labels"] == [1, 1000, 6] and set(raw) == {"data", "labels", "mean"}


def test_imagenet32_cache_is_built_once_and_reused(tmp_path):
    write_imagenet32(tmp_path, per_batch=3)
    dm = ImageNet32DataModule(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    files = sorted((tmp_path / "cache").iterdir())
    assert [f.name for f in files] == sorted(
        [MANIFEST_NAME] + [f"imagenet32_{s}_{k}.npy" for s in ("train", "val") for k in ("images", "labels")]
    )
    stamps = {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in files}
    ImageNet32DataModule(str(tmp_path), cache_dir=str(tmp_path / "cache")).prepare_data()
    assert {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in (tmp_path / "cache").iterdir()} == stamps
    assert not list(tmp_path.glob("imagenet32_*"))  # nothing written next to the raw data
    # the cache alone suffices: the raw release may be deleted after conversion
    for p in tmp_path.rglob("*_data*"):
        p.unlink()
    dm2 = ImageNet32DataModule(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    dm2.prepare_data()
    dm2.setup("fit")
    assert dm2.num_train == 30


def test_imagenet32_broken_cache_is_rebuilt(tmp_path):
    fx = write_imagenet32(tmp_path, per_batch=3)
    build_imagenet32_cache(tmp_path)
    images = tmp_path / "imagenet32_train_images.npy"
    images.write_bytes(images.read_bytes()[:-100])  # truncated
    assert not imagenet32_cache_is_valid(tmp_path)
    build_imagenet32_cache(tmp_path)
    np.testing.assert_array_equal(load_imagenet32_cache(tmp_path).train_images, fx.train_images)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    assert not imagenet32_cache_is_valid(tmp_path)
    # setup() builds a missing cache itself when not running distributed
    dm = ImageNet32DataModule(str(tmp_path))
    dm.setup("fit")
    assert dm.num_train == 30 and imagenet32_cache_is_valid(tmp_path)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_imagenet32_replaced_release_rebuilds(tmp_path):
    write_imagenet32(tmp_path, per_batch=3)
    build_imagenet32_cache(tmp_path)
    fx = write_imagenet32(tmp_path, per_batch=4, seed=1)  # a different release in the same place
    assert not imagenet32_cache_is_valid(tmp_path, tmp_path)
    build_imagenet32_cache(tmp_path)
    np.testing.assert_array_equal(load_imagenet32_cache(tmp_path).train_images, fx.train_images)


def test_imagenet32_missing_files_message(tmp_path):
    with pytest.raises(DatasetError) as exc:
        ImageNet32DataModule(str(tmp_path)).prepare_data()
    msg = one_line(exc)
    for part in ("train_data_batch_1", "train_data_batch_10", "val_data", "Imagenet32_train", "image-net.org"):
        assert part in msg
    assert str(tmp_path / "Imagenet32_val_npz") in msg
    fx = write_imagenet32(tmp_path)
    fx.paths["train_data_batch_7"].unlink()
    with pytest.raises(DatasetError) as exc:
        build_imagenet32_cache(tmp_path)
    msg = one_line(exc)
    assert "incomplete" in msg and "train_data_batch_7" in msg and "train_data_batch_6" not in msg
    with pytest.raises(DatasetError, match="prepare_data"):
        load_imagenet32_cache(tmp_path)


def _imagenet_bad(kind: str) -> dict:
    d = imagenet32_batch(np.zeros((4, 3, 32, 32), np.uint8), np.arange(4))
    if kind == "label_0":
        d["labels"] = [0, 1, 2, 3]
    elif kind == "label_1001":
        d["labels"] = [1, 1001, 2, 3]
    elif kind == "no_labels":
        del d["labels"]
    elif kind == "data_shape":
        d["data"] = np.zeros((4, 32, 32, 3), np.uint8)
    elif kind == "data_float":
        d["data"] = np.zeros((4, 3072), np.float32)
    elif kind == "label_count":
        d["labels"] = [1, 2]
    return d


@pytest.mark.parametrize("form", ["pickle", "npz"])
@pytest.mark.parametrize(
    "kind, expected",
    [
        ("label_0", "label 0 out of range 1..1000"),
        ("label_1001", "label 1001 out of range 1..1000"),
        ("no_labels", "'labels' missing"),
        ("data_shape", "uint8 N x 3072"),
        ("data_float", "uint8 N x 3072"),
        ("label_count", "4 images but 2 labels"),
        ("truncated", "cannot read"),
    ],
)
def test_imagenet32_malformed_file(tmp_path, form, kind, expected):
    fx = write_imagenet32(tmp_path, form=form, per_batch=4)
    path = fx.paths["train_data_batch_3"]
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    else:
        write_imagenet32_file(path, _imagenet_bad(kind))
    with pytest.raises(DatasetError) as exc:
        build_imagenet32_cache(tmp_path)
    msg = one_line(exc)
    assert str(path) in msg and expected in msg, msg
    assert not imagenet32_cache_is_valid(tmp_path)
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("imagenet32_*"))


def test_imagenet32_val_split_and_memmap_dataset_pickles_by_path(tmp_path):
    fx = write_imagenet32(tmp_path, form="npz", per_batch=5)
    dm = ImageNet32DataModule(str(tmp_path), batch_size=4, val_split=10, seed=1)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_train == 40 and len(dm.val_dataset) == 10
    idx = dm.val_dataset.indices.numpy()
    x, y = dm.val_dataset.__getitems__(list(range(10)))
    np.testing.assert_array_equal(x.numpy(), fx.train_images[idx])
    np.testing.assert_array_equal(y.numpy(), fx.train_labels[idx])
    blob = pickle.dumps(dm.train_dataset)
    assert len(blob) < 4000  # the memmap travels as its path (for "spawn" DataLoader workers)
    clone = pickle.loads(blob)
    assert isinstance(clone.images, np.memmap)
    torch.testing.assert_close(clone.__getitems__([0, 5, 39]), dm.train_dataset.__getitems__([0, 5, 39]))


def test_imagenet32_read_file_without_mean(tmp_path):
    path = write_imagenet32_file(
        tmp_path / (IMAGENET32_VAL + ".npz"),
        imagenet32_batch(np.ones((2, 3, 32, 32), np.uint8), np.array([3, 4]), False),
    )
    images, labels = read_imagenet32_file(path)
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [3, 4]


@pytest.mark.slow
def test_spawned_workers_reopen_the_imagenet32_memmap(tmp_path):
    write_imagenet32(tmp_path, per_batch=6)
    dm = ImageNet32DataModule(str(tmp_path), batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    loader = DataLoader(
        dm.train_dataset, batch_size=16, collate_fn=collate_batch, num_workers=2, multiprocessing_context="spawn"
    )
    got = torch.cat([x for x, _ in loader])
    np.testing.assert_array_equal(got.numpy(), np.asarray(dm.train_dataset.images))
