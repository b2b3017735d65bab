"""Fixtures shared by the test modules in every folder under ``tests/``.

The tests are laid out like the package (``optim/``, ``models/``, ``data/``, ``training/``, ``experiments/``,
``cli/``, and whole-project tests here). There is no ``__init__.py`` in any test folder: pytest's default
``prepend`` import mode imports each test file by its basename (so basenames are unique across folders) with its
own folder on ``sys.path``, and this conftest puts ``tests/`` itself there, so the helper modules at this level
(``paths``, ``data_files``, ``optim_reference``, ``resume_helpers``, ``lightning_helpers``, ``sweep_helpers``,
``sweep_tables``, ``tiny_runs``) are imported by name from any folder. A test module never imports another test
module: what two of them share lives in a helper module. Subprocesses that import helpers (``--trainer.callbacks
resume_helpers.X``) get ``PYTHONPATH`` = :data:`paths.TESTS`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# One torch/OpenMP thread per test process (and per subprocess, which inherits it), set before anything imports
# torch. The tests' tensors are small, where a second thread costs more than it gains; and when another process
# holds a core, every parallel region of a two-thread process waits at its barrier for the descheduled thread:
# measured on 2 cores, a quickstart epoch went from ~2 s to 13-28 s next to one busy process. A test that needs
# more threads sets them itself; OMP_NUM_THREADS already in the environment is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:  # what the prepend import mode does for this file; said here so it holds in any mode
    sys.path.insert(0, _TESTS)

from paths import REPO  # noqa: E402


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside its own ``tmp_path`` (``runs/`` and other relative outputs land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (the same as ``paths.REPO``, for tests that prefer a fixture)."""
    return REPO


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules with a ``slow`` test first, then those with a ``trains`` test, then the rest (each module's tests
    keep their order). pytest-xdist hands whole modules (``--dist loadfile``) to its workers in this order, so the
    long ones start at once and the short ones fill in at the end, instead of one long module running alone on
    one worker while the other idles (a longest-first schedule)."""
    weight: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        rank = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("trains") else 2
        weight[module] = min(weight.get(module, 2), rank)
    items.sort(key=lambda item: weight[item.nodeid.split("::", 1)[0]])  # stable: order within a module kept
