"""The decision rules of a heatmap panel, fixed before the data (:class:`Rules`).

Read by :mod:`wdlab.experiments.row_optima` (which rows enter the slope) and
:mod:`wdlab.experiments.coupling` (verdicts); ``wdlab report`` sets them from its flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_RULES", "Rules"]


@dataclass(frozen=True)
class Rules:
    """The decision rules of a panel, fixed before the data (values in metric units: 0.10 = 10 points).

    ``margin``: equivalence margin m on the slope. ``health_loss_ratio``, ``health_seed_spread``: a row
    is healthy when its decay-0 cell's mean final training loss is at most this ratio times the panel's
    lowest, and its decay-0 seeds lie within this spread. ``collapse``: a cell this much worse than its
    row's best is collapsed. ``min_rows``, ``min_seeds``: fewer usable rows or seeds -> undecided.
    """

    margin: float = 0.5
    health_loss_ratio: float = 1.5
    health_seed_spread: float = 0.10
    collapse: float = 0.10
    min_rows: int = 3
    min_seeds: int = 3

    def __post_init__(self) -> None:
        for name in ("margin", "health_loss_ratio", "health_seed_spread", "collapse"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("min_rows", "min_seeds"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2 (a slope needs two rows, an interval two seeds)")


#: The rules ``wdlab report`` applies without flags.
DEFAULT_RULES = Rules()
