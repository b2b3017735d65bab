"""wdlab._io.atomic_write: the one writer behind checkpoints, results.csv, report files and the ImageNet32 cache."""

from __future__ import annotations

import os

import pytest

from wdlab import _io
from wdlab._io import atomic_write


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
