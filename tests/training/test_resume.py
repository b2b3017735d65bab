"""Exact resume: a run stopped (SIGTERM or end of a shorter run) and resumed from last.ckpt ends with the
very same tensors as the uninterrupted run -- weights, optimizer state, schedule, data position, random
streams and snapshot records -- on CPU in deterministic mode. Plus the run directory rules."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from paths import TESTS
from resume_helpers import RUN, STEPS, assert_identical, fit_run, load_checkpoint, training_state

from wdlab.cli.lightning import resume_command

pytestmark = pytest.mark.trains

WDLAB = str(Path(sys.executable).with_name("wdlab"))

@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted")
    assert fit_run(cwd) == 0
    run_dir = cwd / "runs" / "quickstart"
    return run_dir


def test_uninterrupted_run_layout(uninterrupted):
    """Pinned run directory: runs/<name>/ with config, events, last.ckpt and one snapshot per period."""
    assert (uninterrupted / "config.yaml").is_file()
    assert list(uninterrupted.glob("events.out.tfevents.*"))
    assert (uninterrupted / "checkpoints" / "last.ckpt").is_file()
    names = sorted(p.name for p in (uninterrupted / "snapshots").glob("*.ckpt"))
    assert names == ["period-0-epoch-1.ckpt", "period-1-epoch-3.ckpt"]
    snap = load_checkpoint(uninterrupted / "snapshots" / "period-0-epoch-1.ckpt")
    assert snap["wdlab_snapshot"]["period"] == 0 and snap["wdlab_snapshot"]["epoch"] == 1
    assert snap["wdlab_snapshot"]["step"] == snap["global_step"] == 4
    assert load_checkpoint(uninterrupted / "checkpoints" / "last.ckpt")["global_step"] == STEPS


@pytest.mark.parametrize(
    "stop_after",
    [
        2,  # mid-epoch, mid-period
        3,  # just before the restart (the period's last update not yet made)
        4,  # exactly at the restart: the period's last update, its snapshot, the epoch's last batch
        5,  # just after the restart (first update of the second period)
        10,  # mid-epoch of the last epoch
    ],
)
def test_sigterm_then_resume_is_bit_identical(uninterrupted, tmp_path, stop_after, capsys):
    assert fit_run(tmp_path, "--trainer.callbacks+=resume_helpers.SigtermAtStep",
                f"--trainer.callbacks.step={stop_after}") == 0
    assert "stopped by SIGTERM" in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "quickstart"
    stopped = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert stopped["global_step"] == stop_after
    assert not list((run_dir / "checkpoints").glob("*.tmp-*"))  # atomic writes leave no temporaries
    assert fit_run(tmp_path, "--ckpt_path", "last") == 0
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert_identical(training_state(load_checkpoint(uninterrupted / "checkpoints" / "last.ckpt")),
                     training_state(resumed))
    for snapshot in ("period-0-epoch-1.ckpt", "period-1-epoch-3.ckpt"):  # neither repeated nor skipped
        assert_identical(load_checkpoint(uninterrupted / "snapshots" / snapshot)["state_dict"],
                         load_checkpoint(run_dir / "snapshots" / snapshot)["state_dict"], snapshot)


def test_resume_from_an_epoch_end_checkpoint_is_bit_identical(uninterrupted, tmp_path):
    """A run that ended after epoch 2 (last.ckpt written at the epoch end), continued to epoch 3."""
    assert fit_run(tmp_path, "--trainer.max_epochs", "2") == 0
    run_dir = tmp_path / "runs" / "quickstart"
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 8
    assert fit_run(tmp_path, "--ckpt_path", "last") == 0
    assert_identical(training_state(load_checkpoint(uninterrupted / "checkpoints" / "last.ckpt")),
                     training_state(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")))


def test_resume_from_a_step_interval_checkpoint(uninterrupted, tmp_path):
    """--checkpoint.last_every_n_steps 3 writes last.ckpt mid-epoch (step 6); resuming from it is exact."""
    kept = tmp_path / "step6.ckpt"
    assert fit_run(tmp_path, "--checkpoint.last_every_n_steps", "3",
                "--trainer.callbacks+=resume_helpers.CopyLastAtStep", "--trainer.callbacks.step=6",
                f"--trainer.callbacks.dest={kept}") == 0
    assert load_checkpoint(kept)["global_step"] == 6
    run_dir = tmp_path / "runs" / "quickstart"
    shutil.copy(kept, run_dir / "checkpoints" / "last.ckpt")  # as if the run had been killed after step 6
    assert fit_run(tmp_path, "--ckpt_path", "last") == 0
    assert_identical(training_state(load_checkpoint(uninterrupted / "checkpoints" / "last.ckpt")),
                     training_state(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")))


def test_external_sigterm_to_the_console_script_then_resume(uninterrupted, tmp_path):
    """The real command, killed by another process at an arbitrary moment: clean exit 0, exact resume."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(TESTS))
    args = [WDLAB, *RUN, "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
            "--trainer.callbacks+=resume_helpers.SlowSteps"]  # ~0.3 s per step: time to signal mid-run
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    last = tmp_path / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first last.ckpt appears at the end of epoch 1
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert "stopped by SIGTERM" in output
    step = load_checkpoint(last)["global_step"]
    assert 4 <= step < STEPS
    resumed = subprocess.run([*args[:-1], "--ckpt_path", "last"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_identical(training_state(load_checkpoint(uninterrupted / "checkpoints" / "last.ckpt")),
                     training_state(load_checkpoint(last)))


# -- gradient accumulation: 320 images / batch 64 = 5 batches per epoch; accumulate 2 -> windows of 2, 2 and
# (the epoch's last batch) 1: 3 updates per epoch, 9 in all; the first period ends with update 3 (epoch 1).
ACCUMULATE = ["--data.init_args.num_train", "320", "--trainer.accumulate_grad_batches", "2"]


@pytest.fixture(scope="module")
def uninterrupted_accumulating(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted_accumulating")
    assert fit_run(cwd, *ACCUMULATE) == 0
    run_dir = cwd / "runs" / "quickstart"
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 9
    return run_dir


@pytest.mark.parametrize(
    ("signal_at_batch", "stopped_at_step"),
    [
        (1, 1),  # mid-window: the window (batches 1-2) is finished first
        (3, 2),  # mid-window, in the middle of the epoch
        (4, 2),  # at a window end
        (5, 3),  # the epoch's last batch: a window of one, the period's last update (the restart)
        (6, 4),  # the first batch after the restart, mid-window
    ],
)
def test_sigterm_with_gradient_accumulation_finishes_the_window(
    uninterrupted_accumulating, tmp_path, signal_at_batch, stopped_at_step, capsys
):
    """A signal inside an accumulation window stops after the window's update (the half-accumulated
    gradient is not in any checkpoint); resuming is then exact."""
    assert fit_run(tmp_path, *ACCUMULATE, "--trainer.callbacks+=resume_helpers.SignalAtBatch",
                f"--trainer.callbacks.batch={signal_at_batch}") == 0
    err = capsys.readouterr().err
    assert f"stopped by SIGTERM at epoch {(stopped_at_step - 1) // 3 + 1}, step {stopped_at_step}" in err
    run_dir = tmp_path / "runs" / "quickstart"
    stopped = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert stopped["global_step"] == stopped_at_step
    assert fit_run(tmp_path, *ACCUMULATE, "--ckpt_path", "last") == 0
    assert_identical(training_state(load_checkpoint(uninterrupted_accumulating / "checkpoints" / "last.ckpt")),
                     training_state(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")))


def test_the_resume_hint_replaces_a_given_ckpt_path():
    assert resume_command(["fit", "--config", "c.yaml"]) == "wdlab fit --config c.yaml --ckpt_path last"
    assert (resume_command(["fit", "--ckpt_path", "runs/x/snapshots/period-1-epoch-30.ckpt", "--trainer.max_epochs",
                            "70"]) == "wdlab fit --ckpt_path last --trainer.max_epochs 70")
    assert resume_command(["fit", "--ckpt_path=a b.ckpt"]) == "wdlab fit --ckpt_path last"
    assert resume_command(["fit", "--ckpt_path", "auto"]) == "wdlab fit --ckpt_path auto"


def test_ctrl_c_from_another_process_saves_and_resumes_exactly(uninterrupted, tmp_path):
    """SIGINT (Ctrl-C) to the console script does what SIGTERM does -- finish the step, save last.ckpt,
    print the resume command -- and exits 130; the resumed run is exact."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(TESTS))
    # Started from a snapshot-free --ckpt_path auto: the hint must keep it, not add a second --ckpt_path.
    args = [WDLAB, *RUN, "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--ckpt_path", "auto",
            "--trainer.callbacks+=resume_helpers.SlowSteps"]
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    last = tmp_path / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output[-3000:]
    step = load_checkpoint(last)["global_step"]
    assert 4 <= step < STEPS
    hint = re.search(r"stopped by Ctrl-C at epoch \d+, step (\d+) \(saved .*last\.ckpt\); resume with: (.*)", output)
    assert hint is not None, output[-3000:]
    assert int(hint.group(1)) == step
    assert hint.group(2).count("--ckpt_path") == 1 and "--ckpt_path auto" in hint.group(2)
    resumed = subprocess.run(args[:-1], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_identical(training_state(load_checkpoint(uninterrupted / "checkpoints" / "last.ckpt")),
                     training_state(load_checkpoint(last)))
