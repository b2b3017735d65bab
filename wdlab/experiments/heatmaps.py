"""From a sweep's ``results.csv`` to heatmap panels: one per optimizer (and per value of any other grid key).

A panel (:class:`Heatmap`) holds the cell means over seeds at ``lrs x decays`` (both ascending), the
value of every seed of every cell on a seed axis shared by all cells (``seed_values[i, j, s]`` is
seed ``seed_ids[s]``: the unit the statistics resample), the cells' mean final training loss (for
the row-health rule) and the panel's decay type. The decay type comes from the ``decoupled``
column each cell recorded when it was created; ``--coupled`` / ``--decoupled`` name it for tables
without that column (older sweeps: the paper's optimizer names are known, :data:`PAPER_DECAY_TYPES`).

Failed and pending cells are grey cells of their panel; a row without an optimizer name (written by
sweeps before cells recorded what they are) joins the panel only when the table has a single one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wdlab.experiments.coupling import Coupling, coupling
from wdlab.experiments.intervals import BOOTSTRAP_RESAMPLES
from wdlab.experiments.results import METRIC_COLUMNS, ResultsError, grid_columns
from wdlab.experiments.rules import Rules

__all__ = [
    "BASIN_POINTS",
    "BASIN_STANDARD_ERRORS",
    "ERROR_METRICS",
    "PAPER_DECAY_TYPES",
    "Heatmap",
    "ReportError",
    "basin_mask",
    "basin_outline",
    "decay_type_of",
    "heatmaps_from_table",
]

ERROR_METRICS = ("final_test_err", "best_test_err", "final_val_err")
#: The basin: cells within max(BASIN_POINTS percentage points, BASIN_STANDARD_ERRORS x SE) of the best.
BASIN_POINTS = 1.0
BASIN_STANDARD_ERRORS = 2.0
#: The decay type of the paper's optimizers, for tables written before cells recorded ``decoupled``.
PAPER_DECAY_TYPES = {
    "adam": "L2",
    "sgd": "L2",
    "adamw": "decoupled",
    "sgdw": "decoupled",
    "adamwr": "decoupled",
    "sgdwr": "decoupled",
}


class ReportError(ResultsError):
    """A report that cannot be drawn from the given inputs (one line, names the fix)."""


def decay_type_of(
    optimizer: str, recorded: str = "", coupled: Iterable[str] = (), decoupled: Iterable[str] = ()
) -> str:
    """``"L2"``, ``"decoupled"`` or ``""`` (unknown) for a panel.

    Names in ``coupled`` / ``decoupled`` (``--coupled`` / ``--decoupled``) first, then what the cells
    recorded (``recorded``: results.csv's ``decoupled`` column, "1" or "0"), then the paper's optimizer
    names. Never guessed from the name's ending.
    """
    if optimizer in set(coupled):
        return "L2"
    if optimizer in set(decoupled):
        return "decoupled"
    if recorded in ("1", "0"):
        return "decoupled" if recorded == "1" else "L2"
    return PAPER_DECAY_TYPES.get(optimizer, "")


@dataclass(frozen=True)
class Heatmap:
    """One panel: ``values[i, j]`` (mean over seeds) at ``lrs[i]`` x ``decays[j]``, both ascending.

    ``seed_values[i, j, s]``: seed ``seed_ids[s]``'s value of each cell (NaN where it has none);
    ``train_loss[i, j]``: the mean final training loss of each cell (NaN where unknown), and
    ``seed_train_loss[i, j, s]`` each seed's.
    """

    title: str
    lr_key: str
    decay_key: str
    metric: str
    lrs: tuple[float, ...]
    decays: tuple[float, ...]
    values: np.ndarray
    seeds: int  # the largest number of seeds averaged in one cell
    optimizer: str = ""
    seed_values: np.ndarray | None = field(default=None, repr=False)
    seed_ids: tuple[int, ...] = ()
    train_loss: np.ndarray | None = field(default=None, repr=False)
    decay_type: str = ""
    seed_train_loss: np.ndarray | None = field(default=None, repr=False)

    @property
    def scale(self) -> float:
        """Display units per metric unit: 100 for error rates (percent), else 1."""
        return 100.0 if self.metric in ERROR_METRICS else 1.0

    @property
    def judged(self) -> bool:
        """Coupling verdicts are given for error metrics only."""
        return self.metric in ERROR_METRICS

    def coupling(
        self, top_k: int = 10, rules: Rules | None = None, resamples: int = BOOTSTRAP_RESAMPLES
    ) -> Coupling:
        return coupling(
            self.lrs, self.decays, self.values, top_k, self.seed_values, self.decay_type, resamples,
            train_loss=self.train_loss, seed_train_loss=self.seed_train_loss, rules=rules or Rules(),
            judge=self.judged,
        )  # fmt: skip

    def best_index(self) -> tuple[int, int] | None:
        if not np.isfinite(self.values).any():
            return None
        i, j = np.unravel_index(np.nanargmin(self.values), self.values.shape)
        return int(i), int(j)

    def basin_margin(self, points: float = BASIN_POINTS) -> float:
        """The basin's margin in metric units: max(points/100 [x best, for a metric that is not an error
        rate], 2 standard errors of the best cell's seed mean); NaN without a finite cell."""
        best = self.best_index()
        if best is None:
            return math.nan
        floor = points / 100.0 * (1.0 if self.metric in ERROR_METRICS else abs(float(self.values[best])))
        standard_error = 0.0
        if self.seed_values is not None:
            seeds = self.seed_values[best][np.isfinite(self.seed_values[best])]
            if len(seeds) >= 2:
                standard_error = float(np.std(seeds, ddof=1) / math.sqrt(len(seeds)))
        return max(floor, BASIN_STANDARD_ERRORS * standard_error)

    def basin(self, points: float = BASIN_POINTS) -> np.ndarray:
        """The basin's cells (:func:`basin_mask` with :meth:`basin_margin`)."""
        return basin_mask(self.values, self.basin_margin(points))

    def headroom(self) -> float:
        """At the lr of the best cell: the decay-0 cell minus the best cell with decay > 0, in display
        units (percentage points for error rates); NaN without a decay-0 column or when a side failed."""
        best = self.best_index()
        zero = [j for j, d in enumerate(self.decays) if d == 0]
        positive = [j for j, d in enumerate(self.decays) if d > 0]
        if best is None or not zero or not positive:
            return math.nan
        row = self.values[best[0]]
        with_decay = row[positive]
        if not np.isfinite(row[zero[0]]) or not np.isfinite(with_decay).any():
            return math.nan
        return float((row[zero[0]] - np.nanmin(with_decay)) * self.scale)


def _guess_key(columns: Sequence[str], suffixes: Sequence[str], what: str, option: str) -> str:
    found = [c for c in columns if c.split(".")[-1] in suffixes]
    if len(found) != 1:
        raise ReportError(
            f"cannot tell which column is the {what} (candidates: {found or 'none'}): name it with {option}"
        )
    return found[0]


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def heatmaps_from_table(
    rows: Sequence[dict[str, str]],
    metric: str = "final_test_err",
    lr_key: str | None = None,
    decay_key: str | None = None,
    coupled: Iterable[str] = (),
    decoupled: Iterable[str] = (),
) -> list[Heatmap]:
    """One heatmap per optimizer (and per value of any other grid column) from sweep result rows."""
    if not rows:
        raise ReportError("the sweep has no result rows yet: run 'wdlab sweep' first")
    coupled, decoupled = tuple(coupled), tuple(decoupled)
    columns = list(rows[0])
    if metric not in columns:
        known = ", ".join(c for c in METRIC_COLUMNS if c in columns)
        raise ReportError(f"unknown metric {metric!r}: choose one of {known}")
    lr_key = lr_key or _guess_key(columns, ("lr",), "learning rate", "--lr_key")
    decay_key = decay_key or _guess_key(
        columns, ("weight_decay", "weight_decay_norm"), "weight decay", "--decay_key"
    )
    for key in (lr_key, decay_key):
        if key not in columns:
            raise ReportError(f"column {key!r} is not in the sweep's results (columns: {', '.join(columns)})")
    grid_keys = grid_columns(columns)
    others = [c for c in grid_keys if c not in (lr_key, decay_key, "seed")]
    named = {row.get("optimizer", "") for row in rows} - {""}
    only = next(iter(named)) if len(named) == 1 else ""

    groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in rows:
        optimizer = row.get("optimizer", "") or only
        if not optimizer and named:
            continue  # a failed or pending cell of an older table that did not record its optimizer
        groups.setdefault((optimizer, *(row.get(k, "") for k in others)), []).append(row)
    heatmaps = []
    for group, members in groups.items():
        heatmaps.append(_panel(group, members, ["optimizer", *others], metric, lr_key, decay_key, coupled, decoupled))
    return heatmaps


def _panel(
    group: tuple[str, ...],
    members: list[dict[str, str]],
    group_keys: list[str],
    metric: str,
    lr_key: str,
    decay_key: str,
    coupled: tuple[str, ...],
    decoupled: tuple[str, ...],
) -> Heatmap:
    lrs = sorted({float(r[lr_key]) for r in members})
    decays = sorted({float(r[decay_key]) for r in members})
    seed_ids = sorted({int(float(r["seed"])) for r in members if r.get("seed", "") != ""}) or [0]
    seed_values = np.full((len(lrs), len(decays), len(seed_ids)), np.nan)
    losses = np.full((len(lrs), len(decays), len(seed_ids)), np.nan)
    recorded = {r.get("decoupled", "") for r in members} - {""}
    for row in members:
        if row.get("state") != "complete":
            continue
        value = _number(row.get(metric))
        if not math.isfinite(value):
            continue
        cell = (lrs.index(float(row[lr_key])), decays.index(float(row[decay_key])))
        seed = seed_ids.index(int(float(row["seed"]))) if row.get("seed", "") != "" else 0
        seed_values[(*cell, seed)] = value
        losses[(*cell, seed)] = _number(row.get("final_train_loss"))
    counts = np.isfinite(seed_values).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, np.nansum(seed_values, axis=-1) / counts, np.nan)
        loss_counts = np.isfinite(losses).sum(axis=-1)
        train_loss = np.where(loss_counts > 0, np.nansum(losses, axis=-1) / loss_counts, np.nan)
    title = " ".join(
        part if key == "optimizer" else f"{key.split('.')[-1]}={part}"
        for key, part in zip(group_keys, group, strict=True)
        if part
    )
    optimizer = group[0]
    return Heatmap(
        title=title.strip() or "sweep",
        lr_key=lr_key,
        decay_key=decay_key,
        metric=metric,
        lrs=tuple(lrs),
        decays=tuple(decays),
        values=values,
        seeds=int(counts.max()) if counts.size else 0,
        optimizer=optimizer,
        seed_values=seed_values,
        seed_ids=tuple(seed_ids),
        train_loss=train_loss,
        decay_type=decay_type_of(optimizer, next(iter(recorded)) if len(recorded) == 1 else "", coupled, decoupled),
        seed_train_loss=losses,
    )


# -- the basin -----------------------------------------------------------------------------------
def basin_mask(values: np.ndarray, margin: float) -> np.ndarray:
    """The cells within ``margin`` of the best (finite) cell: ``values <= min + margin``."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values <= np.nanmin(values) + margin + 1e-12)


def basin_outline(mask: np.ndarray) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The outline of the cells in ``mask[i, j]`` as unit segments in image coordinates (x = j, y = i).

    Every side of a basin cell that borders a cell outside the basin (or the edge of the grid) is a
    segment, so the segments are the closed contour(s) around exactly the basin's cells.
    """
    mask = np.asarray(mask, dtype=bool)
    rows, columns = mask.shape
    inside = lambda i, j: 0 <= i < rows and 0 <= j < columns and mask[i, j]  # noqa: E731
    segments = []
    for i, j in zip(*np.nonzero(mask), strict=True):
        x0, x1, y0, y1 = j - 0.5, j + 0.5, i - 0.5, i + 0.5
        if not inside(i, j - 1):
            segments.append(((x0, y0), (x0, y1)))
        if not inside(i, j + 1):
            segments.append(((x1, y0), (x1, y1)))
        if not inside(i - 1, j):
            segments.append(((x0, y0), (x1, y0)))
        if not inside(i + 1, j):
            segments.append(((x0, y1), (x1, y1)))
    return [((float(a), float(b)), (float(c), float(d))) for (a, b), (c, d) in segments]
