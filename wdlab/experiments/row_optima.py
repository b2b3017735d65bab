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
    "CENSORED_REASONS",
    "RowOptimum",
    "RowStatus",
    "censoring",
    "healthy_rows",
    "least_squares_slope",
    "least_squares_slopes",
    "least_squares_slopes_over_finite",
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


def _best_cells(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``table[..., row, column]``: its best column j (the first on ties; a cell without a value never
    wins), the best value and its left and right neighbours' (the best itself at the edge; inf: no value, or an
    empty row)."""
    filled = np.where(np.isnan(table), np.inf, table)
    last = table.shape[-1] - 1
    j = np.argmin(filled, axis=-1)
    best = np.take_along_axis(filled, j[..., None], axis=-1)[..., 0]
    left = np.take_along_axis(filled, np.maximum(j - 1, 0)[..., None], axis=-1)[..., 0]
    right = np.take_along_axis(filled, np.minimum(j + 1, last)[..., None], axis=-1)[..., 0]
    return j, best, left, right


def parabola_optima(log_decays: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row optima of ``table[..., row, column]`` over columns at ``log_decays`` (ascending): (log2 lambda*, edge).

    The vertex of the parabola through the best cell j and its neighbours j-1, j+1 (spacings h0, h2;
    rises d0, d2 >= 0 from the best): x_j + (d0 h2^2 - d2 h0^2) / (2 (d0 h2 + d2 h0)), which lies
    between the midpoints of j and its neighbours. Ties: the first best cell; all three equal: x_j.
    """
    shape = table.shape[:-1]
    if table.shape[-1] == 0:
        return np.full(shape, np.nan), np.zeros(shape, dtype=bool)
    last = table.shape[-1] - 1
    j, best, left, right = _best_cells(table)
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


def least_squares_slopes_over_finite(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`least_squares_slopes` of each ``y[..., :]`` over its finite entries only (NaN with fewer than two).

    slope = sum_k w_k (x_k - m)(y_k - mean_w y) / sum_k w_k (x_k - m)^2, w_k = [y_k finite], m = mean_w x
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.isfinite(y)
    n = w.sum(axis=-1)
    m = np.where(w, x, 0.0).sum(axis=-1, keepdims=True) / np.maximum(n, 1)[..., None]
    dx = np.where(w, x - m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = (dx * np.where(w, y, 0.0)).sum(axis=-1) / (dx * dx).sum(axis=-1)
    return np.where(n >= 2, slopes, np.nan)


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


#: Why a row optimum is censored, by :func:`censoring`'s code (0: it is not).
CENSORED_REASONS = ("", "optimum at the grid edge", "optimum next to a failed cell", "optimum next to a collapsed cell")


def censoring(log_decays: np.ndarray, table: np.ndarray, collapse: float) -> np.ndarray:
    """Why each row optimum of ``table[..., row, column]`` (columns at ``log_decays``) is censored, as a code.

    With j the row's best cell: 1 when j is the first or last column, 2 when a neighbour of j has no value,
    3 when a neighbour is at least ``collapse`` worse than the best (its wall biases the vertex), else 0 (an
    empty row too: it has no optimum at all). Indices into :data:`CENSORED_REASONS`.
    """
    table = np.asarray(table, dtype=np.float64)
    codes = np.zeros(table.shape[:-1], dtype=np.int64)
    if table.shape[-1] == 0:
        return codes
    last = table.shape[-1] - 1
    j, best, left, right = _best_cells(table)
    found = np.isfinite(best)
    at_edge = found & ((j == 0) | (j == last))
    next_to_failed = found & ~at_edge & ~(np.isfinite(left) & np.isfinite(right))
    with np.errstate(invalid="ignore"):
        collapsed = found & ~at_edge & ~next_to_failed & (np.fmax(left, right) - best >= collapse)
    return np.select([at_edge, next_to_failed, collapsed], [1, 2, 3], 0)


def healthy_rows(zero_loss: np.ndarray, zero_values: np.ndarray, rules: Rules = DEFAULT_RULES) -> np.ndarray:
    """The health rule over a set of seeds: ``zero_loss``, ``zero_values`` (..., rows, seeds) are each seed's final
    training loss and metric in the row's decay-0 cell (NaN: none; a seed drawn twice counts twice).

    healthy_i  <=>  mean_s loss[i, s] <= health_loss_ratio x min_k mean_s loss[k, s]  and
    max_s value[i, s] - min_s value[i, s] <= health_seed_spread; a row without a loss or without a value is not
    healthy.
    """
    loss = np.asarray(zero_loss, dtype=np.float64)
    values = np.asarray(zero_values, dtype=np.float64)
    counts = np.isfinite(loss).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, np.where(np.isfinite(loss), loss, 0.0).sum(axis=-1) / counts, np.nan)
        lowest = np.where(np.isfinite(mean), mean, np.inf).min(axis=-1, keepdims=True)
        spread = np.fmax.reduce(values, axis=-1) - np.fmin.reduce(values, axis=-1)
        return (mean <= rules.health_loss_ratio * lowest) & (spread <= rules.health_seed_spread)


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
    positive, log_decays = log2_positive(decays)
    zero = np.flatnonzero(np.asarray(decays, dtype=np.float64) == 0)
    health = _health(values.shape[0], zero, seed_values, train_loss, rules)
    codes = censoring(log_decays, values[:, positive], rules.collapse)
    statuses = []
    for i, optimum in enumerate(row_optima(lrs, decays, values)):
        censored = CENSORED_REASONS[int(codes[i])] if math.isfinite(optimum.log2_decay) else ""
        used = math.isfinite(optimum.log2_decay) and health[i] is not False and not censored
        statuses.append(RowStatus(optimum.lr, optimum.log2_decay, optimum.edge, health[i], censored, used))
    return statuses


def _health(
    rows: int, zero: np.ndarray, seed_values: np.ndarray | None, train_loss: np.ndarray | None, rules: Rules
) -> list[bool | None]:
    """:func:`healthy_rows` on all seeds (the cells' mean training loss), None where it cannot be applied."""
    if not len(zero) or train_loss is None:
        return [None] * rows
    loss = np.asarray(train_loss, dtype=np.float64)[:, zero[0]]
    if not np.isfinite(loss).any():
        return [None] * rows
    # without seed values the spread half of the rule cannot be applied: every row agrees
    spread = np.zeros((rows, 1)) if seed_values is None else np.asarray(seed_values, dtype=np.float64)[:, zero[0]]
    return [bool(h) for h in healthy_rows(loss[:, None], spread, rules)]
