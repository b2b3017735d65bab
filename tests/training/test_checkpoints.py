"""Checkpoint files and the run directory: atomic writes, clear verdicts on bad checkpoints, no silent
fresh start, no overwritten run; anytime snapshots logged against the epoch."""

from __future__ import annotations

import math
import os
import re

import pytest
import torch
from paths import QUICKSTART, REPO
from tiny_runs import QUIET, builtin_data

from wdlab.cli import main
from wdlab.experiments.results import read_scalars
from wdlab.training import AtomicCheckpointIO, CheckpointError, ResumableCheckpoint, check_checkpoint

pytestmark = pytest.mark.trains

# 256 images / batch 64 = 4 steps per epoch; the quickstart's adamwr with t0 = 1, t_mult = 2.
SMALL = [
    "fit", "--config", QUICKSTART, *builtin_data(256, 64, 64), "--model.optimizer.t0_epochs", "1", *QUIET,
    "--test_after_fit", "false", "--trainer.log_every_n_steps", "1",
]
_T0 = SMALL.index("--model.optimizer.t0_epochs")
COSINE = SMALL[:_T0] + SMALL[_T0 + 2 :]


# ------------------------------------------------------------------------------------ atomic writes
def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "deep" / "last.ckpt"
    io.save_checkpoint({"x": torch.arange(3)}, target)
    io.save_checkpoint({"x": torch.arange(5)}, target)
    assert torch.equal(torch.load(target)["x"], torch.arange(5))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_a_write_killed_half_way_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"x": torch.arange(4)}, target)
    before = target.read_bytes()

    def dies_half_way(obj, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what a kill looks like to the writing code

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"x": torch.arange(9)}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# --------------------------------------------------------------------------------------- verdicts
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    assert main([*SMALL, "--trainer.max_epochs", "3", "--trainer.logger.init_args.save_dir", str(root / "runs")]) == 0
    return root / "runs" / "quickstart"


def test_check_checkpoint_accepts_a_real_one_and_names_each_problem(finished_run, tmp_path):
    last = finished_run / "checkpoints" / "last.ckpt"
    assert check_checkpoint(last) == {"epoch": 2, "global_step": 12}
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(4096))
    flipped = tmp_path / "flipped.ckpt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit flip inside a tensor: caught by the zip CRCs
    flipped.write_bytes(bytes(data))
    weights_only = tmp_path / "weights.ckpt"
    torch.save({"state_dict": torch.load(last, weights_only=False)["state_dict"]}, weights_only)
    cases = {truncated: "truncated or corrupt", garbage: "truncated or corrupt", flipped: "corrupt",
             weights_only: "not a Lightning training checkpoint", tmp_path / "none.ckpt": "does not exist"}
    for path, words in cases.items():
        with pytest.raises(CheckpointError, match=words) as info:
            check_checkpoint(path)
        assert "\n" not in str(info.value)


def test_resume_cli_errors_are_one_line_and_change_nothing(finished_run, in_tmp, capsys):
    run = [*SMALL, "--trainer.logger.init_args.save_dir", str(finished_run.parent), "--trainer.max_epochs", "4"]
    watched = [finished_run / "config.yaml", finished_run / "checkpoints" / "last.ckpt"]
    before = {p: p.read_bytes() for p in watched}
    events_before = sorted(finished_run.glob("events.out.tfevents.*"))
    bad = in_tmp / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    attempts = {
        (): "already holds a run",  # the same command again: refuse rather than overwrite
        ("--ckpt_path", str(bad)): "truncated or corrupt",
        ("--ckpt_path", "last", "--model.net.init_args.base_width", "8"): "model.net.base_width is 8 here but 16",
        ("--ckpt_path", "last", "--trainer.logger.init_args.name", "elsewhere"): "there is no",
    }
    for extra, words in attempts.items():
        assert main([*run, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("wdlab: error: ") and words in err[-1], (extra, err[-3:])
    assert {p: p.read_bytes() for p in watched} == before
    assert sorted(finished_run.glob("events.out.tfevents.*")) == events_before
    assert not list((finished_run.parent / "elsewhere").rglob("*.ckpt"))


def test_ckpt_path_auto_starts_then_resumes(in_tmp):
    run = [*SMALL, "--ckpt_path", "auto"]
    assert main([*run, "--trainer.max_epochs", "1"]) == 0  # nothing to resume: a fresh start
    last = in_tmp / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 4
    assert main([*run, "--trainer.max_epochs", "3"]) == 0  # the same command re-queued: resumes
    assert torch.load(last, weights_only=False)["global_step"] == 12
    assert not list((in_tmp / "runs").glob("*/version_*"))  # one pinned run directory


def test_last_every_n_steps_is_validated():
    with pytest.raises(ValueError, match="last_every_n_steps"):
        ResumableCheckpoint(last_every_n_steps=0)


# ------------------------------------------------------------------------------------ snapshots
def test_anytime_errors_are_logged_against_the_epoch_with_the_next_lambda(finished_run):
    scalars = read_scalars(finished_run)
    err = dict(scalars["anytime/err"])
    assert sorted(err) == [1, 3]  # periods end after epochs 1 and 3
    assert sorted(step for step, _ in scalars["anytime/err5"]) == [1, 3]
    snapshot = torch.load(finished_run / "snapshots" / "period-1-epoch-3.ckpt", weights_only=False)
    assert err[3] == pytest.approx(snapshot["wdlab_snapshot"]["err"])
    # the last epoch's validation evaluates the same weights on the same set
    val = [value for _, value in scalars["val/err"]]
    assert err[3] == pytest.approx(val[-1])
    next_lambda = dict(scalars["anytime/next_lambda"])
    # lambda = 0.05 * sqrt(b / (B * T)) for the next period: T = 2 after epoch 1, T = 4 after epoch 3
    assert next_lambda[1] == pytest.approx(0.05 * math.sqrt(64 / (256 * 2)), rel=1e-6)
    assert next_lambda[3] == pytest.approx(0.05 * math.sqrt(64 / (256 * 4)), rel=1e-6)


def test_a_schedule_without_restarts_has_one_snapshot_at_the_end(in_tmp):
    config = in_tmp / "cosine.yaml"
    text = (REPO / "configs" / "quickstart.yaml").read_text()
    config.write_text(re.sub(r"\n *(t0_epochs|t_mult): [0-9.]+", "", text.replace("name: adamwr", "name: adamw")))
    cosine = [a if a != QUICKSTART else str(config) for a in COSINE]
    assert main([*cosine, "--trainer.max_epochs", "2"]) == 0  # adamw: cosine over the whole run
    snaps = sorted(p.name for p in (in_tmp / "runs" / "quickstart" / "snapshots").glob("*.ckpt"))
    assert snaps == ["period-0-epoch-2.ckpt"]


def test_snapshots_can_be_turned_off(in_tmp):
    assert main([*SMALL, "--trainer.max_epochs", "1", "--snapshots.save", "false"]) == 0
    run_dir = in_tmp / "runs" / "quickstart"
    assert not (run_dir / "snapshots").exists()
    assert "anytime/err" in read_scalars(run_dir)


def test_testing_a_run_keeps_its_training_config(finished_run, in_tmp):
    config = finished_run / "config.yaml"
    before = config.read_bytes()
    snapshot = finished_run / "snapshots" / "period-1-epoch-3.ckpt"
    assert main(["test", "--config", QUICKSTART, *SMALL[3:-4],
                 "--trainer.logger.init_args.save_dir", str(finished_run.parent), "--ckpt_path", str(snapshot)]) == 0
    assert config.read_bytes() == before
