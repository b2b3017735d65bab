"""wdlab._io.atomic_write: the one writer behind checkpoints, results.csv, report files and the ImageNet32 cache."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest
import torch
from paths import QUICKSTART
from tiny_runs import builtin_data

from wdlab import _io
from wdlab._io import atomic_write
from wdlab.training.checkpoints import AtomicCheckpointIO


def test_the_target_changes_only_when_the_write_completes(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old\n")
    with atomic_write(target, "w") as handle:
        handle.write("new\n")
        handle.flush()
        assert target.read_text() == "old\n"  # a reader during the write sees the old file, whole
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no staging file left


def test_a_failed_write_leaves_the_old_file_and_no_staging_file(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_the_file_and_then_its_directory_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "fsync", fsync)
    monkeypatch.setattr(_io.os, "replace", replace)
    with atomic_write(tmp_path / "a.png") as handle:
        handle.write(b"png")
    assert events == ["fsync-file", "replace", "fsync-dir"]


def test_only_write_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="'w' or 'wb'"), atomic_write(tmp_path / "x", "a"):
        pass


# ------------------------------------------------------------------------------- SIGKILL fault test
_KILLS = 50
_PAYLOAD = 4_000_000  # float32: a 16 MB last.ckpt, so that a random kill usually lands inside a write


def _checkpoint(i: int) -> dict:
    return {"i": i, "x": torch.full((_PAYLOAD,), float(i))}


def _write_last_ckpt_forever(path, start, completed, writing) -> None:
    """The writer (a forked child): save states start, start+1, ... to ``path`` through wdlab's
    checkpoint IO until it is killed. ``writing`` is 1 from just before a save starts until just
    after it returned; ``completed`` is the last state whose save returned."""
    torch.set_num_threads(1)  # no OpenMP pool in a forked child
    checkpoint_io = AtomicCheckpointIO()
    i = start
    while True:
        state = _checkpoint(i)
        writing.value = 1
        checkpoint_io.save_checkpoint(state, path)
        completed.value = i
        writing.value = 0
        time.sleep(0.002)  # a short gap, so that some kills land between writes
        i += 1


def test_last_ckpt_survives_sigkill_at_random_moments(tmp_path):
    """SIGKILL a process that writes ``last.ckpt`` in a loop, 50 times at random moments: after every
    kill ``last.ckpt`` loads whole and holds the last state whose save completed, or the one being
    written when the kill came (its rename happened, the notice did not), never a torn file or an
    older state; and what killed writers leave behind is at most one staging file, the last one's
    ``last.ckpt.tmp-<pid>``, which nothing takes for a checkpoint.

    A kill cannot lose data in the page cache, so a missing fsync goes unnoticed here (only a power
    cut would show it): that is what test_the_file_and_then_its_directory_are_fsynced_around_the_rename
    is for. This test catches writes that are not atomic (written in place, or copied over the target).
    """
    context = multiprocessing.get_context("fork")
    rng = random.Random(20240613)
    target = tmp_path / "last.ckpt"
    checkpoint_io = AtomicCheckpointIO()
    started = time.perf_counter()
    checkpoint_io.save_checkpoint(_checkpoint(0), target)
    save_seconds = max(time.perf_counter() - started, 0.02)
    state, mid_write, killed = 0, 0, []
    try:
        for kill in range(_KILLS):
            completed = context.Value("q", state, lock=False)  # no lock: the child dies at any moment
            writing = context.Value("b", 0, lock=False)
            writer = context.Process(
                target=_write_last_ckpt_forever, args=(target, state + 1, completed, writing), daemon=True
            )
            writer.start()
            deadline = time.monotonic() + 30
            while not writing.value and writer.is_alive():  # its first save has begun
                assert time.monotonic() < deadline, "the writer did not start writing within 30 s"
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 2.5 * save_seconds))
            os.kill(writer.pid, signal.SIGKILL)
            writer.join()
            assert writer.exitcode == -signal.SIGKILL, f"kill {kill}: the writer ended by itself ({writer.exitcode})"
            last_completed, was_writing = completed.value, bool(writing.value)
            mid_write += was_writing

            try:
                loaded = torch.load(target, map_location="cpu")
            except Exception as error:
                pytest.fail(
                    f"kill {kill}: last.ckpt does not load ({type(error).__name__}: {str(error).split('. ')[0]}; "
                    f"killed {'during' if was_writing else 'between'} writes after state {last_completed})"
                )
            expected = {last_completed, last_completed + 1} if was_writing else {last_completed}
            assert loaded["i"] in expected, (
                f"kill {kill}: last.ckpt holds state {loaded['i']}, expected one of {sorted(expected)} "
                f"(previous state {state}, killed {'during' if was_writing else 'between'} writes)"
            )
            assert loaded["i"] >= state, f"kill {kill}: last.ckpt went back from state {state} to {loaded['i']}"
            assert loaded["x"].shape == (_PAYLOAD,) and torch.equal(
                loaded["x"], torch.full((_PAYLOAD,), float(loaded["i"]))
            ), f"kill {kill}: the tensor of state {loaded['i']} does not match its counter"
            state = loaded["i"]

            # A SIGKILL skips atomic_write's clean-up, so a writer killed mid-write leaves its staging
            # file; a later writer removes those of dead processes before it stages its own. So at most
            # one is left (the killed writer's, or the one before it if the kill came before that
            # clean-up), and none is taken for a checkpoint, by wdlab's "*.ckpt" globs (resume.py) or
            # by Lightning's last-checkpoint rule (suffix .ckpt).
            killed.append(writer.pid)
            leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != target.name)
            allowed = {f"{target.name}.tmp-{pid}" for pid in killed[-2:]}
            assert len(leftovers) <= 1 and set(leftovers) <= allowed, f"kill {kill}: left in the folder: {leftovers}"
            assert [p.name for p in tmp_path.glob("*.ckpt")] == [target.name]
    finally:
        for leftover in tmp_path.glob(f"{target.name}.tmp-*"):  # up to 16 MB each
            leftover.unlink()
    assert state > 0, "no save ever completed"
    assert mid_write >= _KILLS // 2, f"only {mid_write} of {_KILLS} kills landed while a write was in progress"


@pytest.mark.trains
def test_training_writes_its_checkpoints_and_snapshots_through_atomic_write(tmp_path, monkeypatch):
    """A real fit: every last.ckpt and snapshot lands by a rename of its staging file (a plain torch.save
    into the target, Lightning's default, would not)."""
    from pathlib import Path

    from wdlab.cli import main

    renamed: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src, dst) -> None:
        renamed.append((Path(src).name, str(Path(dst).relative_to(tmp_path / "runs" / "quickstart"))))
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "replace", replace)
    config = QUICKSTART
    assert main(["fit", "--config", str(config), "--trainer.max_epochs", "3", "--model.optimizer.t0_epochs", "1",
                 *builtin_data(128, 64, 128), "--test_after_fit", "false",
                 "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir",
                 str(tmp_path / "runs")]) == 0
    targets = [target for _, target in renamed]
    assert targets.count("checkpoints/last.ckpt") == 3  # one per epoch end
    assert sorted(t for t in targets if t.startswith("snapshots/")) == [
        "snapshots/period-0-epoch-1.ckpt", "snapshots/period-1-epoch-3.ckpt"]
    assert all(source == f"{Path(target).name}.tmp-{os.getpid()}" for source, target in renamed)
