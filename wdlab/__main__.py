"""``python -m wdlab`` is the ``wdlab`` command (the sweep starts its cells this way)."""

import sys

from wdlab.cli import main

sys.exit(main())
