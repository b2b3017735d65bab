"""The optimum weight decay of each learning-rate row of a heatmap, and which rows enter the slope.

numpy only. A panel's numbers are ``values[i, j]`` at ``lrs[i]`` x ``decays[j]`` (lower is better).

* **Row optimum** ``log2 lambda*(alpha)`` (:func:`row_optima`): per lr row, the vertex of the parabola
  in log2(decay) through the row's best cell and its two neighbours (:func:`parabola_optima`); at the
  edge of the decay grid, or next to a failed cell, the argmin, flagged ``edge``. The decay-0 column is
  not on the log axis and never enters the fit.
* **Rows that enter the slope** (:func:`row_statuses`, by the :class:`~wdlab.experiments.rules.Rules`
  fixed before the data): healthy (the decay-0 cell trained and its seeds agree) and uncensored (the best
  cell neither at the grid edge nor next to a failed or collapsed cell).
* **Slope** ``d log2 lambda* / d log2 alpha`` by least squares (:func:`least_squares_slopes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wdlab.experiments.rules import DEFAULT_RULES, Rules

__all__ = [
    "RowOptimum",
    "RowStatus",
    "least_squares_slope",
    "least_squares_slopes",
    "log2_positive",
    "parabola_optima",
    "row_optima",
    "row_statuses",
]


@dataclass(frozen=True)
class RowOptimum:
    """The optimum decay of one lr row: ``log2_decay`` is log2 lambda* (NaN: no finite cell with decay > 0).

    ``edge``: the row's best cell is at the edge of the grid or next to a failed cell, so there is no
    parabola and ``log2_decay`` is the argmin itself (the true optimum may lie beyond it).
    """

    lr: float
    log2_decay: float
    edge: bool


def log2_positive(decays: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    decays = np.asarray(decays, dtype=np.float64)
    positive = decays > 0
    return positive, np.log2(decays[positive])


def parabola_optima(log_decays: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    positive, log_decays = log2_positive(decays)
    optimum, edge = parabola_optima(log_decays, values[:, positive])
    return [RowOptimum(float(lr), float(o), bool(e)) for lr, o, e in zip(lrs, optimum, edge, strict=True)]


def least_squares_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of ``y[..., k]`` against ``x[k]`` (NaN with fewer than two x or no spread).

    slope = sum_k (x_k - mean x)(y_k - mean y) / sum_k (x_k - mean x)^2
    """
    if len(x) < 2 or np.ptp(x) == 0:
        return np.full(y.shape[:-1], np.nan)
    dx = x - x.mean()
    return (dx * (y - y.mean(axis=-1, keepdims=True))).sum(axis=-1) / (dx * dx).sum()


def least_squares_slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(least_squares_slopes(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)))


# -- which rows enter the slope ------------------------------------------------------------------
@dataclass(frozen=True)
class RowStatus:
    """One lr row of a panel: its optimum and whether it enters the slope.

    ``healthy``: True / False by the health rule, None where the rule cannot be applied (no decay-0
    column or no training loss). ``censored``: why the row's optimum is censored ("" if it is not).
    ``used``: the row enters the slope and every interval.
    """

    lr: float
    log2_decay: float
    edge: bool
    healthy: bool | None
    censored: str
    used: bool

    @property
    def why_not_used(self) -> str:
        if self.used:
            return ""
        if not math.isfinite(self.log2_decay):
            return "no finite cell"
        if self.healthy is False:
            return "unhealthy"
        return self.censored


def row_statuses(
    lrs: Sequence[float],
    decays: Sequence[float],
    values: np.ndarray,
    seed_values: np.ndarray | None = None,
    train_loss: np.ndarray | None = None,
    rules: Rules = DEFAULT_RULES,
) -> list[RowStatus]:
    """The optimum of each row and whether it enters the slope (health and censoring: module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    positive, _ = log2_positive(decays)
    zero = np.flatnonzero(np.asarray(decays, dtype=np.float64) == 0)
    health = _health(values.shape[0], zero, seed_values, train_loss, rules)
    usable = values[:, positive]
    statuses = []
    for i, optimum in enumerate(row_optima(lrs, decays, values)):
        censored = ""
        if math.isfinite(optimum.log2_decay):
            row = usable[i]
            j = int(np.nanargmin(row))
            best = row[j]
            neighbours = [row[k] for k in (j - 1, j + 1) if 0 <= k < len(row)]
            if j in (0, len(row) - 1):
                censored = "optimum at the grid edge"
            elif any(not math.isfinite(v) for v in neighbours):
                censored = "optimum next to a failed cell"
            elif any(v - best >= rules.collapse for v in neighbours):
                censored = "optimum next to a collapsed cell"
        used = math.isfinite(optimum.log2_decay) and health[i] is not False and not censored
        statuses.append(RowStatus(optimum.lr, optimum.log2_decay, optimum.edge, health[i], censored, used))
    return statuses


def _health(
    rows: int, zero: np.ndarray, seed_values: np.ndarray | None, train_loss: np.ndarray | None, rules: Rules
) -> list[bool | None]:
    if not len(zero) or train_loss is None:
        return [None] * rows
    loss = np.asarray(train_loss, dtype=np.float64)[:, zero[0]]
    if not np.isfinite(loss).any():
        return [None] * rows
    lowest = float(np.nanmin(loss))
    health: list[bool | None] = []
    for i in range(rows):
        trained = math.isfinite(loss[i]) and loss[i] <= rules.health_loss_ratio * lowest
        agree = True
        if seed_values is not None:
            seeds = seed_values[i, zero[0]]
            seeds = seeds[np.isfinite(seeds)]
            agree = len(seeds) > 0 and float(np.ptp(seeds)) <= rules.health_seed_spread
        health.append(bool(trained and agree))
    return health
