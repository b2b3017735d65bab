"""The decision rules of a heatmap panel, fixed before the data (:class:`Rules`).

Read by :mod:`wdlab.experiments.row_optima` (which rows enter the slope) and
:mod:`wdlab.experiments.coupling` (verdicts); ``wdlab report`` sets them from its flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_RULES", "RESAMPLE_READINGS", "Rules"]

#: What a resample (or a single seed) does with a chosen row whose optimum it censors (:class:`Rules`).
RESAMPLE_READINGS = ("argmin", "drop", "reselect")


@dataclass(frozen=True)
class Rules:
    """The decision rules of a panel, fixed before the data (values in metric units: 0.10 = 10 points).

    ``margin``: equivalence margin m on the slope. ``health_loss_ratio``, ``health_seed_spread``: a row
    is healthy when its decay-0 cell's mean final training loss is at most this ratio times the panel's
    lowest, and its decay-0 seeds lie within this spread. ``collapse``: a cell this much worse than its
    row's best is collapsed. ``min_rows``, ``min_seeds``: fewer usable rows or seeds -> undecided.

    ``resample_reading``: the rows are chosen once, on the means of all seeds; this says what a resample
    of the intervals (or a single seed) does with a chosen row whose best cell, in that resample, is at
    the grid edge or next to a failed or collapsed cell. ``argmin`` (the default): the row stays, its
    optimum the argmin (no rule is applied again). ``drop``: the row leaves that resample's slope.
    ``reselect``: the health and censoring rules are applied again in every resample (health on the
    drawn seeds in a whole-seed resample, on all seeds otherwise). Under ``drop`` and ``reselect`` a
    resample left with fewer than two rows has no slope and is left out of the interval.
    """

    margin: float = 0.5
    health_loss_ratio: float = 1.5
    health_seed_spread: float = 0.10
    collapse: float = 0.10
    min_rows: int = 3
    min_seeds: int = 3
    resample_reading: str = "argmin"

    def __post_init__(self) -> None:
        for name in ("margin", "health_loss_ratio", "health_seed_spread", "collapse"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("min_rows", "min_seeds"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2 (a slope needs two rows, an interval two seeds)")
        if self.resample_reading not in RESAMPLE_READINGS:
            raise ValueError(f"resample_reading must be one of {', '.join(RESAMPLE_READINGS)}, "
                             f"got {self.resample_reading!r}")


#: The rules ``wdlab report`` applies without flags.
DEFAULT_RULES = Rules()
