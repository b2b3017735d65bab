"""wdlab.data.modules: what a datamodule does to a batch on the device, a Lightning fit on it, and every option
of every datamodule on the command line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from wdlab.data import (
    BuiltinDataModule,
    normalize,
)


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


@pytest.mark.trains
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
