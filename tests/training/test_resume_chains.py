"""Resume chains (issue 13, item 5): a run started from a snapshot, or stopped at the last batch of an
epoch, then resumed again and again from the epoch-end last.ckpt, ends exactly where one uninterrupted
run ends -- same global step, same snapshots, same tensors.

The tiny run of test_resume (adamwr t0 = 1 epoch, t_mult = 2, 4 updates per epoch; here on 64 images in
batches of 16 to keep the chains fast), run to epoch 7: periods end at epochs 1, 3 and 7 (28 updates).
A checkpoint written at the end of an epoch's last *batch* (a snapshot; last.ckpt on SIGTERM or on a
step interval) used to leave Lightning's epoch counters one behind after the resume; the next epoch-end
last.ckpt then resumed into an empty epoch: one epoch (4 updates) lost per further resume, and no
period-2 snapshot.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from resume_helpers import assert_identical, fit_run, load_checkpoint, training_state
from tiny_runs import builtin_data

EPOCHS = 7
STEPS_PER_EPOCH = 4
SNAPSHOTS = ["period-0-epoch-1.ckpt", "period-1-epoch-3.ckpt", "period-2-epoch-7.ckpt"]
SMALL = builtin_data(64, 16, 16)

pytestmark = [
    pytest.mark.trains,
    pytest.mark.filterwarnings("ignore:the run ends after:UserWarning"),  # max_epochs inside a period
    pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning"),  # a copied run directory
]


def _fit(cwd: Path, *extra: str) -> int:
    return fit_run(cwd, *SMALL, *extra)


def _last(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


def _assert_ended_epoch(ckpt: dict, epochs: int) -> None:
    """An epoch-end last.ckpt after ``epochs`` epochs: the step, and Lightning's epoch counters as an
    uninterrupted run saves them in on_train_epoch_end (``completed`` is counted after the hook)."""
    assert ckpt["global_step"] == STEPS_PER_EPOCH * epochs, (
        f"max_epochs {epochs}: step {ckpt['global_step']}, expected {STEPS_PER_EPOCH * epochs}"
    )
    counters = ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]
    assert counters == {"ready": epochs, "started": epochs, "processed": epochs, "completed": epochs - 1}, counters


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted7")
    assert _fit(cwd, "--trainer.max_epochs", str(EPOCHS)) == 0
    run_dir = cwd / "runs" / "quickstart"
    assert sorted(p.name for p in (run_dir / "snapshots").glob("*.ckpt")) == SNAPSHOTS
    _assert_ended_epoch(_last(run_dir), EPOCHS)
    return run_dir


@pytest.fixture(scope="module")
def epoch3(tmp_path_factory):
    """A run that ended after epoch 3 (snapshots period-0-epoch-1, period-1-epoch-3; last.ckpt at the
    epoch end); each test continues its own copy."""
    cwd = tmp_path_factory.mktemp("epoch3")
    assert _fit(cwd, "--trainer.max_epochs", "3") == 0
    _assert_ended_epoch(_last(cwd / "runs" / "quickstart"), 3)
    return cwd


def _copy_run(epoch3: Path, cwd: Path) -> Path:
    shutil.copytree(epoch3 / "runs", cwd / "runs")
    return cwd / "runs" / "quickstart"


def _resume_chain(cwd: Path, run_dir: Path, epochs: tuple[int, ...]) -> None:
    for max_epochs in epochs:
        assert _fit(cwd, "--ckpt_path", "last", "--trainer.max_epochs", str(max_epochs)) == 0
        _assert_ended_epoch(_last(run_dir), max_epochs)


def _assert_same_run(uninterrupted: Path, run_dir: Path) -> None:
    assert sorted(p.name for p in (run_dir / "snapshots").glob("*.ckpt")) == SNAPSHOTS
    assert_identical(training_state(_last(uninterrupted)), training_state(_last(run_dir)))
    for name in SNAPSHOTS:  # the snapshots too: weights, step and record
        expected = load_checkpoint(uninterrupted / "snapshots" / name)
        got = load_checkpoint(run_dir / "snapshots" / name)
        assert_identical(expected["state_dict"], got["state_dict"], name)
        assert got["global_step"] == expected["global_step"], name
        assert got["wdlab_snapshot"] == expected["wdlab_snapshot"], name


@pytest.mark.parametrize("chain", [(5, 7), (4, 5, 6, 7)], ids=["5-7", "4-5-6-7"])
def test_snapshot_then_epoch_end_resumes(uninterrupted, epoch3, tmp_path, chain):
    """Started from snapshots/period-1-epoch-3.ckpt (written at the last batch of epoch 3), then resumed
    from the epoch-end last.ckpt of each run of the chain."""
    run_dir = _copy_run(epoch3, tmp_path)
    snapshot = run_dir / "snapshots" / "period-1-epoch-3.ckpt"
    assert load_checkpoint(snapshot)["global_step"] == 3 * STEPS_PER_EPOCH
    first, *rest = chain
    assert _fit(tmp_path, "--ckpt_path", str(snapshot), "--trainer.max_epochs", str(first)) == 0
    _assert_ended_epoch(_last(run_dir), first)
    _resume_chain(tmp_path, run_dir, tuple(rest))
    _assert_same_run(uninterrupted, run_dir)


def test_sigterm_at_the_last_batch_of_an_epoch_then_epoch_end_resumes(uninterrupted, tmp_path, capsys):
    """last.ckpt written on SIGTERM after the last batch of epoch 3 (step 12): the loop state of a
    snapshot. Then resumed to epoch 5 and 7."""
    sigterm = ["--trainer.callbacks+=resume_helpers.SigtermAtStep", f"--trainer.callbacks.step={3 * STEPS_PER_EPOCH}"]
    assert _fit(tmp_path, "--trainer.max_epochs", str(EPOCHS), *sigterm) == 0
    assert "stopped by SIGTERM" in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "quickstart"
    assert _last(run_dir)["global_step"] == 3 * STEPS_PER_EPOCH
    _resume_chain(tmp_path, run_dir, (5, 7))
    _assert_same_run(uninterrupted, run_dir)


def test_epoch_end_resumes_only(uninterrupted, epoch3, tmp_path):
    """No snapshot and no batch-end checkpoint involved: epoch 3, then last.ckpt to 5, then to 7."""
    run_dir = _copy_run(epoch3, tmp_path)
    _resume_chain(tmp_path, run_dir, (5, 7))
    _assert_same_run(uninterrupted, run_dir)
