"""95 % intervals of a heatmap's slope, each resampling the seeds its own way.

numpy only (scipy for the t quantile). ``seed_values[i, j, s]`` is seed ``s``'s value of cell (i, j);
the same seed index is the same seed in every cell of a panel (shared initialization and data order).
The kinds (:data:`INTERVALS`, the primary one first): ``whole_seed`` (:func:`whole_seed_bootstrap_slopes`:
all cells of a drawn seed together -- the seed is the unit of replication), ``per_seed_t``
(:func:`per_seed_slopes` with :func:`t_interval`), ``per_cell`` (:func:`per_cell_bootstrap_slopes`: each
cell's seeds drawn on their own, kept to show how much treating shared seed noise as independent changes
the answer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from wdlab.experiments.row_optima import (
    least_squares_slopes,
    least_squares_slopes_over_finite,
    log2_positive,
    parabola_optima,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "INTERVALS",
    "PRIMARY_INTERVAL",
    "Interval",
    "RowKeeper",
    "per_cell_bootstrap_slopes",
    "per_seed_slopes",
    "percentile_interval",
    "seeds_present",
    "t_interval",
    "whole_seed_bootstrap_slopes",
]

#: Bootstrap resamples and the fixed seed of its RNG (a report is reproducible).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: The kinds of interval, the primary one first.
INTERVALS = ("whole_seed", "per_seed_t", "per_cell")
PRIMARY_INTERVAL = INTERVALS[0]
INTERVAL_NAMES = {
    "whole_seed": "whole-seed bootstrap",
    "per_seed_t": "per-seed slopes, t interval",
    "per_cell": "per-cell bootstrap",
}


#: Which rows of each resampled table ``(b, rows, columns)`` enter its slope, given the table and, for a
#: whole-seed resample, its drawn seed indices ``(b, seeds)`` (None for the other kinds): ``(b, rows)``.
RowKeeper = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A 95 % interval of a slope (or of a difference of slopes), named by its ``kind`` (:data:`INTERVALS`).

    ``n``: the seeds it rests on; ``note``: why it is undefined (``lo``/``hi`` NaN).
    """

    kind: str
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0
    note: str = ""

    @property
    def defined(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def name(self) -> str:
        return INTERVAL_NAMES[self.kind]


def percentile_interval(kind: str, samples: np.ndarray, n: int) -> Interval:
    finite = samples[np.isfinite(samples)]
    if finite.size < 0.9 * max(samples.size, 1):  # resamples without an optimum in some row: not trustworthy
        return Interval(kind, n=n, note=f"{samples.size - finite.size} of {samples.size} resamples undefined")
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return Interval(kind, float(lo), float(hi), n)


def t_interval(kind: str, values: Sequence[float]) -> Interval:
    """mean +- t(0.975, n - 1) * SD / sqrt(n) over the finite ``values`` (undefined with fewer than two)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return Interval(kind, n=len(x), note="fewer than two seeds with a slope")
    from scipy.stats import t

    half = float(t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(kind, float(x.mean()) - half, float(x.mean()) + half, len(x))


def _seed_draws(seeds: int, resamples: int, rng_seed: int, chunk: int = 256) -> Iterator[np.ndarray]:
    """Chunks of whole-seed resamples: ``(b, seeds)`` seed indices drawn with replacement."""
    rng = np.random.default_rng(rng_seed)
    for start in range(0, resamples, chunk):
        yield rng.integers(0, seeds, size=(min(chunk, resamples - start), seeds))


def _means_over(seed_values: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``(b, rows, columns)`` cell means over the drawn seeds of each resample (a seed counts as often as drawn)."""
    drawn = seed_values[..., draws]  # (rows, columns, b, seeds)
    finite = np.isfinite(drawn)
    counts = finite.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(finite, drawn, 0.0).sum(axis=-1) / counts
    return np.moveaxis(np.where(counts > 0, means, np.nan), -1, 0)


def _slopes_of_tables(
    log_lr: np.ndarray,
    log_decays: np.ndarray,
    tables: Iterator[tuple[np.ndarray, np.ndarray | None]],
    keep: RowKeeper | None = None,
) -> np.ndarray:
    """The slope of each resampled table ``(b, rows, columns)`` in ``tables`` (with its draws), concatenated.

    ``keep``: None, every given row enters (its optimum the vertex, or the argmin at the edge); else only the
    rows it keeps in each table, and a table left with fewer than two has no slope (NaN).
    """
    slopes = []
    for table, draws in tables:
        optimum = parabola_optima(log_decays, table)[0]
        if keep is None:
            slopes.append(least_squares_slopes(log_lr, optimum))
        else:
            slopes.append(least_squares_slopes_over_finite(log_lr, np.where(keep(table, draws), optimum, np.nan)))
    return np.concatenate(slopes) if slopes else np.zeros(0)


def whole_seed_bootstrap_slopes(
    lrs: Sequence[float],
    decays: Sequence[float],
    seed_values: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
    *,
    keep: RowKeeper | None = None,
) -> np.ndarray:
    """The slope in each of ``resamples`` tables made by drawing whole seeds with replacement.

    ``seed_values[i, j, s]``: seed s's value of cell (i, j) (NaN where that seed's cell failed). A
    resample draws n of the n seeds and averages, in every cell, the values of exactly the drawn seeds:
    the noise a seed shares across cells (its initialization, its data order) moves all cells together,
    as it did in the experiment. The rows are the given ones in every resample (``keep``: those it keeps).
    """
    seed_values = np.asarray(seed_values, dtype=np.float64)
    positive, log_decays = log2_positive(decays)
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    table = seed_values[:, positive]
    tables = ((_means_over(table, draws), draws) for draws in _seed_draws(table.shape[-1], resamples, rng_seed))
    return _slopes_of_tables(log_lr, log_decays, tables, keep)


def _cell_resampled_means(
    seed_values: np.ndarray, resamples: int, rng_seed: int, chunk: int = 256
) -> Iterator[np.ndarray]:
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


def per_cell_bootstrap_slopes(
    lrs: Sequence[float],
    decays: Sequence[float],
    seed_values: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
    *,
    keep: RowKeeper | None = None,
) -> np.ndarray:
    """The slope in each of ``resamples`` tables where every cell's seeds are drawn on their own.

    Treats the seeds of different cells as independent, which they are not when one seed shares its
    initialization and data order across the cells: kept as the robustness check it was the primary
    statistic of. Rows without any value are left out (the same rows in every resample); with ``keep``,
    every given row is offered to it (an empty row has no optimum and never enters).
    """
    seed_values = np.asarray(seed_values, dtype=np.float64)
    positive, log_decays = log2_positive(decays)
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    counts = np.isfinite(seed_values[:, positive]).sum(axis=-1)
    rows = counts.sum(axis=-1) > 0 if keep is None else np.ones(len(log_lr), dtype=bool)
    tables = ((table, None) for table in _cell_resampled_means(seed_values[rows][:, positive], resamples, rng_seed))
    return _slopes_of_tables(log_lr[rows], log_decays, tables, keep)


def per_seed_slopes(
    lrs: Sequence[float], decays: Sequence[float], seed_values: np.ndarray, *, keep: RowKeeper | None = None
) -> np.ndarray:
    """The slope of each seed on its own (its row optima from its own values), NaN where a row has none
    (``keep``: over the rows it keeps of each seed's table, NaN with fewer than two)."""
    seed_values = np.asarray(seed_values, dtype=np.float64)
    positive, log_decays = log2_positive(decays)
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    tables = np.moveaxis(seed_values[:, positive], -1, 0)  # (seeds, rows, columns)
    return _slopes_of_tables(log_lr, log_decays, iter([(tables, None)]), keep)


def seeds_present(seed_values: np.ndarray) -> int:
    """Seeds with at least one finite value in the given cells."""
    if seed_values.size == 0:
        return 0
    return int(np.isfinite(seed_values).reshape(-1, seed_values.shape[-1]).any(axis=0).sum())
