"""What ``wdlab`` shows on the terminal (issue 24, item 5): a line per epoch (1-based, with the estimate for the
whole run) when stderr is not a terminal, wdlab's messages on lines of their own above the bar, no start-up
noise, a short ``--help`` with the full list one flag away, ``wdlab optimizers`` within 100 columns, and errors
that name the fix before anything is seeded or built."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from paths import REPO

from wdlab.cli import main

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
#: Three epochs of one batch each; periods end at epochs 1 and 3 (t0 1, t_mult 2): snapshots after epochs 1 and 3.
TINY = ["--config", QUICKSTART, "--trainer.max_epochs", "3", "--model.optimizer.t0_epochs", "1",
        "--data.init_args.num_train", "32", "--data.init_args.num_test", "32", "--data.init_args.batch_size", "32",
        "--trainer.log_every_n_steps", "1", "--test_after_fit", "false"]


def _fit(tmp_path: Path, *extra: str) -> None:
    assert main(["fit", *TINY, "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), *extra]) == 0


def test_not_a_terminal_one_line_per_epoch_and_no_startup_noise(tmp_path, capfd, caplog):
    _fit(tmp_path)
    err = capfd.readouterr().err
    lines = err.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"], err
    assert re.fullmatch(r"epoch 1/3: train loss \d\.\d{4}, train err [\d.]+ %, val err [\d.]+ % "
                        r"\| \d\d:\d\d elapsed, \d\d:\d\d left", epochs[0]), epochs[0]
    assert "\r" not in err  # no bar redrawn in a log
    # the same numbering as the snapshot's message: period 0 ends at epoch 1, printed before epoch 1's line
    snapshot = next(i for i, line in enumerate(lines) if line.startswith("anytime: period 0 ended at epoch 1: "))
    assert snapshot < lines.index(epochs[0])
    assert "snapshots/period-0-epoch-1.ckpt" in lines[snapshot]  # the file name is unchanged
    assert any(line.startswith("wdlab: run directory ") and line.endswith("(starting, seed 0)") for line in lines)
    for noise in ("Seed set to", "Tip:", "litlogger", "TPU available", "Total params", "| Name",
                  "Loading `train_dataloader`", "Sanity Checking", "Epoch 0"):
        assert noise not in err + caplog.text, noise  # caplog: Lightning's log lines, which pytest takes


def test_the_bar_writes_the_snapshot_message_on_its_own_line(tmp_path, capfd, monkeypatch):
    import wdlab.training.progress as progress

    monkeypatch.setattr(progress, "terminal_columns", lambda stream: 100)  # as if stderr were a terminal
    _fit(tmp_path)
    err = capfd.readouterr().err
    assert "epoch 3/3 100%|" in err and "3/3 batches" in err, err  # the bar over the whole run
    message = "anytime: period 0 ended at epoch 1: "
    assert message in err
    for position in [m.start() for m in re.finditer(re.escape(message), err)]:
        line_start = max(err.rfind("\r", 0, position), err.rfind("\n", 0, position))
        assert err[line_start + 1: position].strip() == "", err[max(0, position - 200): position + 40]
    assert "validating" in err and "Validation DataLoader" not in err  # no validation bar of its own


def test_lightning_pytree_warning_is_silenced():
    from torch.utils._pytree import LeafSpec

    from wdlab.training.progress import quiet_startup

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LeafSpec()  # what Lightning's _pytree does at every batch
    assert any("LeafSpec" in str(w.message) for w in caught)  # torch still warns ...
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_startup()
        LeafSpec()
    assert not [w for w in caught if "LeafSpec" in str(w.message)]  # ... and wdlab's CLI silences it


def test_help_is_short_and_help_all_is_everything(capsys):
    assert main(["fit", "--help"]) == 0
    short = capsys.readouterr().out
    assert len(short.splitlines()) <= 45 and max(len(line) for line in short.splitlines()) <= 100
    for option in ("--config", "--print_config", "--ckpt_path", "--seed_everything", "--trainer.max_epochs",
                   "--model.optimizer.name", "--data.help", "--test_after_fit", "--print_decay", "--help_all"):
        assert option in short, option
    with pytest.raises(SystemExit) as done:
        main(["fit", "--help_all"])
    assert done.value.code == 0
    full = capsys.readouterr().out
    assert "--trainer.gradient_clip_algorithm" in full and len(full.splitlines()) > 500


def test_wdlab_optimizers_fits_100_columns(capsys):
    assert main(["optimizers"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 100
    assert main(["optimizers", "adamwr"]) == 0
    out = capsys.readouterr().out
    assert "t0_epochs" in out and max(len(line) for line in out.splitlines()) <= 100


def test_optimizer_names_are_case_insensitive_and_suggested():
    from wdlab.optim.registry import REGISTRY
    from wdlab.training import ImageClassifier

    assert REGISTRY.lookup("AdamWR").name == "adamwr"
    model = ImageClassifier(torch.nn.Linear(4, 10), optimizer={"name": "AdamW"})
    assert model.optimizer_config["name"] == "adamw"
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamwrr' \(did you mean 'adamwr'\?\); known: adam,"):
        REGISTRY.lookup("adamwrr")


def _without_pytest_argv(err: str) -> str:
    """stderr without LightningCLI's warning that pytest's own sys.argv is there too (not seen from a shell)."""
    return "".join(line for line in err.splitlines(keepends=True) if "args parameter is intended" not in line)


@pytest.fixture
def seeded(monkeypatch):
    """The seeds LightningCLI set (it calls seed_everything before it builds anything)."""
    import lightning.pytorch.cli as cli

    calls: list = []
    monkeypatch.setattr(cli, "seed_everything", lambda *args, **kwargs: calls.append(args) or 0)
    return calls


def test_a_misspelled_optimizer_name_fails_before_the_seed(seeded, capfd):
    assert main(["fit", "--config", QUICKSTART, "--model.optimizer.name", "adamwrr"]) == 2
    err = _without_pytest_argv(capfd.readouterr().err)
    assert err.splitlines() == [
        "wdlab: error: unknown optimizer 'adamwrr' (did you mean 'adamwr'?); known: adam, adamw, adamwr, sgd, "
        "sgdw, sgdwr, adamc, sgdc, radamw, nadamw, muonw"], err
    assert seeded == []  # refused before the seed (and the Trainer, its banner) is set up
    # a bad value is refused right after parsing, also before the seed
    assert main(["fit", "--config", QUICKSTART, "--model.optimizer.lr", "0"]) == 2
    assert "lr must be a number > 0" in capfd.readouterr().err and seeded == []


def test_a_misspelled_optimizer_name_is_refused_before_lightning_loads():
    code = ("import sys; from wdlab.cli import main; status = main(['fit', '--model.optimizer.name', 'AdamWRR']); "
            "print(status, 'lightning' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert done.stderr.strip() == ("wdlab: error: unknown optimizer 'AdamWRR' (did you mean 'adamwr'?); known: adam, "
                                   "adamw, adamwr, sgd, sgdw, sgdwr, adamc, sgdc, radamw, nadamw, muonw")


def test_a_misspelled_optimizer_key_names_the_key_and_the_valid_ones(seeded, capfd):
    assert main(["fit", "--config", QUICKSTART, "--model.optimizer.weight_decey", "0.1"]) == 2
    err = _without_pytest_argv(capfd.readouterr().err)
    assert len(err.splitlines()) == 1, err
    assert "model.optimizer: unknown key 'weight_decey' (did you mean 'weight_decay'?); the keys are: name, lr, " in err
    assert "Got value" not in err and "'t0_epochs': 10" not in err  # not the optimizer's dict
    assert seeded == []
