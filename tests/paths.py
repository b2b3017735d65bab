"""Where things are, for every test module (a test in a subfolder cannot count ``parents[...]`` to the repository).

Importable from any test: ``tests/conftest.py`` puts ``tests/`` on ``sys.path`` (pytest's default ``prepend``
import mode, no ``__init__.py`` in the test folders), and subprocesses get it as ``PYTHONPATH=TESTS``.
"""

from __future__ import annotations

from pathlib import Path

#: the test folder (helpers such as resume_helpers.py live at its top level)
TESTS = Path(__file__).resolve().parent
#: the repository root
REPO = TESTS.parent
#: the shipped configs
CONFIGS = REPO / "configs"
#: configs/quickstart.yaml, as a string (what command lines take)
QUICKSTART = str(CONFIGS / "quickstart.yaml")
