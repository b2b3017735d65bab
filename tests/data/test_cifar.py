"""Tests for wdlab.data: the readers (official formats written by tests/data_files.py), the
ImageNet32 cache, the built-in dataset, the batched augmentation and the datamodules."""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from data_files import (
    CIFAR_ARCHIVE,
    CIFAR_FOLDER,
    CIFAR_TEST,
    IMAGENET32_VAL,
    cifar_batch_bytes,
    imagenet32_batch,
    make_cifar_files,
    py2_pickle,
    write_cifar_archive,
    write_cifar_folder,
    write_imagenet32,
    write_imagenet32_file,
)
from torch.utils.data import DataLoader

import wdlab.data.cifar as cifar_mod
from wdlab.data import (
    BatchTensorDataset,
    BuiltinDataModule,
    BuiltinSpec,
    CIFAR10DataModule,
    DatasetError,
    ImageNet32DataModule,
    build_imagenet32_cache,
    channel_stats,
    collate_batch,
    load_cifar10,
    load_imagenet32_cache,
    make_builtin_dataset,
    normalize,
    random_crop_flip,
    read_imagenet32_file,
)
from wdlab.data.imagenet32 import MANIFEST_NAME, imagenet32_cache_is_valid


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def patch_official_md5(monkeypatch, fixture) -> None:
    """Make the fixture's files the 'official' ones (the real md5 table cannot match test files)."""
    for name, digest in fixture.md5.items():
        if name in cifar_mod.CIFAR10_MD5:
            monkeypatch.setitem(cifar_mod.CIFAR10_MD5, name, digest)
    if CIFAR_ARCHIVE in fixture.md5:
        monkeypatch.setattr(cifar_mod, "CIFAR10_ARCHIVE_MD5", fixture.md5[CIFAR_ARCHIVE])


# ------------------------------------------------------------------------------------------ CIFAR-10
def test_official_md5_table_matches_torchvision():
    tv = pytest.importorskip("torchvision.datasets")
    expected = dict(tv.CIFAR10.train_list + tv.CIFAR10.test_list)
    assert expected == cifar_mod.CIFAR10_MD5
    assert tv.CIFAR10.tgz_md5 == cifar_mod.CIFAR10_ARCHIVE_MD5
    assert tv.CIFAR10.base_folder == cifar_mod.CIFAR10_FOLDER
    assert tv.CIFAR10.filename == cifar_mod.CIFAR10_ARCHIVE


def test_fixture_is_a_python2_style_pickle(tmp_path):
    fx = make_cifar_files()
    raw = fx.files["data_batch_1"]
    assert raw[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct" in raw
    d = pickle.loads(raw, encoding="bytes")
    assert set(d) == {b"batch_label", b"labels", b"data", b"filenames"}


@pytest.mark.parametrize("layout", ["folder", "root_is_folder", "archive", "archive_path"])
def test_cifar_layouts_read_the_same_arrays(tmp_path, layout):
    if layout == "folder":
        fx, root = write_cifar_folder(tmp_path), tmp_path
    elif layout == "root_is_folder":
        fx = write_cifar_folder(tmp_path / "x", inside=False)
        root = tmp_path / "x"
    else:
        fx = write_cifar_archive(tmp_path)
        root = tmp_path if layout == "archive" else tmp_path / CIFAR_ARCHIVE
    data = load_cifar10(root, verify_checksums=False)
    np.testing.assert_array_equal(data.train_images, fx.train_images)
    np.testing.assert_array_equal(data.train_labels, fx.train_labels)
    np.testing.assert_array_equal(data.test_images, fx.test_images)
    np.testing.assert_array_equal(data.test_labels, fx.test_labels)
    assert data.train_images.dtype == np.uint8 and data.train_images.shape == (40, 3, 32, 32)
    assert data.train_labels.dtype == np.int64 and data.train_images.flags.c_contiguous
    if layout.startswith("archive"):  # read from the stream: nothing extracted next to the archive
        assert sorted(os.listdir(tmp_path)) == [CIFAR_ARCHIVE]


def test_cifar_channel_planar_layout(tmp_path):
    """Row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32."""
    row = np.zeros(3072, dtype=np.uint8)
    row[0 * 1024 + 0 * 32 + 1] = 11  # R, y=0, x=1
    row[1 * 1024 + 2 * 32 + 0] = 22  # G, y=2, x=0
    row[2 * 1024 + 31 * 32 + 30] = 33  # B, y=31, x=30
    fx = make_cifar_files(per_batch=1, test_size=1)
    fx.files["data_batch_1"] = py2_pickle({b"data": row[None], b"labels": [3]})
    write_cifar_folder(tmp_path, fx)
    img = load_cifar10(tmp_path, verify_checksums=False).train_images[0]
    assert img[0, 0, 1] == 11 and img[1, 2, 0] == 22 and img[2, 31, 30] == 33 and img.sum() == 66


def test_cifar_str_keys_and_any_batch_sizes(tmp_path):
    fx = write_cifar_folder(tmp_path, per_batch=(3, 0, 7, 1, 5), test_size=2, str_keys=True)
    data = load_cifar10(tmp_path, verify_checksums=False)
    assert len(data.train_images) == 16 and len(data.test_images) == 2
    np.testing.assert_array_equal(data.train_images, fx.train_images)


def test_cifar_folder_md5_pass_and_fail(tmp_path, monkeypatch):
    fx = write_cifar_folder(tmp_path)
    with pytest.raises(DatasetError) as exc:  # the real md5 table cannot match fixture files
        load_cifar10(tmp_path)
    msg = one_line(exc)
    assert "data_batch_1" in msg and "md5 mismatch" in msg
    assert cifar_mod.CIFAR10_MD5["data_batch_1"] in msg and fx.md5["data_batch_1"] in msg
    assert "verify_checksums=False" in msg
    patch_official_md5(monkeypatch, fx)
    data = load_cifar10(tmp_path)  # verify_checksums=True by default
    np.testing.assert_array_equal(data.test_images, fx.test_images)
    (fx.path / "test_batch").write_bytes(fx.files["test_batch"] + b"\0")  # modified copy
    with pytest.raises(DatasetError, match="test_batch: md5 mismatch"):
        load_cifar10(tmp_path)
    # ...which still loads (a trailing byte after the pickle is ignored) with the check off
    load_cifar10(tmp_path, verify_checksums=False)


def test_cifar_archive_md5_pass_and_fail(tmp_path, monkeypatch):
    fx = write_cifar_archive(tmp_path)
    with pytest.raises(DatasetError) as exc:
        load_cifar10(tmp_path)
    msg = one_line(exc)
    assert CIFAR_ARCHIVE in msg and "c58f30108f718f92721af3b95e74349a" in msg and fx.md5[CIFAR_ARCHIVE] in msg
    patch_official_md5(monkeypatch, fx)
    assert len(load_cifar10(tmp_path).train_labels) == 40


def test_cifar_missing_dataset_message(tmp_path):
    with pytest.raises(DatasetError) as exc:
        load_cifar10(tmp_path)
    msg = one_line(exc)
    for part in (CIFAR_ARCHIVE, CIFAR_FOLDER, "data_batch_1", "test_batch", str(tmp_path), "cs.toronto.edu"):
        assert part in msg
    with pytest.raises(DatasetError):
        CIFAR10DataModule(str(tmp_path)).prepare_data()
    with pytest.raises(DatasetError):
        load_cifar10(tmp_path / "does-not-exist")


def test_cifar_incomplete_folder(tmp_path):
    fx = write_cifar_folder(tmp_path)
    (fx.path / "data_batch_3").unlink()
    with pytest.raises(DatasetError) as exc:
        load_cifar10(tmp_path, verify_checksums=False)
    msg = one_line(exc)
    assert "data_batch_3" in msg and "incomplete" in msg and "data_batch_2" not in msg


def test_cifar_incomplete_folder_falls_back_to_archive(tmp_path):
    fx = write_cifar_archive(tmp_path)
    (tmp_path / CIFAR_FOLDER).mkdir()
    (tmp_path / CIFAR_FOLDER / "data_batch_1").write_bytes(fx.files["data_batch_1"])
    assert len(load_cifar10(tmp_path, verify_checksums=False).train_images) == 40


def _bad(**kw) -> bytes:
    d = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    d.update({k.encode(): v for k, v in kw.items() if v is not None})
    for k, v in kw.items():
        if v is None:
            del d[k.encode()]
    return py2_pickle(d)


BAD_BATCHES = {
    "truncated": (lambda good: good[: len(good) // 2], "cannot unpickle"),
    "empty": (lambda good: b"", "cannot unpickle"),
    "garbage": (lambda good: b"this is not a pickle at all", "cannot unpickle"),
    "not_a_dict": (lambda good: py2_pickle([1, 2, 3]), "cannot unpickle"),
    "evil_global": (lambda good: pickle.dumps(os.getcwd, protocol=2), "refusing"),
    "no_labels": (lambda good: _bad(labels=None), "'labels' missing"),
    "no_data": (lambda good: _bad(data=None), "'data' missing"),
    "data_int64": (lambda good: _bad(data=np.zeros((4, 3072), np.int64)), "uint8 N x 3072"),
    "data_width": (lambda good: _bad(data=np.zeros((4, 3000), np.uint8)), "uint8 N x 3072"),
    "data_3d": (lambda good: _bad(data=np.zeros((4, 3, 1024), np.uint8)), "uint8 N x 3072"),
    "data_bytes": (lambda good: _bad(data=b"\0" * 3072 * 4), "uint8 N x 3072"),
    "label_count": (lambda good: _bad(labels=[0, 1, 2]), "4 images but 3 labels"),
    "label_10": (lambda good: _bad(labels=[0, 1, 10, 3]), "label 10 out of range 0..9"),
    "label_negative": (lambda good: _bad(labels=[0, -1, 2, 3]), "label -1 out of range"),
    "label_float": (lambda good: _bad(labels=[0.5, 1.0, 2.0, 3.0]), "list of ints"),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
@pytest.mark.parametrize("form", ["folder", "archive"])
def test_cifar_malformed_batch(tmp_path, case, form):
    make, expected = BAD_BATCHES[case]
    fx = make_cifar_files()
    fx.files["data_batch_4"] = make(fx.files["data_batch_4"])
    (write_cifar_folder if form == "folder" else write_cifar_archive)(tmp_path, fx)
    with pytest.raises(DatasetError) as exc:
        load_cifar10(tmp_path, verify_checksums=False)
    msg = one_line(exc)
    assert "data_batch_4" in msg and expected in msg, msg


def test_cifar_truncated_archive(tmp_path, monkeypatch):
    fx = write_cifar_archive(tmp_path)
    raw = fx.path.read_bytes()
    fx.path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(DatasetError) as exc:  # with the check: the archive md5 fails first
        load_cifar10(tmp_path)
    assert "md5 mismatch" in one_line(exc)
    with pytest.raises(DatasetError) as exc:
        load_cifar10(tmp_path, verify_checksums=False)
    assert CIFAR_ARCHIVE in one_line(exc)
    fx.path.write_bytes(b"not a gzip file")
    with pytest.raises(DatasetError) as exc:
        load_cifar10(tmp_path, verify_checksums=False)
    assert CIFAR_ARCHIVE in one_line(exc)


def test_cifar_archive_without_a_member(tmp_path):
    fx = make_cifar_files()
    del fx.files[CIFAR_TEST]
    with tarfile.open(tmp_path / CIFAR_ARCHIVE, "w:gz") as tar:
        for name, data in fx.files.items():
            info = tarfile.TarInfo(f"{CIFAR_FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    with pytest.raises(DatasetError) as exc:
        load_cifar10(tmp_path, verify_checksums=False)
    assert f"{CIFAR_FOLDER}/test_batch" in one_line(exc)


def test_cifar_datamodule_defaults_evaluate_on_test_set(tmp_path):
    fx = write_cifar_folder(tmp_path, per_batch=10, test_size=9)
    dm = CIFAR10DataModule(str(tmp_path), batch_size=16, verify_checksums=False)
    assert dm.num_classes == 10 and dm.batch_size == 16
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_train == 50
    mean, std = channel_stats(fx.train_images)
    np.testing.assert_allclose(
        dm.mean, fx.train_images.reshape(50, 3, -1).transpose(1, 0, 2).reshape(3, -1).mean(1) / 255
    )
    np.testing.assert_allclose(dm.std, fx.train_images.transpose(1, 0, 2, 3).reshape(3, -1).std(1) / 255)
    assert dm.mean == mean and dm.std == std
    val = list(dm.val_dataloader())
    test = list(dm.test_dataloader())
    assert sum(len(y) for _, y in val) == 9
    torch.testing.assert_close(torch.cat([x for x, _ in val]), torch.from_numpy(fx.test_images))
    torch.testing.assert_close(torch.cat([y for _, y in test]), torch.from_numpy(fx.test_labels))
    sizes = [len(y) for _, y in dm.train_dataloader()]
    assert sizes == [16, 16, 16, 2]  # drop_last=False


def test_cifar_datamodule_val_split(tmp_path):
    fx = write_cifar_folder(tmp_path, per_batch=10, test_size=9)
    dm = CIFAR10DataModule(str(tmp_path), batch_size=8, val_split=12, verify_checksums=False, seed=3)
    dm.setup("fit")
    assert dm.num_train == 38 and len(dm.train_dataset) == 38 and len(dm.val_dataset) == 12
    tr, va = dm.train_dataset.indices.numpy(), dm.val_dataset.indices.numpy()
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(50))
    val_images = torch.cat([x for x, _ in dm.val_dataloader()])
    torch.testing.assert_close(val_images, torch.from_numpy(fx.train_images[va]))
    assert sum(len(y) for _, y in dm.test_dataloader()) == 9  # test set unchanged
    # mean/std stay the full training set's statistics, independent of the split
    assert (dm.mean, dm.std) == channel_stats(fx.train_images)
    same = CIFAR10DataModule(str(tmp_path), val_split=12, verify_checksums=False, seed=3)
    same.setup("fit")
    other = CIFAR10DataModule(str(tmp_path), val_split=12, verify_checksums=False, seed=4)
    other.setup("fit")
    assert same.val_dataset.indices.tolist() == va.tolist()
    assert other.val_dataset.indices.tolist() != va.tolist()
    with pytest.raises(ValueError, match="val_split"):
        CIFAR10DataModule(str(tmp_path), val_split=50, verify_checksums=False).setup("fit")


def test_cifar_datamodule_checks_md5_by_default(tmp_path):
    write_cifar_folder(tmp_path)
    dm = CIFAR10DataModule(str(tmp_path))
    with pytest.raises(DatasetError, match="md5 mismatch"):
        dm.setup("fit")


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


# ------------------------------------------------------------------------------------ augmentation
def _find_offset(out: np.ndarray, img: np.ndarray, pad: int):
    """All (dy, dx, flip) for which ``out`` is the crop of the zero-padded ``img`` (then flipped)."""
    c, h, w = img.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), img.dtype)
    padded[:, pad : pad + h, pad : pad + w] = img
    hits = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flip in (False, True):
                if np.array_equal(out, crop[:, :, ::-1] if flip else crop):
                    hits.append((dy, dx, flip))
    return hits


def test_random_crop_flip_matches_padded_crops():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (400, 3, 32, 32), dtype=torch.uint8, generator=g)  # no zeros inside
    out = random_crop_flip(images, padding=4, generator=g)
    assert out.shape == images.shape and out.dtype == torch.uint8 and out.device == images.device
    seen = set()
    for i in range(len(images)):
        hits = _find_offset(out[i].numpy(), images[i].numpy(), 4)
        assert len(hits) == 1, (i, hits)
        seen.add(hits[0])
    offsets = {(dy, dx) for dy, dx, _ in seen}
    assert len(offsets) > 70  # of 81: offsets are per image and cover 0..8 in both axes
    assert {dy for dy, _ in offsets} == set(range(9)) == {dx for _, dx in offsets}
    flips = sum(f for _, _, f in seen)
    assert 0.35 < flips / len(seen) < 0.65


def test_random_crop_known_shift_zero_fill():
    img = torch.arange(1, 1 + 3 * 32 * 32, dtype=torch.int32).reshape(1, 3, 32, 32)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        state = g.get_state()
        out = random_crop_flip(img, padding=4, generator=g)[0]
        g2 = torch.Generator()
        g2.set_state(state)
        dy, dx = torch.randint(0, 9, (2, 1), generator=g2)[:, 0].tolist()
        flip = bool(torch.rand(1, generator=g2)[0] < 0.5)
        expected = torch.nn.functional.pad(img, (4, 4, 4, 4))[0, :, dy : dy + 32, dx : dx + 32]
        if flip:
            expected = expected.flip(-1)
        torch.testing.assert_close(out, expected)
        zeros = (out == 0).all(0)  # zero rows/columns exactly where the crop left the image
        assert zeros.sum().item() == 32 * 32 - (32 - abs(dy - 4)) * (32 - abs(dx - 4))


def test_flip_only_and_independence():
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    batch = img.expand(256, -1, -1, -1).contiguous()
    out = random_crop_flip(batch, padding=0)
    same = (out == img).flatten(1).all(1)
    mirrored = (out == img.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0.3 < same.float().mean().item() < 0.7
    crops = random_crop_flip(batch, padding=4)
    assert len({bytes(c.numpy().tobytes()) for c in crops}) > 100  # per-image, not per-batch, randomness
    assert random_crop_flip(batch[:0]).shape == (0, 3, 32, 32)


def test_random_crop_flip_uses_global_rng():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(5)
    a = random_crop_flip(x)
    torch.manual_seed(5)
    b = random_crop_flip(x)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, random_crop_flip(x))


def test_normalize():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = normalize(x, mean, std)
    ref = (x.double() / 255 - torch.tensor(mean, dtype=torch.double).view(1, 3, 1, 1)) / torch.tensor(
        std, dtype=torch.double
    ).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    cl = normalize(x, mean, std, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, out)


def test_normalized_training_set_has_zero_mean_unit_std():
    dm = BuiltinDataModule(num_train=300, num_test=10, augment=False)
    x = dm.transform_batch(dm.train_dataset.__getitems__(list(range(300))), training=True)[0]
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------- the data path
def test_getitems_batches_through_a_real_dataloader():
    class NoPerItem(BatchTensorDataset):
        def __getitem__(self, index):
            raise AssertionError("per-image access")

    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 32, 32).contiguous()
    ds = NoPerItem(images, torch.arange(50))
    loader = DataLoader(
        ds, batch_size=16, shuffle=True, collate_fn=collate_batch, generator=torch.Generator().manual_seed(0)
    )
    batches = list(loader)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]
    ys = torch.cat([y for _, y in batches])
    assert sorted(ys.tolist()) == list(range(50)) and ys.tolist() != list(range(50))
    for x, y in batches:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32) and torch.equal(x[:, 0, 0, 0].long(), y)
    assert pickle.loads(pickle.dumps(collate_batch)) is collate_batch


def _epoch_labels(loader, epoch):
    loader.sampler.set_epoch(epoch)  # what Lightning does at every epoch start
    return torch.cat([y for _, y in loader])


def test_train_order_is_a_pure_function_of_seed_and_epoch():
    def loader(seed):
        return BuiltinDataModule(batch_size=64, num_train=200, num_test=10, seed=seed).train_dataloader()

    a, b = loader(0), loader(0)
    e0, e1 = _epoch_labels(a, 0), _epoch_labels(a, 1)
    assert torch.equal(_epoch_labels(b, 1), e1) and torch.equal(_epoch_labels(b, 0), e0)  # any order of epochs
    assert not torch.equal(e0, e1) and not torch.equal(e0, _epoch_labels(loader(1), 0))
    assert sorted(e0.tolist()) == sorted(a.dataset.labels.tolist())
    dm = BuiltinDataModule(batch_size=64, num_train=200, num_test=10)
    val = torch.cat([y for _, y in dm.val_dataloader()])
    torch.testing.assert_close(val, dm.test_dataset.labels)  # eval loaders do not shuffle


def test_iterating_loaders_does_not_touch_the_global_rng():
    dm = BuiltinDataModule(batch_size=64, num_train=200, num_test=100)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        list(loader)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("stop_after", [0, 1, 2, 4])
def test_loader_resumes_mid_epoch_from_its_state_dict(stop_after):
    """Stop after k batches of epoch 1, restore into a fresh loader: the rest of the epoch is identical."""
    dm = BuiltinDataModule(batch_size=48, num_train=200, num_test=10)  # 5 batches: 48 x 4 + 8
    full = dm.train_dataloader()
    full.sampler.set_epoch(1)
    reference = [y for _, y in full]
    interrupted = dm.train_dataloader()
    interrupted.sampler.set_epoch(1)
    it = iter(interrupted)
    seen = [next(it)[1] for _ in range(stop_after)]
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "batches": stop_after}
    resumed = BuiltinDataModule(batch_size=48, num_train=200, num_test=10).train_dataloader()
    resumed.load_state_dict(state)
    assert len(resumed) == 5  # progress counters compare against the full epoch
    resumed.sampler.set_epoch(1)
    rest = [y for _, y in resumed]
    assert len(seen) + len(rest) == len(reference)
    for got, want in zip(seen + rest, reference, strict=True):
        assert torch.equal(got, want)
    assert resumed.state_dict() == {"epoch": 1, "batches": 5}
    assert torch.equal(_epoch_labels(resumed, 2), _epoch_labels(full, 2))  # later epochs start from the top


def test_a_restored_position_for_another_epoch_is_ignored():
    dm = BuiltinDataModule(batch_size=50, num_train=200, num_test=10)
    loader = dm.train_dataloader()
    loader.load_state_dict({"epoch": 3, "batches": 4})  # saved at the very end of epoch 3
    assert torch.equal(_epoch_labels(loader, 4), _epoch_labels(dm.train_dataloader(), 4))


def test_ddp_shards_form_the_same_global_batches():
    """2 ranks x batch 32 see, batch by batch, exactly the 64 images of a 1-process batch of 64."""
    from types import SimpleNamespace

    def loader(batch_size, world_size, rank):
        dm = BuiltinDataModule(batch_size=batch_size, num_train=256, num_test=10)
        dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank, training=True)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(2)
        return [x for x, _ in loader]

    single = loader(64, 1, 0)
    ranks = [loader(32, 2, r) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 4
    for whole, a, b in zip(single, *ranks, strict=True):
        key = lambda t: sorted(map(bytes, t.numpy()))  # noqa: E731 - images as sortable bytes
        assert key(whole) == key(torch.cat([a, b]))


@pytest.mark.parametrize("channels_last", [False, True])
def test_on_after_batch_transfer(channels_last):
    dm = BuiltinDataModule(batch_size=32, num_train=64, num_test=32, channels_last=channels_last)
    batch = next(iter(dm.train_dataloader()))
    plain = normalize(batch[0], dm.mean, dm.std)
    for training, augment in [(False, True), (True, False)]:
        dm.augment = augment
        dm.trainer = SimpleNamespace(training=training)
        x, y = dm.on_after_batch_transfer(batch, 0)
        torch.testing.assert_close(x, plain)
        assert y is batch[1]
        assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    dm.augment = True
    dm.trainer = SimpleNamespace(training=True)
    x, _ = dm.on_after_batch_transfer(batch, 0)
    assert x.dtype == torch.float32 and x.shape == (32, 3, 32, 32) and not torch.equal(x, plain)
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    # the augmented batch is a normalized crop/flip of the raw one: zero padding maps to -mean/std
    lo = torch.tensor([-m / s for m, s in zip(dm.mean, dm.std, strict=True)]).view(1, 3, 1, 1)
    assert bool(torch.isclose(x, lo.expand_as(x)).any())
    assert dm.on_after_batch_transfer((x, batch[1]), 0)[0] is x  # already float: left alone
    dm.trainer = None
    torch.testing.assert_close(dm.on_after_batch_transfer(batch, 0)[0], plain)


def test_lightning_trainer_runs_on_builtin_data():
    import lightning as L

    seen = {}

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))

        def training_step(self, batch, batch_idx):
            x, y = batch
            seen.setdefault("train", []).append((x.dtype, tuple(x.shape)))
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            seen.setdefault("val", []).append(batch[0].dtype)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = BuiltinDataModule(batch_size=16, num_train=64, num_test=32, eval_batch_size=32)
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        val_check_interval=2,
    )
    trainer.fit(Tiny(), datamodule=dm)
    assert seen["train"] == [(torch.float32, (16, 3, 32, 32))] * 2
    assert seen["val"] == [torch.float32]


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


def test_cifar_batch_bytes_helper_roundtrip():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    d = pickle.loads(cifar_batch_bytes(x, [1, 2]), encoding="latin1")
    np.testing.assert_array_equal(d[b"data"].reshape(2, 3, 32, 32), x)


def test_worker_processes_get_the_same_batches():
    dm = BuiltinDataModule(batch_size=32, num_train=100, num_test=10, num_workers=1)
    single = BuiltinDataModule(batch_size=32, num_train=100, num_test=10)
    for (x1, y1), (x2, y2) in zip(dm.train_dataloader(), single.train_dataloader(), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


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


def test_readers_do_not_import_lightning():
    import subprocess
    import sys

    code = (
        "import sys, wdlab.data.cifar, wdlab.data.imagenet32, wdlab.data.mnist, wdlab.data.builtin, "
        "wdlab.data.augment, wdlab.data.tensors, wdlab.data.device; "
        "assert 'lightning' not in sys.modules and 'lightning.pytorch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------- the command line sees every option
#: ImageDataModule's options: (type, default) as ``--data.help`` prints them.
SHARED_OPTIONS = {
    "batch_size": ("int", "128"), "val_split": ("int", "0"), "eval_batch_size": ("int | null", "null"),
    "augment": ("bool", "True"), "seed": ("int | null", "0"), "num_workers": ("int", "0"),
    "channels_last": ("bool | null", "null"), "on_device": ("bool | null", "null"),
    "train_subset": ("int | null", "null"), "split_seed": ("int | null", "null"),
}
#: Each datamodule's own options, and whether it needs --data.root.
OWN_OPTIONS = {
    "CIFAR10DataModule": {"root": ("str", None), "verify_checksums": ("bool", "True")},
    "ImageNet32DataModule": {"root": ("str", None), "cache_dir": ("str | null", "null")},
    "MNISTDataModule": {"root": ("str", None)},
    "FashionMNISTDataModule": {"root": ("str", None)},
    "BuiltinDataModule": {"num_train": ("int", "2000"), "num_test": ("int", "2000")},
}


def _cli_output(capsys, *args: str) -> str:
    from wdlab.cli import main

    capsys.readouterr()
    try:
        code = main(["fit", *args])
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    assert code in (0, None), captured.err
    return captured.out


@pytest.mark.parametrize("name", sorted(OWN_OPTIONS))
def test_help_and_print_config_list_every_data_option_of_a_subclass(name, capsys):
    """The subclasses take the shared options as **kwargs: jsonargparse must follow them to the base class."""
    import re

    import yaml

    expected = {**OWN_OPTIONS[name], **SHARED_OPTIONS}
    text = _cli_output(capsys, "--data.help", f"wdlab.data.{name}")
    listed = {
        m["name"]: (m["type"], m["default"])
        for m in re.finditer(r"--data\.(?P<name>\w+)[^\n(]*\s*\((?:required, )?type: (?P<type>[^,)]+)"
                             r"(?:, default: (?P<default>[^)]+))?\)", text)
    }
    assert listed == expected
    root = ["--data.root", "somewhere"] if "root" in expected else []
    config = yaml.safe_load(_cli_output(capsys, "--data", f"wdlab.data.{name}", *root, "--print_config"))
    init_args = config["data"]["init_args"]
    assert set(init_args) == set(expected)
    for option, (_type, default) in expected.items():
        if default is not None:
            assert init_args[option] == yaml.safe_load(default), option
