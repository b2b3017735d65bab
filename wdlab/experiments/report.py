"""``wdlab report``: the paper's figures from sweeps and runs, with the statistics that judge them.

* **Heatmaps (Fig. 2).** From a sweep's ``results.csv`` (``wdlab sweep``): test error over learning
  rate x weight decay with log2 axes, one panel per optimizer (and per value of any other grid key).
  Each panel shows the cell means over seeds, the *basin* (outline of the cells within a margin of the
  best), the best cell, and the per-row optimum ``log2 lambda*(alpha)``; it is titled with its
  coupling slope, the slope's bootstrap interval and its verdict (:func:`coupling`). Written as a PNG
  and logged to TensorBoard as an image; the numbers go to ``coupling.csv`` and ``optima.csv``.
* **Learning curves.** From the TensorBoard event files of any set of runs: training loss and test
  error against epoch, one line per run, the ends of the warm-restart periods marked.
* **Anytime curves.** The error at the end of every period (``anytime/err``, logged by the snapshots
  callback) against epoch, one line per run, the period ends labelled on the log axis.

::

    wdlab report runs/fig2_sgd runs/fig2_sgdw runs/fig2_adam runs/fig2_adamw --out docs/fig2
    wdlab report runs/quickstart runs/other_run --out reports/curves

Each path is a sweep directory (it holds ``results.csv``: a heatmap panel per optimizer in it) or a
directory of runs (every directory below it with TensorBoard event files is a run: learning and
anytime curves).

The statistics of a panel (values: the mean over seeds of each cell; lower is better):

* **Row optimum** ``log2 lambda*(alpha)`` (:func:`row_optima`): per lr row, the vertex of the parabola
  in log2(decay) through the row's best cell and its two neighbours. Where the best cell is at the
  edge of the grid (or next to a failed cell) there is no parabola: the optimum is the argmin itself
  and the row is flagged (``edge``). The decay-0 column has no log2 and is not on that axis; it never
  enters the fit (it enters the headroom).
* **Slope** ``d log2 lambda* / d log2 alpha``: least squares over the rows. The paper's claim: about
  -1 when decay and lr are coupled (L2: what matters is their product), about 0 when decoupled.
* **Interval**: a percentile bootstrap 95 % interval of the slope over seeds: each resample draws,
  per cell, as many seed values as the cell has, with replacement, and recomputes the row optima and
  the slope (:data:`BOOTSTRAP_RESAMPLES` resamples, fixed RNG seed :data:`BOOTSTRAP_SEED`, so a
  report is reproducible). Undefined with one seed per cell.
* **Verdict** (:func:`verdict`): an L2 panel (``adam``, ``sgd``) *shows coupling* when the interval
  lies entirely below -0.5; a decoupled panel (``adamw``, ``sgdw``, ``adamwr``, ``sgdwr``) *shows
  decoupling* when the interval contains 0 and is at most 1.0 wide (a wide interval contains 0 by
  noise alone). Otherwise the verdict names the condition that failed. Optimizers outside that
  table are looked up in :data:`wdlab.optim.REGISTRY` or named with ``--coupled``/``--decoupled``.
* **Basin** (:func:`basin_mask`): the cells within ``max(1 percentage point, 2 standard errors of the
  best cell's seed mean)`` of the best cell (for a metric that is not an error rate: 1 % of the best
  value instead of 1 point).
* **Headroom**: at the lr of the best cell, the decay-0 cell minus the best cell with decay > 0, in
  percentage points (positive: decay helps); undefined without a decay-0 column.
* Also kept: the *argmin slope* (the same slope through the per-row argmin, no parabola) and the
  *top-k correlation* of log2 lr and log2 decay over the ``top_k`` best cells with decay > 0.

This module knows nothing of Lightning and imports no torch at module level: it reads CSV and event
files (:mod:`wdlab.experiments.results`). The command is :mod:`wdlab.cli.report`.
"""

from __future__ import annotations

import csv
import math
import os
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wdlab._io import atomic_write
from wdlab.experiments.results import (
    METRIC_COLUMNS,
    TENSORBOARD_DIR,
    ResultsError,
    epoch_of_step,
    grid_columns,
    read_results,
    read_scalars,
)

HEATMAP_PNG = "heatmap.png"
LEARNING_CURVES_PNG = "learning_curves.png"
ANYTIME_PNG = "anytime.png"
COUPLING_CSV = "coupling.csv"
OPTIMA_CSV = "optima.csv"
ERROR_METRICS = ("final_test_err", "best_test_err")

#: Bootstrap of the slope: resamples and the fixed seed of its RNG (a report is reproducible).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: An L2 panel shows coupling when the slope's 95 % interval lies entirely below this.
COUPLING_BELOW = -0.5
#: A decoupled panel shows decoupling when the interval contains 0 and is at most this wide.
DECOUPLING_MAX_WIDTH = 1.0
#: The basin: cells within max(BASIN_POINTS percentage points, BASIN_STANDARD_ERRORS x SE) of the best.
BASIN_POINTS = 1.0
BASIN_STANDARD_ERRORS = 2.0
#: The decay type of the paper's optimizers; others are looked up in wdlab.optim.REGISTRY.
DECAY_TYPES = {
    "adam": "L2",
    "sgd": "L2",
    "adamw": "decoupled",
    "sgdw": "decoupled",
    "adamwr": "decoupled",
    "sgdwr": "decoupled",
}
#: coupling.csv: the first nine columns are the original ones, in their original order.
COUPLING_COLUMNS = (
    "panel", "metric", "slope", "top_k_correlation", "rows", "top_k", "best", "best_lr", "best_decay",
    "slope_lo", "slope_hi", "seeds", "min_seeds", "resamples", "argmin_slope", "edge_rows",
    "headroom", "basin_margin", "basin_cells", "decay_type", "verdict",
)  # fmt: skip
OPTIMA_COLUMNS = ("panel", "lr", "log2_lr", "log2_decay_star", "edge")
#: Suffix of each writer's TensorBoard event files: a rerun replaces the files of its own kind.
_EVENT_SUFFIXES = {"sweep": ".sweep", "curves": ".curves"}

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "COUPLING_COLUMNS",
    "DECAY_TYPES",
    "Coupling",
    "Heatmap",
    "ReportError",
    "RowOptimum",
    "basin_mask",
    "basin_outline",
    "bootstrap_slopes",
    "coupling",
    "decay_type_of",
    "heatmaps_from_table",
    "plot_anytime_curves",
    "plot_heatmaps",
    "plot_learning_curves",
    "row_optima",
    "verdict",
    "write_curves_report",
    "write_sweep_report",
]


class ReportError(ResultsError):
    """A report that cannot be drawn from the given inputs (one line, names the fix)."""


# -- row optima, slope and its bootstrap ----------------------------------------------------------
@dataclass(frozen=True)
class RowOptimum:
    """The optimum decay of one lr row: ``log2_decay`` is log2 lambda* (NaN: no finite cell with decay > 0).

    ``edge``: the row's best cell is at the edge of the grid or next to a failed cell, so there is no
    parabola and ``log2_decay`` is the argmin itself (the true optimum may lie beyond it).
    """

    lr: float
    log2_decay: float
    edge: bool


def _log2_positive(decays: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    decays = np.asarray(decays, dtype=np.float64)
    positive = decays > 0
    return positive, np.log2(decays[positive])


def _optima(log_decays: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row optima of ``table[..., row, column]`` over columns at ``log_decays`` (ascending): (log2 lambda*, edge).

    The vertex of the parabola through the best cell j and its neighbours j-1, j+1 (spacings h0, h2;
    rises d0, d2 >= 0 from the best): x_j + (d0 h2^2 - d2 h0^2) / (2 (d0 h2 + d2 h0)), which lies
    between the midpoints of j and its neighbours. Ties: the first best cell; all three equal: x_j.
    """
    shape = table.shape[:-1]
    if table.shape[-1] == 0:
        return np.full(shape, np.nan), np.zeros(shape, dtype=bool)
    filled = np.where(np.isnan(table), np.inf, table)
    last = table.shape[-1] - 1
    j = np.argmin(filled, axis=-1)
    best = np.take_along_axis(filled, j[..., None], axis=-1)[..., 0]
    left = np.take_along_axis(filled, np.maximum(j - 1, 0)[..., None], axis=-1)[..., 0]
    right = np.take_along_axis(filled, np.minimum(j + 1, last)[..., None], axis=-1)[..., 0]
    empty = ~np.isfinite(best)
    edge = ((j == 0) | (j == last) | ~np.isfinite(left) | ~np.isfinite(right)) & ~empty
    x = log_decays[j]
    h0 = x - log_decays[np.maximum(j - 1, 0)]
    h2 = log_decays[np.minimum(j + 1, last)] - x
    with np.errstate(invalid="ignore", divide="ignore"):
        d0, d2 = left - best, right - best
        denominator = 2.0 * (d0 * h2 + d2 * h0)
        shift = (d0 * h2 * h2 - d2 * h0 * h0) / denominator
    shift = np.where(edge | empty | ~(denominator > 0), 0.0, shift)
    return np.where(empty, np.nan, x + shift), edge


def row_optima(lrs: Sequence[float], decays: Sequence[float], values: np.ndarray) -> list[RowOptimum]:
    """Per lr row the continuous optimum log2 lambda* (module docstring); columns with decay 0 are left out."""
    values = np.asarray(values, dtype=np.float64)
    positive, log_decays = _log2_positive(decays)
    optimum, edge = _optima(log_decays, values[:, positive])
    return [RowOptimum(float(lr), float(o), bool(e)) for lr, o, e in zip(lrs, optimum, edge, strict=True)]


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of ``y[..., k]`` against ``x[k]`` (NaN with fewer than two x or no spread)."""
    if len(x) < 2 or np.ptp(x) == 0:
        return np.full(y.shape[:-1], np.nan)
    dx = x - x.mean()
    return (dx * (y - y.mean(axis=-1, keepdims=True))).sum(axis=-1) / (dx * dx).sum()


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(_slopes(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)))


def _resampled_means(seed_values: np.ndarray, resamples: int, rng_seed: int, chunk: int = 256) -> Iterator[np.ndarray]:
    """Bootstrap tables ``(b, rows, columns)``: per cell, its n seed values drawn n times with replacement, averaged."""
    counts = np.isfinite(seed_values).sum(axis=-1)
    ordered = np.sort(seed_values, axis=-1)  # finite values first, NaN padding last
    width = seed_values.shape[-1]
    used = np.arange(width) < counts[..., None]
    rng = np.random.default_rng(rng_seed)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        index = rng.integers(0, np.maximum(counts, 1)[..., None], size=(size, *seed_values.shape))
        drawn = np.where(used, np.take_along_axis(ordered[None], index, axis=-1), 0.0)
        with np.errstate(invalid="ignore"):
            yield np.where(counts > 0, drawn.sum(axis=-1) / np.maximum(counts, 1), np.nan)


def bootstrap_slopes(
    lrs: Sequence[float],
    decays: Sequence[float],
    seed_values: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """The slope of log2 lambda* against log2 lr in each of ``resamples`` bootstrap tables over seeds.

    ``seed_values[i, j, k]``: the k-th seed's value of cell (i, j), NaN-padded where a cell has fewer
    seeds (a cell without values stays failed in every resample).
    """
    seed_values = np.asarray(seed_values, dtype=np.float64)
    positive, log_decays = _log2_positive(decays)
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    counts = np.isfinite(seed_values[:, positive]).sum(axis=-1)
    rows = counts.sum(axis=-1) > 0  # the same rows in every resample: a cell's values never all vanish
    slopes = []
    for tables in _resampled_means(seed_values[rows][:, positive], resamples, rng_seed):
        optimum, _ = _optima(log_decays, tables)
        slopes.append(_slopes(log_lr[rows], optimum))
    return np.concatenate(slopes) if slopes else np.zeros(0)


def decay_type_of(optimizer: str, coupled: Iterable[str] = (), decoupled: Iterable[str] = ()) -> str:
    """``"L2"``, ``"decoupled"`` or ``""`` (unknown) for an optimizer name of results.csv.

    Names in ``coupled`` / ``decoupled`` (``--coupled`` / ``--decoupled``) first, then :data:`DECAY_TYPES`,
    then the ``decoupled`` field of the registry entry of that name. Never guessed from the name's ending.
    """
    if optimizer in set(coupled):
        return "L2"
    if optimizer in set(decoupled):
        return "decoupled"
    if optimizer in DECAY_TYPES:
        return DECAY_TYPES[optimizer]
    if not optimizer:
        return ""
    from wdlab.optim import REGISTRY  # lazily: loads torch, not Lightning; only for names outside the table

    spec = REGISTRY.get(optimizer)
    return "" if spec is None else ("decoupled" if spec.decoupled else "L2")


def verdict(decay_type: str, slope_lo: float, slope_hi: float, note: str = "") -> str:
    """What the slope's 95 % interval says about the paper's claim for a panel of this decay type.

    L2: ``shows coupling`` when ``slope_hi < -0.5``; decoupled: ``shows decoupling`` when
    ``slope_lo <= 0 <= slope_hi`` and ``slope_hi - slope_lo <= 1.0``. Otherwise ``no coupling: ...`` /
    ``no decoupling: ...`` with the failed conditions, or ``undecided: ...`` (no interval, unknown type).
    """
    if decay_type not in ("L2", "decoupled"):
        return "undecided: unknown decay type (name the optimizer with --coupled or --decoupled)"
    if not (math.isfinite(slope_lo) and math.isfinite(slope_hi)):
        return f"undecided: no interval ({note or 'undefined'})"
    if decay_type == "L2":
        return "shows coupling" if slope_hi < COUPLING_BELOW else f"no coupling: interval not below {COUPLING_BELOW:g}"
    failed = []
    if not slope_lo <= 0.0 <= slope_hi:
        failed.append("interval excludes 0")
    if slope_hi - slope_lo > DECOUPLING_MAX_WIDTH:
        failed.append("interval too wide")
    return "no decoupling: " + "; ".join(failed) if failed else "shows decoupling"


@dataclass(frozen=True)
class Coupling:
    """How strongly the best weight decay moves with the learning rate in one heatmap (module docstring).

    ``slope``: least-squares slope of log2 lambda* (the per-row parabola optimum, :class:`RowOptimum`)
    against log2(lr) over the ``rows`` lr rows that have a finite cell with decay > 0; ``slope_lo``,
    ``slope_hi``: its bootstrap 95 % interval over seeds (NaN without seed values or with one seed per
    cell). ``argmin_slope``: the same through the per-row argmin. ``correlation``: Pearson correlation
    of log2(lr) and log2(decay) over the ``top_k`` best cells with decay > 0 (strongly negative for a
    diagonal basin, near 0 for an axis-aligned one). ``seeds`` / ``min_seeds``: the most / fewest
    seeds in a cell that has any. ``verdict``: :func:`verdict` for ``decay_type``.
    """

    slope: float
    correlation: float
    rows: int  # lr rows that entered the slope
    top_k: int  # cells that entered the correlation
    slope_lo: float = math.nan
    slope_hi: float = math.nan
    seeds: int = 0
    min_seeds: int = 0
    resamples: int = 0
    argmin_slope: float = math.nan
    optima: tuple[RowOptimum, ...] = ()
    decay_type: str = ""
    verdict: str = ""

    @property
    def edge_rows(self) -> int:
        """Rows whose optimum is an argmin at the grid edge (or next to a failed cell)."""
        return sum(o.edge for o in self.optima if math.isfinite(o.log2_decay))


def coupling(
    lrs: Sequence[float],
    decays: Sequence[float],
    values: np.ndarray,
    top_k: int = 10,
    seed_values: np.ndarray | None = None,
    decay_type: str = "",
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
) -> Coupling:
    """Coupling numbers of a heatmap ``values[i, j]`` (lower is better) at ``lrs[i]`` x ``decays[j]``.

    slope = cov(x, y) / var(x) over the rows, x = log2(lr_i), y = log2 lambda*_i (:func:`row_optima`);
    the interval from :func:`bootstrap_slopes` of ``seed_values[i, j, k]`` (the seed values behind
    ``values``) when given and some cell has two seeds; correlation = cov(x, y) / (std(x) std(y)) over
    the top_k lowest cells with decay > 0, x = log2 lr, y = log2 decay. NaN values (failed cells) are
    ignored; a number that is undefined (fewer than two rows, or no spread along an axis) is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(lrs), len(decays)):
        raise ValueError(f"values have shape {values.shape}, expected ({len(lrs)}, {len(decays)})")
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    positive, log_decays = _log2_positive(decays)
    usable = values[:, positive]

    optima = tuple(row_optima(lrs, decays, values))
    rows = np.array([math.isfinite(o.log2_decay) for o in optima], dtype=bool)
    slope = _slope(log_lr[rows], np.array([o.log2_decay for o in optima])[rows])
    argmins = [log_decays[int(np.nanargmin(usable[i]))] for i in np.flatnonzero(rows)]
    argmin_slope = _slope(log_lr[rows], np.array(argmins))

    cells = [(usable[i, j], log_lr[i], log_decays[j]) for i, j in np.ndindex(usable.shape)]
    cells = sorted((c for c in cells if not math.isnan(c[0])), key=lambda c: c[0])[:top_k]
    correlation = _correlation(np.array([c[1] for c in cells]), np.array([c[2] for c in cells]))

    lo = hi = math.nan
    seeds = min_seeds = 0
    note = "no seed values"
    if seed_values is not None:
        seed_values = np.asarray(seed_values, dtype=np.float64)
        counts = np.isfinite(seed_values).sum(axis=-1)
        seeds = int(counts.max()) if counts.size else 0
        min_seeds = int(counts[counts > 0].min()) if (counts > 0).any() else 0
        note = "one seed per cell"
        if seeds >= 2 and math.isfinite(slope):
            boot = bootstrap_slopes(lrs, decays, seed_values, resamples, rng_seed)
            lo, hi = (float(q) for q in np.percentile(boot, [2.5, 97.5]))
        elif seeds >= 2:
            note = "fewer than two lr rows"
    return Coupling(
        slope=slope,
        correlation=correlation,
        rows=int(rows.sum()),
        top_k=len(cells),
        slope_lo=lo,
        slope_hi=hi,
        seeds=seeds,
        min_seeds=min_seeds,
        resamples=resamples if math.isfinite(lo) else 0,
        argmin_slope=argmin_slope,
        optima=optima,
        decay_type=decay_type,
        verdict=verdict(decay_type, lo, hi, note),
    )


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


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


# -- sweep tables --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heatmap:
    """One panel: ``values[i, j]`` (mean over seeds) at ``lrs[i]`` x ``decays[j]``, both ascending.

    ``seed_values[i, j, k]``: the seed values behind each mean (NaN-padded to the most seeds of a cell).
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

    @property
    def scale(self) -> float:
        """Display units per metric unit: 100 for error rates (percent), else 1."""
        return 100.0 if self.metric in ERROR_METRICS else 1.0

    def coupling(
        self, top_k: int = 10, coupled: Iterable[str] = (), decoupled: Iterable[str] = (),
        resamples: int = BOOTSTRAP_RESAMPLES,
    ) -> Coupling:  # fmt: skip
        kind = decay_type_of(self.optimizer, coupled, decoupled)
        return coupling(self.lrs, self.decays, self.values, top_k, self.seed_values, kind, resamples)

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


def heatmaps_from_table(
    rows: Sequence[dict[str, str]],
    metric: str = "final_test_err",
    lr_key: str | None = None,
    decay_key: str | None = None,
) -> list[Heatmap]:
    """One heatmap per optimizer (and per value of any other grid column) from sweep result rows."""
    if not rows:
        raise ReportError("the sweep has no result rows yet: run 'wdlab sweep' first")
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
    group_keys = ["optimizer", *[c for c in grid_keys if c not in (lr_key, decay_key, "seed")]]

    groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k, "") for k in group_keys), []).append(row)
    heatmaps = []
    for group, members in groups.items():
        lrs = sorted({float(r[lr_key]) for r in members})
        decays = sorted({float(r[decay_key]) for r in members})
        cells: dict[tuple[int, int], list[float]] = {}
        for row in members:
            if row.get("state") != "complete" or row.get(metric, "") == "":
                continue
            value = float(row[metric])
            if not math.isfinite(value):
                continue
            cells.setdefault((lrs.index(float(row[lr_key])), decays.index(float(row[decay_key]))), []).append(value)
        width = max((len(v) for v in cells.values()), default=0)
        seed_values = np.full((len(lrs), len(decays), max(width, 1)), np.nan)
        for (i, j), found in cells.items():
            seed_values[i, j, : len(found)] = found
        values = np.full((len(lrs), len(decays)), np.nan)
        for (i, j), found in cells.items():
            values[i, j] = sum(found) / len(found)
        title = " ".join(
            part if key == "optimizer" else f"{key.split('.')[-1]}={part}"
            for key, part in zip(group_keys, group, strict=True)
            if part
        )
        heatmaps.append(
            Heatmap(
                title=title.strip() or "sweep",
                lr_key=lr_key,
                decay_key=decay_key,
                metric=metric,
                lrs=tuple(lrs),
                decays=tuple(decays),
                values=values,
                seeds=width,
                optimizer=group[0],
                seed_values=seed_values,
            )
        )
    return heatmaps


# -- drawing -------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in containers
    import matplotlib.pyplot as plt

    return plt


def _power_label(value: float) -> str:
    if value == 0:
        return "0"
    exponent = math.log2(value)
    if abs(exponent - round(exponent)) < 1e-9:
        return f"$2^{{{round(exponent)}}}$"
    return f"{value:.3g}"


def _signed(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.2f}".replace("-", "\u2212")


def _panel_title(heatmap: Heatmap, stats: Coupling) -> str:
    kind = {"L2": " (L2)", "decoupled": " (decoupled)"}.get(stats.decay_type, "")
    seeds = f"{stats.seeds} seed" + ("s" if stats.seeds != 1 else "")
    if math.isfinite(stats.slope_lo):
        interval = f"95% [{_signed(stats.slope_lo)}, {_signed(stats.slope_hi)}]"
    else:
        interval = "no interval"
    return (
        f"{heatmap.title}{kind}, {seeds}\n"
        f"slope d log\u2082\u03bb*/d log\u2082\u03b1 {_signed(stats.slope)}, {interval}\n"
        + textwrap.fill(stats.verdict, 52)
    )


def plot_heatmaps(
    heatmaps: Sequence[Heatmap],
    path: str | os.PathLike[str],
    top: int = 10,
    coupled: Iterable[str] = (),
    decoupled: Iterable[str] = (),
    basin_points: float = BASIN_POINTS,
    stats: Sequence[Coupling] | None = None,
) -> Any:
    """Draw the panels side by side as in the paper's Fig. 2 and save a PNG; returns the figure.

    x: weight decay, y: learning rate, both on log2 axes (one column/row per grid value, decay 0 as
    the leftmost column, set off by a white line); colour and number in each cell: the metric (error in
    percent); red outline: the basin; red circle: the best cell; white diamonds: log2 lambda* per lr
    row, just below the row's middle (a cross: at the grid edge, the argmin). Each panel is titled with
    its slope, the slope's 95 % interval and the verdict (``stats``, one per panel, or computed with
    ``top``, ``coupled``, ``decoupled``); the legend below the panels explains the marks.
    """
    plt = _pyplot()
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    if stats is None:
        stats = [h.coupling(top, coupled, decoupled) for h in heatmaps]
    n = len(heatmaps)
    columns = max((len(h.decays) for h in heatmaps), default=1)
    rows = max((len(h.lrs) for h in heatmaps), default=1)
    width, height = max(4.4, 1.9 + 0.62 * columns), max(3.6, 2.2 + 0.42 * rows)
    ncol = 4 if width * n >= 11 else (2 if width * n >= 8 else 1)  # the legend below the panels
    legend = 0.15 + 0.24 * math.ceil(4 / ncol)
    fig, axes = plt.subplots(1, n, figsize=(width * n, height + legend), squeeze=False)
    for ax, heatmap, panel in zip(axes[0], heatmaps, stats, strict=True):
        scale = heatmap.scale
        shown = heatmap.values * scale
        finite = shown[np.isfinite(shown)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        image = ax.imshow(
            np.ma.masked_invalid(shown), origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto"
        )
        ax.set_facecolor("#dddddd")  # failed / missing cells
        ax.set_xticks(range(len(heatmap.decays)), [_power_label(d) for d in heatmap.decays], fontsize=9)
        ax.set_yticks(range(len(heatmap.lrs)), [_power_label(v) for v in heatmap.lrs], fontsize=9)
        ax.set_xlabel(f"weight decay ({heatmap.decay_key.split('.')[-1]}, log2)")
        ax.set_ylabel("learning rate (log2)")
        cell_font = 9 if len(heatmap.decays) <= 9 else 7
        for i, j in np.ndindex(shown.shape):
            if np.isfinite(shown[i, j]) and shown.size <= 144:
                bright = (shown[i, j] - vmin) < 0.5 * (vmax - vmin)  # viridis_r: low values are light
                ax.text(j, i + 0.17, f"{shown[i, j]:.1f}" if scale == 100 else f"{shown[i, j]:.2g}",
                        ha="center", va="center", fontsize=cell_font, color="black" if bright else "white")
        zero = [j for j, d in enumerate(heatmap.decays) if d == 0]
        if zero and len(zero) < len(heatmap.decays):
            ax.axvline(zero[-1] + 0.5, color="white", linewidth=3)  # decay 0 is not on the log axis
        outline = basin_outline(heatmap.basin(basin_points))
        if outline:
            ax.add_collection(LineCollection(outline, colors="red", linewidths=2.2, capstyle="projecting"))
        _draw_optima(ax, heatmap, panel)
        ax.set_xlim(-0.5, len(heatmap.decays) - 0.5)
        ax.set_ylim(-0.5, len(heatmap.lrs) - 0.5)
        ax.set_title(_panel_title(heatmap, panel), fontsize=10)
        label = {"final_test_err": "test error (%)", "best_test_err": "best test error (%)"}.get(
            heatmap.metric, heatmap.metric
        )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    margin = "1 point" if basin_points == 1 else f"{basin_points:g} points"
    margin = margin if any(h.metric in ERROR_METRICS for h in heatmaps) else f"{basin_points:g} %"
    handles = [
        Line2D([], [], color="red", linewidth=2.2, label=f"basin: within max({margin}, 2 SE) of best"),
        Line2D([], [], color="red", marker="o", markerfacecolor="none", linestyle="", markersize=10,
               label="best cell"),
        Line2D([], [], color="white", marker="D", markeredgecolor="black", linestyle="-", markersize=6,
               label="log\u2082\u03bb* per lr row (parabola)"),
        Line2D([], [], color="white", marker="X", markeredgecolor="black", linestyle="", markersize=7,
               label="argmin at the grid edge / a failed cell"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, legend / (height + legend), 1, 1))
    for ax, heatmap in zip(axes[0], heatmaps, strict=True):
        best = heatmap.best_index()
        if best is not None:  # a marker, not a patch: round whatever the cells' aspect
            box = ax.get_window_extent().transformed(fig.dpi_scale_trans.inverted())
            cell = min(box.width / len(heatmap.decays), box.height / len(heatmap.lrs))
            ax.plot(best[1], best[0], marker="o", markersize=0.85 * cell * 72, markerfacecolor="none",
                    markeredgecolor="red", markeredgewidth=1.6, linestyle="", zorder=5)
    _save(fig, path)
    return fig


_OPTIMUM_OFFSET = 0.2  # the lambda* markers sit this far below the middle of their row


def _draw_optima(ax: Any, heatmap: Heatmap, stats: Coupling) -> None:
    """log2 lambda* per row at its place on the decay axis (interpolated between the columns), just below
    the row's middle so that it does not cover the cells' numbers."""
    positive = [j for j, d in enumerate(heatmap.decays) if d > 0]
    if not positive:
        return
    log_decays = np.log2([heatmap.decays[j] for j in positive])
    points = [
        (float(np.interp(o.log2_decay, log_decays, positive)), i, o.edge)
        for i, o in enumerate(stats.optima)
        if math.isfinite(o.log2_decay)
    ]
    if not points:
        return
    y = [p[1] - _OPTIMUM_OFFSET for p in points]  # below the cell's number
    ax.plot([p[0] for p in points], y, color="white", linewidth=1.2, alpha=0.9, zorder=3)
    for (x, _, edge), row in zip(points, y, strict=True):
        ax.plot(x, row, marker="X" if edge else "D", markersize=7 if edge else 6, markeredgecolor="black",
                markeredgewidth=0.9, markerfacecolor="white", linestyle="", zorder=4)


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    with atomic_write(path) as handle:  # a reader never sees half a PNG
        fig.savefig(handle, dpi=120, format="png")


def log_figures_to_tensorboard(figures: dict[str, Any], logdir: str | os.PathLike[str], kind: str = "sweep") -> None:
    """Log each matplotlib figure as a TensorBoard image (IMAGES tab) under its tag.

    One event file per ``kind`` (``sweep`` or ``curves``) in ``logdir``: the file a previous report of
    the same kind wrote there (and any event file of neither kind) is removed once the new one is
    written, so reruns replace the report's images instead of piling up event files.
    """
    from torch.utils.tensorboard import SummaryWriter

    suffix = _EVENT_SUFFIXES[kind]
    logdir = Path(logdir)
    stale = [
        p for p in logdir.glob("events.out.tfevents.*")
        if p.name.endswith(suffix) or not p.name.endswith(tuple(_EVENT_SUFFIXES.values()))
    ]  # fmt: skip
    writer = SummaryWriter(log_dir=str(logdir), filename_suffix=suffix)
    try:
        for tag, figure in figures.items():
            writer.add_figure(tag, figure, global_step=0, close=False)
    finally:
        writer.close()
    for path in stale:
        path.unlink(missing_ok=True)


def _run_label(run: Path, runs: Sequence[Path]) -> str:
    common = os.path.commonpath([str(r) for r in runs]) if len(runs) > 1 else str(run.parent)
    label = os.path.relpath(run, common)
    return run.name if label == "." else label


def plot_learning_curves(runs: Sequence[Path], path: str | os.PathLike[str]) -> Any:
    """Training loss and test error against epoch, one line per run; dotted lines at period ends.

    Test error is ``val/err`` per epoch (the evaluation set: the test set unless the run held out a
    validation split) and ``test/err`` at the end; period ends are the epochs of ``anytime/err``. The
    legend (one entry per run) sits below the two plots, clear of the curves.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogFormatter

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2))
    handles = []
    restarts = False
    for run in runs:
        scalars = read_scalars(run)
        epochs = epoch_of_step(scalars)
        label = _run_label(run, runs)
        (line,) = ax_loss.plot(*_by_epoch(scalars.get("train/loss", []), epochs), label=label)
        x, y = _by_epoch(scalars.get("val/err", []), epochs)
        ax_err.plot(x, [100 * v for v in y], color=line.get_color(), label=label)
        handles.append(line)
        for epoch, _ in scalars.get("anytime/err", []):
            restarts = True
            for ax in (ax_loss, ax_err):
                ax.axvline(epoch, color=line.get_color(), linestyle=":", linewidth=0.8)
    if restarts:
        handles.append(Line2D([], [], color="gray", linestyle=":", linewidth=0.8, label="end of a period (restart)"))
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    for axis in (ax_loss.yaxis.set_major_formatter, ax_loss.yaxis.set_minor_formatter):
        axis(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))  # 2.25, not 2.25 x 10^0
    ax_err.set(xlabel="epoch", ylabel="test error (%)", title="test error (dotted: restarts)")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
    ncol = min(len(handles), 4) or 1
    legend_rows = math.ceil(len(handles) / ncol)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, min(0.5, (0.15 + 0.22 * legend_rows) / 4.2), 1, 1))
    _save(fig, path)
    return fig


def _by_epoch(points: Iterable[tuple[int, float]], epochs: dict[int, int]) -> tuple[list[int], list[float]]:
    pairs = sorted((epochs[step], value) for step, value in points if step in epochs)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_anytime_curves(runs: Sequence[Path], path: str | os.PathLike[str]) -> Any | None:
    """Error at the end of each warm-restart period (``anytime/err``) against epoch, one line per run.

    The log x-axis has a labelled tick at every period end (the epochs of the points). Returns None
    (and writes nothing) when no run has anytime points.
    """
    series = {run: read_scalars(run).get("anytime/err", []) for run in runs}
    if not any(series.values()):
        return None
    plt = _pyplot()
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for run, points in series.items():
        if points:
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=_run_label(run, runs))
    ax.set(xlabel="epoch (end of period)", ylabel="test error (%)", title="anytime performance", xscale="log")
    ends = sorted({int(p[0]) for points in series.values() for p in points})
    ax.xaxis.set_major_locator(FixedLocator(ends))
    ax.set_xticklabels([str(e) for e in ends], rotation=45 if len(ends) > 8 else 0)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(ends) == 1:
        ax.set_xlim(ends[0] / 1.5, ends[0] * 1.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return fig


# -- the command -------------------------------------------------------------------------------
def write_sweep_report(
    sweeps: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    metric: str = "final_test_err",
    top: int = 10,
    lr_key: str | None = None,
    decay_key: str | None = None,
    *,
    coupled: Iterable[str] = (),
    decoupled: Iterable[str] = (),
    basin_points: float = BASIN_POINTS,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[tuple[Heatmap, Coupling]]:
    """Heatmaps of one or more sweeps into ``out``: heatmap.png, coupling.csv, optima.csv, TensorBoard image.

    coupling.csv has one row per panel, columns :data:`COUPLING_COLUMNS`: ``best`` (metric units),
    ``headroom`` and ``basin_margin`` in display units (percentage points for error rates; ``headroom``
    empty without a decay-0 column), ``basin_cells`` the number of cells in the basin, ``verdict`` as
    printed. optima.csv: log2 lambda* of every lr row of every panel, ``edge`` 1 where it is an argmin.
    """
    coupled, decoupled = tuple(coupled), tuple(decoupled)
    heatmaps: list[Heatmap] = []
    for sweep in sweeps:
        heatmaps.extend(heatmaps_from_table(read_results(sweep), metric, lr_key, decay_key))
    out = Path(out)
    results = [(h, h.coupling(top, coupled, decoupled, resamples)) for h in heatmaps]
    figure = plot_heatmaps(heatmaps, out / HEATMAP_PNG, top, basin_points=basin_points,
                           stats=[s for _, s in results])
    with atomic_write(out / COUPLING_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COUPLING_COLUMNS)
        for heatmap, stats in results:
            writer.writerow([
                heatmap.title, metric, _number(stats.slope), _number(stats.correlation), stats.rows, stats.top_k,
                *_best_cell(heatmap), _number(stats.slope_lo), _number(stats.slope_hi), stats.seeds,
                stats.min_seeds, stats.resamples, _number(stats.argmin_slope), stats.edge_rows,
                _number(heatmap.headroom(), empty=True), _number(heatmap.basin_margin(basin_points) * heatmap.scale),
                int(heatmap.basin(basin_points).sum()), stats.decay_type, stats.verdict,
            ])  # fmt: skip
    with atomic_write(out / OPTIMA_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(OPTIMA_COLUMNS)
        for heatmap, stats in results:
            for optimum in stats.optima:
                writer.writerow([heatmap.title, repr(optimum.lr), f"{math.log2(optimum.lr):.4f}",
                                 _number(optimum.log2_decay, empty=True), int(optimum.edge)])
    log_figures_to_tensorboard({f"sweep/heatmap/{metric}": figure}, out / TENSORBOARD_DIR, kind="sweep")
    _pyplot().close(figure)
    return results


def _number(value: float, empty: bool = False) -> str:
    return "" if empty and not math.isfinite(value) else f"{value:.4f}"


def _best_cell(heatmap: Heatmap) -> tuple[str, str, str]:
    best = heatmap.best_index()
    if best is None:
        return "", "", ""
    i, j = best
    return f"{heatmap.values[i, j]:.4f}", repr(heatmap.lrs[i]), repr(heatmap.decays[j])


def write_curves_report(runs: Sequence[Path], out: str | os.PathLike[str]) -> list[Path]:
    """Learning curves (and anytime curves where present) of ``runs`` into ``out``; the PNGs written."""
    out = Path(out)
    written = [out / LEARNING_CURVES_PNG]
    figures = {"runs/learning_curves": plot_learning_curves(runs, written[0])}
    anytime = plot_anytime_curves(runs, out / ANYTIME_PNG)
    if anytime is not None:
        written.append(out / ANYTIME_PNG)
        figures["runs/anytime"] = anytime
    log_figures_to_tensorboard(figures, out / TENSORBOARD_DIR, kind="curves")
    for figure in figures.values():
        _pyplot().close(figure)
    return written
