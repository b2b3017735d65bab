"""MNIST and Fashion-MNIST: the IDX reader (files written here in exactly the official format, plain and gzip),
its one-line errors, the 28x28 -> 3x32x32 padding, the datamodules (statistics, validation split, augmentation,
exact resume) and the command line ``wdlab fit --config configs/quickstart.yaml --data ... --data.root DIR``.

One test trains on the real Fashion-MNIST files of Debian's package ``dataset-fashion-mnist``; it skips when they
are absent, except in CI (``CI=true``), which installs the package.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_files import DEBIAN_FASHION_MNIST, real_fashion_mnist
from paths import REPO
from resume_helpers import load_checkpoint

from wdlab.cli import main
from wdlab.data import (
    DatasetError,
    FashionMNISTDataModule,
    MNISTDataModule,
    channel_stats,
    load_mnist,
    read_idx_images,
    read_idx_labels,
    to_rgb32,
)

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """One IDX file: magic (0x0000 08 <ndim>), each dimension as a big-endian 32-bit int, the bytes row-major."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x00000800 + array.ndim if magic is None else magic
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.tobytes()


def write_file(root: Path, name: str, data: bytes, gz: bool) -> Path:
    path = root / (f"{name}.gz" if gz else name)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(root: Path, n_train: int = 40, n_test: int = 12, gz: bool | tuple[bool, ...] = False,
                seed: int = 0) -> dict[str, np.ndarray]:
    """The four official files under ``root`` (``gz``: all, none, or per file in the order train images,
    train labels, test images, test labels); returns the arrays written, by file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, n_train).astype(np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, n_test).astype(np.uint8),
    }
    flags = (gz,) * 4 if isinstance(gz, bool) else gz
    root.mkdir(parents=True, exist_ok=True)
    for (name, array), flag in zip(arrays.items(), flags, strict=True):
        write_file(root, name, idx_bytes(array), flag)
    return arrays


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------------- the reader
@pytest.mark.parametrize("gz", [False, True, (True, False, False, True)], ids=["plain", "gz", "mixed"])
def test_reads_the_official_files_plain_or_gz(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    data = load_mnist(tmp_path)
    assert data.train_images.shape == (40, 1, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (12, 1, 28, 28) and data.train_images.flags.c_contiguous
    assert data.train_labels.dtype == np.int64 and data.test_labels.dtype == np.int64
    np.testing.assert_array_equal(data.train_images[:, 0], written[TRAIN_IMAGES])
    np.testing.assert_array_equal(data.train_labels, written[TRAIN_LABELS])
    np.testing.assert_array_equal(data.test_images[:, 0], written[TEST_IMAGES])
    np.testing.assert_array_equal(data.test_labels, written[TEST_LABELS])


def test_idx_layout_is_big_endian_and_row_major(tmp_path):
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 0, 1], image[0, 27, 3] = 11, 22  # row 0 column 1; row 27 column 3
    raw = idx_bytes(image)
    assert raw[:16] == bytes.fromhex("00000803" "00000001" "0000001c" "0000001c")  # the official header of 1 image
    assert raw[16 + 1] == 11 and raw[16 + 27 * 28 + 3] == 22
    path = write_file(tmp_path, TRAIN_IMAGES, raw, gz=False)
    got = read_idx_images(path)
    assert got[0, 0, 1] == 11 and got[0, 27, 3] == 22 and int(got.sum()) == 33
    labels = write_file(tmp_path, TRAIN_LABELS, idx_bytes(np.array([9, 0, 3], np.uint8)), gz=True)
    assert read_idx_labels(labels).tolist() == [9, 0, 3]


def test_padding_to_3x32x32():
    rng = np.random.default_rng(1)
    images = rng.integers(1, 256, (5, 1, 28, 28), dtype=np.uint8)  # no zero pixel inside
    out = to_rgb32(images)
    assert out.shape == (5, 3, 32, 32) and out.dtype == np.uint8
    for c in range(3):  # the one channel, repeated, 2 pixels in from every side
        np.testing.assert_array_equal(out[:, c, 2:30, 2:30], images[:, 0])
    border = out.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()  # a zero frame 2 pixels wide
    with pytest.raises(ValueError, match="28"):
        to_rgb32(images[:, :, :27])


def _truncate_gz(root: Path) -> Path:
    raw = gzip.compress(idx_bytes(np.zeros((40, 28, 28), np.uint8)))
    return write_file_raw(root / f"{TRAIN_IMAGES}.gz", raw[: len(raw) // 2])


def write_file_raw(path: Path, data: bytes) -> Path:
    for other in (path.with_suffix(""), path.with_name(path.name + ".gz")):  # one copy of the file only
        if other.exists() and other != path:
            other.unlink()
    path.write_bytes(data)
    return path


# each case breaks one file of a valid release: (what it does to the folder) -> (the file named, words expected)
BROKEN = {
    "images_with_label_magic": (
        lambda r: write_file_raw(r / TRAIN_IMAGES, idx_bytes(np.zeros((40, 28, 28), np.uint8), magic=0x801)),
        TRAIN_IMAGES, "magic 0x00000801, expected 0x00000803"),
    "labels_with_image_magic": (
        lambda r: write_file_raw(r / TEST_LABELS, idx_bytes(np.zeros(12, np.uint8), magic=0x803)),
        TEST_LABELS, "magic 0x00000803, expected 0x00000801"),
    "int32_images": (  # type byte 0x0C (int) instead of 0x08 (unsigned byte)
        lambda r: write_file_raw(r / TRAIN_IMAGES, idx_bytes(np.zeros((40, 28, 28), np.uint8), magic=0xC03)),
        TRAIN_IMAGES, "expected 0x00000803"),
    "truncated_images": (
        lambda r: write_file_raw(r / TRAIN_IMAGES, idx_bytes(np.zeros((40, 28, 28), np.uint8))[:-5]),
        TRAIN_IMAGES, "truncated"),
    "truncated_header": (
        lambda r: write_file_raw(r / TEST_LABELS, idx_bytes(np.zeros(12, np.uint8))[:6]), TEST_LABELS, "truncated"),
    "empty_file": (lambda r: write_file_raw(r / TRAIN_LABELS, b""), TRAIN_LABELS, "truncated"),
    "longer_than_header": (
        lambda r: write_file_raw(r / TEST_IMAGES, idx_bytes(np.zeros((12, 28, 28), np.uint8)) + b"\0"),
        TEST_IMAGES, "longer than its header says"),
    "truncated_gzip": (_truncate_gz, f"{TRAIN_IMAGES}.gz", "cannot read"),
    "not_gzip": (lambda r: write_file_raw(r / f"{TEST_LABELS}.gz", idx_bytes(np.zeros(12, np.uint8))),
                 f"{TEST_LABELS}.gz", "not gzip"),
    "images_32x32": (
        lambda r: write_file_raw(r / TRAIN_IMAGES, idx_bytes(np.zeros((40, 32, 32), np.uint8))),
        TRAIN_IMAGES, "32x32 pixels, expected 28x28"),
    "label_out_of_range": (
        lambda r: write_file_raw(r / TRAIN_LABELS, idx_bytes(np.array([1] * 39 + [10], np.uint8))),
        TRAIN_LABELS, "label 10 out of range 0..9"),
    "count_mismatch": (
        lambda r: write_file_raw(r / TEST_LABELS, idx_bytes(np.zeros(11, np.uint8))),
        TEST_LABELS, "11 labels for the 12 images"),
    "no_test_images": (
        lambda r: (write_file_raw(r / TEST_IMAGES, idx_bytes(np.zeros((0, 28, 28), np.uint8))),
                   write_file_raw(r / TEST_LABELS, idx_bytes(np.zeros(0, np.uint8)))),
        TEST_IMAGES, "holds no images"),
    "missing_file": (lambda r: (r / TEST_LABELS).unlink(), TEST_LABELS, "incomplete"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_release_fails_in_one_line_naming_the_file_and_the_fix(tmp_path, case):
    breaks, name, words = BROKEN[case]
    write_mnist(tmp_path)
    breaks(tmp_path)
    with pytest.raises(DatasetError) as exc:
        load_mnist(tmp_path, "Fashion-MNIST")
    msg = one_line(exc)
    assert name in msg and words in msg, msg
    if case != "missing_file":
        assert msg.startswith(str(tmp_path / name)), msg
    assert "https://github.com/zalandoresearch/fashion-mnist" in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_missing_release_names_every_file_and_where_to_get_it(tmp_path):
    with pytest.raises(DatasetError) as exc:
        MNISTDataModule(str(tmp_path)).prepare_data()
    msg = one_line(exc)
    assert f"MNIST not found in {tmp_path}" in msg
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        assert f"{name}[.gz]" in msg
    assert "https://yann.lecun.com/exdb/mnist/" in msg and "nothing is downloaded" in msg


# --------------------------------------------------------------------------------------------- datamodules
def test_datamodule_serves_padded_rgb_images_with_the_official_training_statistics(tmp_path):
    written = write_mnist(tmp_path, n_train=40, n_test=12, gz=True)
    dm = FashionMNISTDataModule(str(tmp_path), batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 10 and dm.num_train == 40 and dm.image_shape == (3, 32, 32)
    raw = written[TRAIN_IMAGES].astype(np.float64) / 255  # the 28x28 pixels, not the padding
    assert dm.mean == pytest.approx((raw.mean(),) * 3, abs=1e-12)
    assert dm.std == pytest.approx((raw.std(),) * 3, abs=1e-12)
    assert (dm.mean, dm.std) == tuple(s * 3 for s in channel_stats(written[TRAIN_IMAGES][:, None]))
    test = list(dm.test_dataloader())
    images = torch.cat([x for x, _ in test])
    assert images.dtype == torch.uint8 and images.shape == (12, 3, 32, 32)
    np.testing.assert_array_equal(images.numpy(), to_rgb32(written[TEST_IMAGES][:, None]))
    np.testing.assert_array_equal(torch.cat([y for _, y in test]).numpy(), written[TEST_LABELS])
    val = torch.cat([y for _, y in dm.val_dataloader()])  # no val_split: validation on the test set (the paper)
    np.testing.assert_array_equal(val.numpy(), written[TEST_LABELS])
    assert [len(y) for _, y in dm.train_dataloader()] == [16, 16, 8]


def test_val_split_holds_out_seeded_training_images(tmp_path):
    written = write_mnist(tmp_path, n_train=40, n_test=12)
    dm = MNISTDataModule(str(tmp_path), batch_size=8, val_split=10, seed=3)
    dm.setup("fit")
    assert dm.num_train == 30 and len(dm.val_dataset) == 10
    train_idx, val_idx = dm.train_dataset.indices.numpy(), dm.val_dataset.indices.numpy()
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(40))
    val = list(dm.val_dataloader())
    np.testing.assert_array_equal(torch.cat([x for x, _ in val]).numpy(),
                                  to_rgb32(written[TRAIN_IMAGES][val_idx][:, None]))
    np.testing.assert_array_equal(torch.cat([y for _, y in val]).numpy(), written[TRAIN_LABELS][val_idx])
    assert sum(len(y) for _, y in dm.test_dataloader()) == 12  # the test set stays whole
    assert (dm.mean, dm.std) == tuple(s * 3 for s in channel_stats(written[TRAIN_IMAGES][:, None]))  # all 40
    other = MNISTDataModule(str(tmp_path), val_split=10, seed=4)
    other.setup("fit")
    assert other.val_dataset.indices.tolist() != val_idx.tolist()
    with pytest.raises(ValueError, match="val_split=40 leaves no training images"):
        MNISTDataModule(str(tmp_path), val_split=40).setup("fit")


def _crops(image: np.ndarray, padding: int = 4) -> list[np.ndarray]:
    """Every crop of ``image`` (C, H, W) zero-padded by ``padding``: what the augmentation may return unflipped."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * padding, w + 2 * padding), image.dtype)
    padded[:, padding : padding + h, padding : padding + w] = image
    return [padded[:, dy : dy + h, dx : dx + w] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]


@pytest.mark.parametrize("datamodule, flips", [(MNISTDataModule, False), (FashionMNISTDataModule, True)])
def test_augmentation_crops_both_and_flips_fashion_only(tmp_path, datamodule, flips):
    """Digits are not mirror-symmetric classes; clothes are: MNIST gets crops, Fashion-MNIST crops and flips."""
    write_mnist(tmp_path, n_train=32, n_test=4)
    dm = datamodule(str(tmp_path), batch_size=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    x, _ = dm.transform_batch(batch, training=True)
    mean, std = torch.tensor(dm.mean).view(1, 3, 1, 1), torch.tensor(dm.std).view(1, 3, 1, 1)
    out = ((x * std + mean) * 255).round().to(torch.uint8).numpy()  # back to the pixels
    mirrored = 0
    for got, source in zip(out, batch[0].numpy(), strict=True):
        crops = _crops(source)
        unflipped = any(np.array_equal(got, crop) for crop in crops)
        flipped = any(np.array_equal(got, crop[:, :, ::-1]) for crop in crops)
        assert unflipped or flipped, "not a padded crop of the source image"
        mirrored += flipped and not unflipped
    if flips:
        assert 4 <= mirrored <= 28  # about half of the 32 images (a fair coin each)
    else:
        assert mirrored == 0
    assert not np.array_equal(out, batch[0].numpy())  # augmented at all


def test_the_shared_options_reach_the_base_class_and_its_hyperparameters(tmp_path):
    dm = MNISTDataModule(str(tmp_path), batch_size=7, eval_batch_size=9, augment=False, seed=5, channels_last=True)
    assert (dm.batch_size, dm.eval_batch_size, dm.augment, dm.seed, dm.channels_last) == (7, 9, False, 5, True)
    assert dict(dm.hparams) == {
        "root": str(tmp_path), "batch_size": 7, "val_split": 0, "eval_batch_size": 9, "augment": False, "seed": 5,
        "num_workers": 0, "channels_last": True, "on_device": None, "train_subset": None, "split_seed": None,
    }
    with pytest.raises(TypeError, match="verify_checksums"):
        MNISTDataModule(str(tmp_path), verify_checksums=False)  # CIFAR-10's option, not an MNIST one


# ------------------------------------------------------------------------------------------ the command line
def _fit(*args: str) -> int:
    try:
        return main(["fit", *args])
    except SystemExit as exit_info:  # what LightningCLI raises on a bad option
        return int(exit_info.code or 0)


@pytest.mark.trains
@pytest.mark.slow
@pytest.mark.parametrize("name", ["MNISTDataModule", "FashionMNISTDataModule"])
def test_the_quickstart_trains_on_it_with_only_the_data_changed(tmp_path, monkeypatch, name):
    """``wdlab fit --config configs/quickstart.yaml --data wdlab.data.<name> --data.root DIR``, shortened to
    2 epochs: the quickstart's batch_size, seed and channels_last carry over, nothing builtin-specific breaks."""
    write_mnist(tmp_path / "data", n_train=160, n_test=40, gz=True)
    monkeypatch.chdir(tmp_path)
    assert _fit("--config", QUICKSTART, "--data", f"wdlab.data.{name}", "--data.root", str(tmp_path / "data"),
                "--trainer.max_epochs", "2") == 0
    run = tmp_path / "runs" / "quickstart"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["class_path"] == f"wdlab.data.{name}"
    assert config["data"]["init_args"] == {
        "root": str(tmp_path / "data"), "batch_size": 64, "val_split": 0, "eval_batch_size": None,
        "augment": True, "seed": 0, "num_workers": 0, "channels_last": True, "on_device": None,
        "train_subset": None, "split_seed": None,
    }
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 6  # 160 images at batch 64: 3 steps per epoch (the last one of 32)
    assert last["datamodule_hyper_parameters"]["root"] == str(tmp_path / "data")
    from wdlab.experiments.results import read_scalars

    scalars = read_scalars(run)
    assert [step for step, _ in scalars["val/err"]] == [2, 5] and len(scalars["test/err"]) == 1


@pytest.mark.trains
@pytest.mark.slow
def test_an_interrupted_run_resumes_exactly(tmp_path):
    """SIGTERM mid-epoch, then --ckpt_path last: the same weights as the uninterrupted run (flips and crops
    draw from the checkpointed RNG; the loader resumes at its position)."""
    write_mnist(tmp_path / "data", n_train=48, n_test=16)
    run = ["--config", QUICKSTART, "--data", "wdlab.data.FashionMNISTDataModule", "--data.root",
           str(tmp_path / "data"), "--data.batch_size", "16", "--trainer.max_epochs", "2", "--test_after_fit",
           "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]

    def fit(where: str, *extra: str) -> dict:
        assert _fit(*run, "--trainer.logger.init_args.save_dir", str(tmp_path / where), *extra) == 0
        return load_checkpoint(tmp_path / where / "quickstart" / "checkpoints" / "last.ckpt")

    whole = fit("whole")
    stopped = fit("stopped", "--trainer.callbacks+=resume_helpers.SigtermAtStep", "--trainer.callbacks.step=5")
    assert stopped["global_step"] == 5  # mid-epoch 2 (3 steps per epoch)
    resumed = fit("stopped", "--ckpt_path", "last")
    assert whole["global_step"] == resumed["global_step"] == 6
    assert whole["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    fresh = fit("other_seed", "--seed_everything", "1")  # the comparison can tell runs apart
    assert not all(torch.equal(v, fresh["state_dict"][k]) for k, v in whole["state_dict"].items())


@pytest.mark.trains
@pytest.mark.slow
def test_trains_on_the_real_fashion_mnist_files(tmp_path, monkeypatch):
    """The official files as Debian's dataset-fashion-mnist installs them (CI installs the package)."""
    dm = FashionMNISTDataModule(str(real_fashion_mnist()))
    dm.setup("fit")
    assert (dm.num_train, len(dm.test_dataset)) == (60000, 10000)
    assert np.bincount(dm.train_dataset.labels.numpy()).tolist() == [6000] * 10
    assert dm.mean == pytest.approx((0.2860,) * 3, abs=5e-5) and dm.std == pytest.approx((0.3530,) * 3, abs=5e-5)
    monkeypatch.chdir(tmp_path)
    assert _fit("--config", QUICKSTART, "--data", "wdlab.data.FashionMNISTDataModule", "--data.root",
                str(DEBIAN_FASHION_MNIST), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "40",
                "--trainer.limit_val_batches", "4", "--test_after_fit", "false") == 0
    from wdlab.experiments.results import read_scalars

    (_, val_err), = read_scalars(tmp_path / "runs" / "quickstart")["val/err"]
    # ~0.5 measured; a reader that pairs images with the wrong labels stays at chance (0.9)
    assert val_err < 0.75, f"40 steps should beat chance by far: images and labels belong together; {val_err}"
