"""The LightningModule and the `wdlab` CLI end to end on the built-in dataset (real runs, real event files)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from optim_reference import sgdr_eta
from paths import REPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_runs import QUIET, builtin_data

from wdlab.cli import build_cli, main
from wdlab.experiments.results import read_scalars
from wdlab.training.evaluation import every_batch, limited_batches

pytestmark = pytest.mark.trains

# Experiment configs only: a component (a model or datamodule that experiment configs name, e.g.
# configs/models/*.yaml) is one class, ``class_path`` at its top level.
CONFIGS = sorted(
    str(p.relative_to(REPO))
    for p in (REPO / "configs").rglob("*.yaml")
    if "class_path" not in (yaml.safe_load(p.read_text()) or {})
)
WDLAB = str(Path(sys.executable).with_name("wdlab"))

REQUIRED_TAGS = {
    "train/loss", "train/err", "val/err", "val/err5", "test/err", "test/err5",
    "opt/lr", "opt/eta", "opt/lambda", "opt/decay", "opt/weight_norm",
}

# A run small enough for a test: 512 training images, batches of 64 -> 8 steps per epoch.
SMALL = [*builtin_data(512, 256, 64), "--trainer.log_every_n_steps", "1", *QUIET]


def _run_dir(tmp_path: Path, name: str) -> Path:
    run_dir = tmp_path / "runs" / name  # pinned: no version_N folders
    assert run_dir.is_dir() and not list(run_dir.glob("version_*"))
    return run_dir


def test_quickstart_config_trains_logs_and_checkpoints_through_the_console_script(tmp_path):
    """The real console script, the shipped quickstart config, shortened: every promised tag is written."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [WDLAB, "fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--trainer.max_epochs", "2",
         "--model.optimizer.t0_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
         "--trainer.logger.init_args.name", "qs", *SMALL],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = _run_dir(tmp_path, "qs")
    scalars = read_scalars(run_dir)
    assert REQUIRED_TAGS <= set(scalars), REQUIRED_TAGS - set(scalars)
    for tag in ("train/err", "val/err", "val/err5", "test/err", "test/err5"):
        assert all(0.0 <= value <= 1.0 for _, value in scalars[tag]), tag
    assert len(scalars["opt/lr"]) == 16  # logged at every one of the 2 x 8 steps
    assert list(run_dir.glob("checkpoints/*.ckpt")), "no checkpoint written"
    assert (run_dir / "config.yaml").exists()
    # The hparams tab: a session with the run's hyperparameters and the final-metric tags.
    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
    assert b"optimizer/weight_decay_norm" in plugins["_hparams_/session_start_info"]
    assert b"global_batch_size" in plugins["_hparams_/session_start_info"]


def test_normalized_decay_changes_at_restarts_and_eta_restarts(in_tmp):
    """adamwr with t0=1, t_mult=2 over 3 epochs: lambda shrinks by sqrt(2) at the restart after epoch 1."""
    main(["fit", "--model.optimizer.name", "adamwr", "--model.optimizer.t0_epochs", "1",
          "--model.optimizer.t_mult", "2", "--trainer.max_epochs", "3", "--trainer.logger.init_args.name", "r",
          "--test_after_fit", "false", *SMALL])
    scalars = read_scalars(_run_dir(in_tmp, "r"))
    lam = dict(scalars["opt/lambda"])
    eta = dict(scalars["opt/eta"])
    decay = dict(scalars["opt/decay"])
    steps = sorted(lam)
    assert len(steps) == 24
    first, second = lam[steps[0]], lam[steps[8]]
    # lambda = 0.025 * sqrt(b / (B * T)), b = 64, B = 512, T = 1 then 2
    assert first == pytest.approx(0.025 * math.sqrt(64 / 512), rel=1e-6)
    assert second == pytest.approx(first / math.sqrt(2), rel=1e-6)
    assert all(lam[s] == pytest.approx(first) for s in steps[:8])
    assert eta[steps[0]] == pytest.approx(1.0) and eta[steps[8]] == pytest.approx(1.0)
    assert eta[steps[7]] < 0.1
    for s in steps:  # the decay actually applied is eta_t * lambda (the paper's parameterization)
        assert decay[s] == pytest.approx(eta[s] * lam[s], rel=1e-5)


class _ZeroGradientShrink(Callback):
    """Zeroes one parameter's gradient at every step and measures how much the optimizer shrinks it.

    With g = 0 from the start, AdamW's moments stay 0 and its update is only the decay:
    theta_t = (1 - eta_t * lambda) * theta_{t-1}, so 1 - theta_t / theta_{t-1} is the decay applied.
    """

    def __init__(self) -> None:
        self.shrink: dict[int, float] = {}

    def _param(self, pl_module) -> torch.Tensor:
        return pl_module.net.fc.weight

    def on_after_backward(self, trainer, pl_module) -> None:
        self._param(pl_module).grad.zero_()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._before = self._param(pl_module).detach().double().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        after = self._param(pl_module).detach().double()
        ratio = (after / self._before)[self._before.abs() > 1e-3]
        assert torch.allclose(ratio, ratio[0], rtol=0, atol=1e-6)  # one factor for every weight: a pure decay
        self.shrink[trainer.global_step - 1] = 1.0 - float(ratio.mean())


def test_the_decay_applied_to_the_weights_is_eta_times_lambda_and_is_what_opt_decay_logs(in_tmp):
    """Measured on the weights, not read from the optimizer's fields: a zero-gradient parameter shrinks by
    eta_t * lambda per step (eta_t from an independent SGDR formula, lambda from Appendix B.1's), and the
    logged opt/decay is that shrink."""
    cli = build_cli(["--model.optimizer.name", "adamwr", "--model.optimizer.t0_epochs", "1",
                     "--model.optimizer.t_mult", "2", "--trainer.max_epochs", "3",
                     "--trainer.logger.init_args.name", "d", "--test_after_fit", "false", *SMALL], run=False)
    probe = _ZeroGradientShrink()
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    logged = dict(read_scalars(_run_dir(in_tmp, "d"))["opt/decay"])
    assert sorted(probe.shrink) == sorted(logged) == list(range(24))
    for step in range(24):
        period_epochs = 1 if step < 8 else 2
        lam = 0.025 * math.sqrt(64 / (512 * period_epochs))
        expected = sgdr_eta(step, 8, 1, 2) * lam
        assert probe.shrink[step] == pytest.approx(expected, rel=1e-4, abs=1e-7), step
        assert logged[step] == pytest.approx(probe.shrink[step], rel=1e-4, abs=1e-7), step
    assert max(probe.shrink.values()) > 0.005  # the decay is large enough to be measured


def test_print_config_round_trip_and_overrides(in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--model.optimizer.lr", "0.01",
              "--trainer.max_epochs", "5", "--print_config"])
    assert exit_info.value.code in (0, None)
    first = capsys.readouterr().out
    config = yaml.safe_load(first)
    assert config["model"]["optimizer"]["lr"] == 0.01
    assert config["trainer"]["max_epochs"] == 5
    (in_tmp / "printed.yaml").write_text(first)
    with pytest.raises(SystemExit):
        main(["fit", "--config", "printed.yaml", "--print_config"])
    assert capsys.readouterr().out == first


def test_switching_the_dataset_on_the_command_line(in_tmp, capsys):
    from data_files import write_cifar_folder

    root = in_tmp / "cifar"
    write_cifar_folder(root, per_batch=40, test_size=30, seed=1)
    main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--data", "wdlab.data.CIFAR10DataModule",
          "--data.root", str(root), "--data.verify_checksums", "false", "--data.batch_size", "50",
          "--trainer.max_epochs", "1", "--model.optimizer.t0_epochs", "1", "--trainer.logger.init_args.name", "c",
          "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"])
    run_dir = _run_dir(in_tmp, "c")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["class_path"] == "wdlab.data.CIFAR10DataModule"
    scalars = read_scalars(run_dir)
    assert len(scalars["opt/lr"]) >= 1 and "test/err" in scalars


@pytest.mark.parametrize("config", CONFIGS)
def test_every_shipped_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["optimizer"]["name"] in ("adam", "adamw", "adamwr", "sgd", "sgdw", "sgdwr")
    text = (REPO / config).read_text()
    assert text.startswith("#"), "each config states in a comment what it is and what the paper reports"


def test_missing_dataset_is_one_clear_line_and_exit_2(in_tmp, capsys):
    code = main(["fit", "--data", "wdlab.data.CIFAR10DataModule", "--data.root", str(in_tmp / "nowhere"),
                 "--trainer.max_epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("wdlab: error: ") and "cifar-10" in err[-1].lower()
    assert not (in_tmp / "runs").exists() or not list((in_tmp / "runs").rglob("*.ckpt"))


def test_bad_optimizer_is_rejected_before_training(in_tmp, capsys):
    code = main(["fit", "--model.optimizer.name", "adamx", "--trainer.max_epochs", "1"])
    assert code == 2
    assert "known: adam, adamw, adamwr, sgd, sgdw, sgdwr" in capsys.readouterr().err
    # unknown hyperparameter keys are caught by the parser itself, in one line
    assert main(["fit", "--model.optimizer.learning_rate", "0.1"]) == 2
    assert "learning_rate" in capsys.readouterr().err.strip().splitlines()[-1]


def test_net_with_the_wrong_number_of_classes_is_explained(in_tmp, capsys):
    code = main(["fit", "--model.net.init_args.num_classes", "7", "--trainer.max_epochs", "1", *SMALL])
    assert code == 2
    assert "num_classes to 10" in capsys.readouterr().err


class _CountBatches(Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_start(self, *args) -> None:
        self.batches += 1

    def on_validation_batch_start(self, *args) -> None:  # the sanity check comes before training
        self.batches += 1


def test_the_head_is_checked_before_the_first_batch(in_tmp):
    """A wrong head is refused in setup, before any batch; on a right head the check changes nothing (the
    network's state, including BatchNorm's running statistics, and the random-number stream stay as they were)."""
    cli = build_cli(["--model.net.init_args.num_classes", "7", "--trainer.max_epochs", "1", *SMALL], run=False)
    counter = _CountBatches()
    cli.trainer.callbacks.append(counter)
    with pytest.raises(ValueError, match="num_classes to 10"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert counter.batches == 0

    cli = build_cli(["--trainer.max_epochs", "1", *SMALL], run=False)
    cli.datamodule.setup("fit")
    cli.model.trainer = cli.trainer
    cli.trainer.datamodule = cli.datamodule
    before = {k: v.clone() for k, v in cli.model.net.state_dict().items()}
    rng = torch.random.get_rng_state()
    cli.model.setup("fit")
    assert cli.model.net.training
    assert torch.equal(torch.random.get_rng_state(), rng)
    after = cli.model.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_config_files_optimizer_key_is_unset_with_null(in_tmp):
    """The quickstart config sets weight_decay_norm; `--model.optimizer.weight_decay_norm null` unsets it so that a
    raw weight_decay can be given (without the null the two parameterizations are refused together)."""
    from wdlab.optim import resolve_hyperparameters

    quickstart = str(REPO / "configs" / "quickstart.yaml")
    cli = build_cli(["--config", quickstart, "--model.optimizer.weight_decay_norm", "null",
                     "--model.optimizer.weight_decay", "1e-4"], run=False)
    config = cli.model.optimizer_config
    _, resolved = resolve_hyperparameters(config["name"], {k: v for k, v in config.items() if k != "name"})
    assert resolved["weight_decay"] == 1e-4 and "weight_decay_norm" not in resolved
    assert main(["fit", "--config", quickstart, "--model.optimizer.weight_decay", "1e-4",
                 "--trainer.fast_dev_run", "true"]) == 2


@pytest.mark.parametrize(("limit", "batches"), [(2, 2), (100, 8), (1, 1), (1.0, 8), (0.5, 4), (0.3, 2), (0, 0),
                                               (0.0, 0), (2.0, 2), (8.0, 8)])
def test_limited_batches_follows_lightnings_limit_rule(limit, batches):
    """An int counts batches (1 is one batch), a float in [0, 1] is a fraction (1.0 is all), an integral float above
    1 counts batches (what LightningCLI hands the Trainer for "--trainer.limit_test_batches 2")."""
    assert limited_batches(8, limit) == batches


def test_only_the_float_one_is_every_batch():
    assert every_batch(1.0) and not any(every_batch(limit) for limit in (1, 2, 2.0, 0.5))


@pytest.mark.parametrize("limit", [-1, 1.5, True, "2", 0.1])
def test_limited_batches_refuses_a_limit_that_is_not_one(limit):
    with pytest.raises(ValueError, match="batch limit"):
        limited_batches(8, limit)  # 0.1 of 8 batches: less than one batch


def test_test_curve_logs_the_test_error_at_every_validation_of_a_run_with_a_held_out_split(in_tmp, capsys):
    """With val_split, val/err is the held-out error; TestCurve adds test/err at each validation, computed on the
    whole test set outside Lightning's loops: its last value is the final test pass's (Lightning's test loop)."""
    held_out = ["--data.init_args.val_split", "128"]
    curve_callback = "--trainer.callbacks+=wdlab.training.TestCurve"
    run = ["fit", *SMALL, "--trainer.max_epochs", "3"]
    assert main([*run, *held_out, "--trainer.logger.init_args.name", "tc", curve_callback]) == 0
    scalars = read_scalars(_run_dir(in_tmp, "tc"))
    val_steps = [step for step, _ in scalars["val/err"]]
    curve = scalars["test/err"][:-1]  # then the test pass after fit
    assert [step for step, _ in curve] == val_steps and len(val_steps) == 3
    assert scalars["test/err"][-1][0] >= val_steps[-1]
    assert curve[-1][1] == pytest.approx(scalars["test/err"][-1][1], abs=1e-6)
    assert [v for _, v in curve] != [v for _, v in scalars["val/err"]]  # the test set, not the held-out split
    # trainer.limit_test_batches applies to the curve as to Lightning's test loop: 2 of the 8 batches of 32
    limited = ["--trainer.limit_test_batches", "2", "--data.init_args.eval_batch_size", "32"]
    assert main([*run, *held_out, *limited, "--trainer.logger.init_args.name", "lim", curve_callback]) == 0
    short = read_scalars(_run_dir(in_tmp, "lim"))["test/err"]
    assert short[-2][1] == pytest.approx(short[-1][1], abs=1e-6)
    assert short[-1][1] != pytest.approx(scalars["test/err"][-1][1], abs=1e-6)  # 64 images, not the 256
    # without it, one test/err after training: the curve is the callback's
    assert main([*run, *held_out, "--trainer.logger.init_args.name", "plain"]) == 0
    assert len(read_scalars(_run_dir(in_tmp, "plain"))["test/err"]) == 1
    # without a held-out split the validation pass is the test set already: refused in one line
    capsys.readouterr()
    assert main([*run, "--trainer.logger.init_args.name", "none", curve_callback]) != 0
    assert "TestCurve: this run has no held-out split" in capsys.readouterr().err
