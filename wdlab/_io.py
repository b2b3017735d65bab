"""Atomic, durable file writes: the one writer behind every file wdlab produces that a reader may
open while it is being replaced or after a crash (checkpoints, results.csv, report PNGs, the
ImageNet32x32 cache). Plain Python; no torch, no Lightning.

A write goes to ``<name>.tmp-<pid>`` next to the target, is flushed and fsynced, and is then
renamed over the target with ``os.replace`` (atomic on POSIX within one filesystem), and the
directory is fsynced so the rename itself survives a power cut. A kill at any moment leaves
either the old file or the new one, never a mix. A writer that is SIGKILLed mid-write cannot remove
its staging file; the next write of the same target removes the staging files of processes that
no longer run, so at most one is ever left behind (none of them ends in the target's suffix).
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "fsync_directory",
    "fsync_file",
    "remove_stale_staging",
    "replace_all",
    "temporary_name",
]


def temporary_name(target: str | os.PathLike[str]) -> Path:
    """The staging file for ``target``: same directory (so the rename stays on one filesystem), per process."""
    target = Path(target)
    return target.with_name(f"{target.name}.tmp-{os.getpid()}")


def remove_stale_staging(target: str | os.PathLike[str]) -> None:
    """Remove ``<target>.tmp-<pid>`` files left by killed writers (pids that no longer run on this host)."""
    target = Path(target)
    prefix = f"{target.name}.tmp-"
    for staging in target.parent.glob(f"{glob.escape(prefix)}*"):
        pid = staging.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_runs(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def fsync_file(handle: IO[Any]) -> None:
    """Flush Python's buffer and the OS cache of an open file to the disk."""
    handle.flush()
    os.fsync(handle.fileno())


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make renames inside ``directory`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a staging file for writing; on a clean exit it replaces ``path`` atomically and durably.

    ``mode`` is ``"wb"`` or ``"w"`` (``open_kwargs`` such as ``newline=""`` go to :func:`open`). If the
    block raises, the staging file is removed and ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write opens files for writing ('w' or 'wb'), got mode {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    staging = temporary_name(target)
    try:
        with open(staging, mode, **open_kwargs) as handle:
            yield handle
            fsync_file(handle)
        os.replace(staging, target)
    finally:
        if staging.exists():
            staging.unlink()
    fsync_directory(target.parent)


def replace_all(staged: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]]) -> None:
    """Rename each already-fsynced staging file over its target, then fsync the directories.

    For a set of files that belong together (the ImageNet32x32 cache): the caller invalidates the
    set first (removes its manifest), replaces the files, and writes the manifest last with
    :func:`atomic_write`.
    """
    directories = set()
    for source, target in staged:
        os.replace(source, target)
        directories.add(Path(target).parent)
    for directory in directories:
        fsync_directory(directory)
