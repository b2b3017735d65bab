"""wdlab.data.cifar: the CIFAR-10 reader on files in the official formats (written by tests/data_files.py),
its one-line errors, and CIFAR10DataModule."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from data_files import (
    CIFAR_ARCHIVE,
    CIFAR_FOLDER,
    CIFAR_TEST,
    cifar_batch_bytes,
    make_cifar_files,
    one_line,
    py2_pickle,
    write_cifar_archive,
    write_cifar_folder,
)

import wdlab.data.cifar as cifar_mod
from wdlab.data import (
    CIFAR10DataModule,
    DatasetError,
    channel_stats,
    load_cifar10,
)


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


def test_cifar_batch_bytes_helper_roundtrip():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    d = pickle.loads(cifar_batch_bytes(x, [1, 2]), encoding="latin1")
    np.testing.assert_array_equal(d[b"data"].reshape(2, 3, 32, 32), x)
