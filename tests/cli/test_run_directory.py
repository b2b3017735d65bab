"""Where runs write: a fit's run directory is ``runs/<name>/``; evaluations of its checkpoints go to
``runs/<name>/eval/<checkpoint stem>/`` and never touch the training record; a fit that has no place of its
own (``fast_dev_run``, no logger and no ``default_root_dir``) writes nothing at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import QUICKSTART
from tiny_runs import QUIET, builtin_data

from wdlab.cli import main
from wdlab.experiments.results import read_scalars

pytestmark = pytest.mark.trains

TINY = ["--config", QUICKSTART, "--trainer.max_epochs", "1", "--model.optimizer.t0_epochs", "1",
        *builtin_data(128, 64, 128), *QUIET]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("eval") / "runs"
    assert main(["fit", *TINY, "--trainer.logger.init_args.save_dir", str(runs)]) == 0
    return runs


def test_evaluations_write_to_their_own_folder_and_leave_the_training_record_byte_identical(trained):
    run_dir = trained / "quickstart"
    before = _files(run_dir)
    assert "config.yaml" in before and any(name.startswith("events.out") for name in before)
    test_err = dict(read_scalars(run_dir))["test/err"]
    snapshot = run_dir / "snapshots" / "period-0-epoch-1.ckpt"
    save_dir = ["--trainer.logger.init_args.save_dir", str(trained)]
    assert main(["test", *TINY, *save_dir, "--ckpt_path", str(snapshot)]) == 0
    assert main(["validate", *TINY, *save_dir, "--ckpt_path", "last"]) == 0
    assert main(["test", *TINY, *save_dir]) == 0  # the untrained model
    after = _files(run_dir)
    # Everything training wrote is unchanged, byte for byte; every new file is under eval/<checkpoint>/.
    assert {name: after[name] for name in before} == before
    new = sorted(set(after) - set(before))
    assert new and all(name.startswith(("eval/period-0-epoch-1/", "eval/last/", "eval/initial/")) for name in new)
    assert dict(read_scalars(run_dir))["test/err"] == test_err
    # Each evaluation's folder holds its own metrics: the snapshot (= the final model of this 1-period
    # run) tested as training tested it; last.ckpt validated; the untrained model near chance.
    tested = read_scalars(run_dir / "eval" / "period-0-epoch-1")
    assert [value for _, value in tested["test/err"]] == [value for _, value in test_err]
    assert "val/err" in read_scalars(run_dir / "eval" / "last")
    assert read_scalars(run_dir / "eval" / "initial")["test/err"][0][1] > 0.6


@pytest.mark.parametrize(
    "options",
    [
        ["--trainer.fast_dev_run", "true"],  # Lightning: "logging and checkpointing is suppressed"
        ["--trainer.logger", "false"],  # no run directory: Lightning would use the current directory
    ],
)
def test_a_fit_without_a_place_of_its_own_writes_nothing_into_the_current_directory(tmp_path, monkeypatch, options,
                                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", *TINY, *options]) == 0
    assert _files(tmp_path) == {}
    assert "writes no checkpoints, snapshots or config.yaml" in capsys.readouterr().err
    # Run again in the same place: nothing to overwrite, so no refusal.
    assert main(["fit", *TINY, *options]) == 0
    assert _files(tmp_path) == {}


def test_a_smoke_test_of_a_resume_finds_the_runs_last_ckpt(run_copy, tmp_path, monkeypatch, capsys):
    """``--ckpt_path last --trainer.fast_dev_run true`` resumes from ``runs/<name>/checkpoints/last.ckpt`` (Lightning
    swaps the logger for a dummy without a directory, so the trainer alone would look in ./checkpoints) and
    writes nothing; without a run there, the error names that file."""
    monkeypatch.chdir(tmp_path)
    save_dir = ["--trainer.logger.init_args.save_dir", str(run_copy)]
    before = _files(run_copy)
    smoke = ["--ckpt_path", "last", "--trainer.fast_dev_run", "true", "--trainer.max_epochs", "2"]
    assert main(["fit", *TINY, *save_dir, *smoke]) == 0, capsys.readouterr().err
    assert _files(run_copy) == before and not (tmp_path / "checkpoints").exists()
    capsys.readouterr()
    empty = ["--trainer.logger.init_args.save_dir", str(tmp_path / "nothing")]
    assert main(["fit", *TINY, *empty, *smoke]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"there is no {tmp_path / 'nothing' / 'quickstart' / 'checkpoints' / 'last.ckpt'}" in error, error


def test_a_fit_without_a_logger_writes_into_the_default_root_dir_and_the_refusal_names_that_option(tmp_path, capsys):
    root = tmp_path / "here"
    options = ["--trainer.logger", "false", "--trainer.default_root_dir", str(root)]
    assert main(["fit", *TINY, *options]) == 0
    assert {"checkpoints/last.ckpt", "snapshots/period-0-epoch-1.ckpt", "config.yaml"} <= set(_files(root))
    capsys.readouterr()
    assert main(["fit", *TINY, *options]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "already holds a run" in error and "--trainer.default_root_dir DIR" in error
    assert "--trainer.logger.init_args.name" not in error  # advice for a logger this run does not have


# -- the configuration of a resumed or evaluated run: the checkpoint's model and data, whatever the
# checkpoint is called; a given option that contradicts it is refused in one line naming the key.
@pytest.fixture
def run_copy(trained, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    return runs


@pytest.mark.parametrize("ckpt", ["snapshot", "last", "auto"])
@pytest.mark.parametrize(
    ("option", "key"),
    [
        (["--model.optimizer.lr", "0.01"], "model.optimizer.lr is 0.01 here but 0.001 in the checkpoint"),
        (["--model.net.init_args.base_width", "8"], "model.net.base_width is 8 here but 16 in the checkpoint"),
        (["--data.init_args.batch_size", "64"], "data.batch_size is 64 here but 128 in the checkpoint"),
    ],
)
def test_an_option_that_contradicts_the_checkpoint_is_refused_naming_the_key(run_copy, capsys, ckpt, option, key):
    run_dir = run_copy / "quickstart"
    ckpt_path = str(run_dir / "snapshots" / "period-0-epoch-1.ckpt") if ckpt == "snapshot" else ckpt
    before = _files(run_dir)
    status = main(["fit", *TINY, "--trainer.logger.init_args.save_dir", str(run_copy), "--trainer.max_epochs", "2",
                   *option, "--ckpt_path", ckpt_path])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and error[-1].startswith("wdlab: error: --ckpt_path ") and key in error[-1], error[-3:]
    assert _files(run_dir) == before  # nothing written


def test_without_options_the_checkpoints_configuration_is_used_and_recorded(run_copy, capsys):
    """A resume that gives only trainer options (and a resumable data option) runs with the checkpoint's
    model and data -- here a config that says otherwise is not given at all -- and config.yaml records it."""
    import yaml

    run_dir = run_copy / "quickstart"
    save_dir = ["--trainer.logger.init_args.save_dir", str(run_copy)]
    # No --config: the defaults (PreActResNet width 16, 2,000 images, batch 128, adamwr lr 1e-3) are not
    # the checkpoint's (quickstart: 128 images, t0 1 epoch, normalized decay 0.05), and must not be used.
    assert main(["fit", *save_dir, "--trainer.logger.init_args.name", "quickstart", "--trainer.max_epochs", "3",
                 "--data.init_args.num_workers", "0", "--trainer.enable_progress_bar", "false",
                 "--test_after_fit", "false", "--ckpt_path", "last"]) == 0
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["trainer"]["max_epochs"] == 3
    assert recorded["model"]["optimizer"] == {"name": "adamwr", "lr": 0.001, "weight_decay_norm": 0.05,
                                              "t0_epochs": 1, "t_mult": 2.0}
    assert recorded["data"]["init_args"]["num_train"] == 128
    import torch

    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 3  # 128 images / batch 128 = 1 step per epoch, 3 epochs


def test_a_resume_with_another_global_batch_is_refused(run_copy, capsys):
    """Trainer options are the command's own, except those that change the images per step (and so the
    steps per epoch, the schedule and the normalized decay): the checkpoint records them."""
    run_dir = run_copy / "quickstart"
    last = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    assert main(["fit", *TINY, "--trainer.logger.init_args.save_dir", str(run_copy), "--trainer.max_epochs", "2",
                 "--trainer.accumulate_grad_batches", "2", "--ckpt_path", "last"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "trained with 128 images per step" in error and "this run has 256" in error, error
    assert "--trainer.accumulate_grad_batches" in error
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == last
