"""How the best weight decay moves with the learning rate in a heatmap, and how sure we are of it.

numpy only (scipy for the t quantile): no Lightning, no torch, no matplotlib. The numbers of one
panel, ``values[i, j]`` at ``lrs[i]`` x ``decays[j]`` (lower is better: an error rate, or a loss),
with ``seed_values[i, j, s]`` the value of seed ``s`` (the same seed index means the same seed in every
cell of the panel: shared initialization and data order):

* **Row optimum** ``log2 lambda*(alpha)`` (:func:`row_optima`): per lr row, the vertex of the parabola
  in log2(decay) through the row's best cell and its two neighbours. Where the best cell is at the
  edge of the decay grid, or next to a failed cell, there is no parabola: the optimum is the argmin
  and the row is flagged ``edge``. The decay-0 column is not on the log axis and never enters the fit.
* **Rows that enter the slope** (:func:`row_statuses`, rules fixed before the data, :class:`Rules`):
  a row is *healthy* when its decay-0 cell trained (mean final training loss at most
  ``health_loss_ratio`` x the lowest decay-0 training loss of the panel's rows) and its decay-0 seeds
  agree (their spread at most ``health_seed_spread``); without a decay-0 column or a training loss the
  health rule is not applied, and the panel says so. A row optimum is *censored* when the row's best
  cell is at the edge of the decay grid or next to a failed or collapsed cell (a cell at least
  ``collapse`` worse than the row's best: its wall biases the parabola's vertex). Only healthy,
  uncensored rows enter the slope.
* **Slope** ``d log2 lambda* / d log2 alpha``: least squares over those rows. About -1 when decay and
  lr are coupled (L2: only their product matters), about 0 when decoupled.
* **Intervals** (95 %), each named by its kind (:data:`INTERVALS`):
  ``whole_seed``: percentile bootstrap that draws whole seeds -- all cells of a drawn seed together --
  and recomputes the row optima and the slope over the same rows (the primary one: the seed is the
  unit of replication); ``per_seed_t``: the slope of each seed on its own, mean +- t(0.975, n-1) x SD
  / sqrt(n); ``per_cell``: the bootstrap that draws each cell's seeds independently (kept to show how
  much treating shared seed noise as independent changes the answer).
* **Verdict** (:func:`classify`), equivalence margins fixed in advance (``margin`` m, default 0.5):
  *coupled* when the interval lies entirely below -m, *decoupled* when it lies inside (-m, +m),
  otherwise *undecided* with the reason; also undecided with fewer than ``min_rows`` usable rows or
  fewer than ``min_seeds`` seeds. The verdict of the primary interval is the panel's; a verdict that
  differs between the three intervals is *fragile*.
* **Paired difference** (:func:`paired_difference`): the paper's claim is comparative, so the
  decoupled panel's slope minus the L2 panel's of the same family, seed by seed (whole-seed bootstrap
  with the same seeds drawn for both panels, and per-seed differences with a t interval).
* **Basin** (:func:`basin_mask`): the cells within a margin of the best cell; :func:`basin_outline`
  draws it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "INTERVALS",
    "PRIMARY_INTERVAL",
    "Coupling",
    "Interval",
    "PairedDifference",
    "RowOptimum",
    "RowStatus",
    "Rules",
    "basin_mask",
    "basin_outline",
    "classify",
    "coupling",
    "expected_verdict",
    "paired_difference",
    "per_cell_bootstrap_slopes",
    "per_seed_slopes",
    "row_optima",
    "row_statuses",
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


# -- row optima and slopes -------------------------------------------------------------------------
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
    """Least-squares slopes of ``y[..., k]`` against ``x[k]`` (NaN with fewer than two x or no spread).

    slope = sum_k (x_k - mean x)(y_k - mean y) / sum_k (x_k - mean x)^2
    """
    if len(x) < 2 or np.ptp(x) == 0:
        return np.full(y.shape[:-1], np.nan)
    dx = x - x.mean()
    return (dx * (y - y.mean(axis=-1, keepdims=True))).sum(axis=-1) / (dx * dx).sum()


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(_slopes(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)))


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
    rules: Rules = Rules(),
) -> list[RowStatus]:
    """The optimum of each row and whether it enters the slope (health and censoring: module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    positive, _ = _log2_positive(decays)
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


# -- intervals -------------------------------------------------------------------------------------
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


def _percentile_interval(kind: str, samples: np.ndarray, n: int) -> Interval:
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


def _slopes_of_tables(log_lr: np.ndarray, log_decays: np.ndarray, tables: Iterator[np.ndarray]) -> np.ndarray:
    """The slope of each resampled table ``(b, rows, columns)`` in ``tables``, concatenated."""
    slopes = [_slopes(log_lr, _optima(log_decays, table)[0]) for table in tables]
    return np.concatenate(slopes) if slopes else np.zeros(0)


def whole_seed_bootstrap_slopes(
    lrs: Sequence[float],
    decays: Sequence[float],
    seed_values: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """The slope in each of ``resamples`` tables made by drawing whole seeds with replacement.

    ``seed_values[i, j, s]``: seed s's value of cell (i, j) (NaN where that seed's cell failed). A
    resample draws n of the n seeds and averages, in every cell, the values of exactly the drawn seeds:
    the noise a seed shares across cells (its initialization, its data order) moves all cells together,
    as it did in the experiment. The rows are the given ones in every resample.
    """
    seed_values = np.asarray(seed_values, dtype=np.float64)
    positive, log_decays = _log2_positive(decays)
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    table = seed_values[:, positive]
    tables = (_means_over(table, draws) for draws in _seed_draws(table.shape[-1], resamples, rng_seed))
    return _slopes_of_tables(log_lr, log_decays, tables)


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
) -> np.ndarray:
    """The slope in each of ``resamples`` tables where every cell's seeds are drawn on their own.

    Treats the seeds of different cells as independent, which they are not when one seed shares its
    initialization and data order across the cells: kept as the robustness check it was the primary
    statistic of. Rows without any value are left out (the same rows in every resample).
    """
    seed_values = np.asarray(seed_values, dtype=np.float64)
    positive, log_decays = _log2_positive(decays)
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    counts = np.isfinite(seed_values[:, positive]).sum(axis=-1)
    rows = counts.sum(axis=-1) > 0
    tables = _cell_resampled_means(seed_values[rows][:, positive], resamples, rng_seed)
    return _slopes_of_tables(log_lr[rows], log_decays, tables)


def per_seed_slopes(lrs: Sequence[float], decays: Sequence[float], seed_values: np.ndarray) -> np.ndarray:
    """The slope of each seed on its own (its row optima from its own values), NaN where a row has none."""
    seed_values = np.asarray(seed_values, dtype=np.float64)
    positive, log_decays = _log2_positive(decays)
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    tables = np.moveaxis(seed_values[:, positive], -1, 0)  # (seeds, rows, columns)
    optimum, _ = _optima(log_decays, tables)
    return _slopes(log_lr, optimum)


def _seeds_present(seed_values: np.ndarray) -> int:
    """Seeds with at least one finite value in the given cells."""
    if seed_values.size == 0:
        return 0
    return int(np.isfinite(seed_values).reshape(-1, seed_values.shape[-1]).any(axis=0).sum())


# -- verdicts ----------------------------------------------------------------------------------
def classify(lo: float, hi: float, margin: float = Rules.margin) -> str:
    """The verdict of a slope interval [lo, hi] with the equivalence margin m.

    ``coupled``: hi < -m. ``decoupled``: -m < lo and hi < +m. Otherwise ``undecided: ...`` naming why.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undecided: no interval"
    if hi < -margin:
        return "coupled"
    if lo > -margin and hi < margin:
        return "decoupled"
    reasons = []
    if lo <= -margin <= hi:
        reasons.append(f"interval straddles -{margin:g}")
    if lo <= margin <= hi:
        reasons.append(f"interval straddles +{margin:g}")
    if lo > margin:
        reasons.append(f"interval above +{margin:g} (the optimum rises with the lr)")
    return "undecided: " + "; ".join(reasons)


def expected_verdict(decay_type: str) -> str:
    """What the paper predicts for a panel: ``coupled`` for L2, ``decoupled`` for decoupled decay."""
    return {"L2": "coupled", "decoupled": "decoupled"}.get(decay_type, "")


def _outcome(verdict: str, decay_type: str) -> str:
    expected = expected_verdict(decay_type)
    if not expected or not verdict or verdict.startswith("undecided"):
        return "undecided"
    return "as the paper" if verdict == expected else "not as the paper"


@dataclass(frozen=True)
class Coupling:
    """The coupling numbers of one panel (module docstring).

    ``slope``: least squares of log2 lambda* against log2(lr) over the used rows; ``argmin_slope``: the
    same through the per-row argmin; ``correlation``: Pearson correlation of log2 lr and log2 decay over
    the ``top_k`` best cells with decay > 0. ``intervals``: one :class:`Interval` per kind in
    :data:`INTERVALS`. ``verdicts``: the verdict of each interval ("" for a metric that is not an error
    rate); ``verdict``: the primary one's, or why the panel cannot be judged; ``fragile``: the
    verdicts differ. ``outcome``: "as the paper", "not as the paper" or "undecided" for ``decay_type``.
    """

    slope: float
    correlation: float
    rows: int  # lr rows that entered the slope
    top_k: int  # cells that entered the correlation
    seeds: int = 0  # seeds with a value in the used cells
    min_seeds: int = 0  # the fewest seeds of a used cell
    resamples: int = 0
    argmin_slope: float = math.nan
    statuses: tuple[RowStatus, ...] = ()
    intervals: dict[str, Interval] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)
    verdict: str = ""
    decay_type: str = ""
    outcome: str = "undecided"
    health_applied: bool = False
    rules: Rules = Rules()

    @property
    def optima(self) -> tuple[RowStatus, ...]:
        return self.statuses

    @property
    def edge_rows(self) -> int:
        """Rows whose optimum is an argmin at the grid edge (or next to a failed cell)."""
        return sum(s.edge for s in self.statuses if math.isfinite(s.log2_decay))

    @property
    def fragile(self) -> bool:
        """The intervals reach different verdicts (coupled, decoupled, undecided; not different reasons)."""
        return len({v.split(":")[0] for v in self.verdicts.values() if v}) > 1

    @property
    def primary(self) -> Interval:
        return self.intervals.get(PRIMARY_INTERVAL, Interval(PRIMARY_INTERVAL))

    @property
    def slope_lo(self) -> float:
        return self.primary.lo

    @property
    def slope_hi(self) -> float:
        return self.primary.hi


def coupling(
    lrs: Sequence[float],
    decays: Sequence[float],
    values: np.ndarray,
    top_k: int = 10,
    seed_values: np.ndarray | None = None,
    decay_type: str = "",
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
    *,
    train_loss: np.ndarray | None = None,
    rules: Rules = Rules(),
    judge: bool = True,
) -> Coupling:
    """Coupling numbers of a heatmap ``values[i, j]`` (lower is better) at ``lrs[i]`` x ``decays[j]``.

    slope = cov(x, y) / var(x) over the used rows (:func:`row_statuses`), x = log2(lr_i), y = log2
    lambda*_i; the intervals from ``seed_values[i, j, s]`` (seed s of cell (i, j); the seed index is the
    same seed in every cell); ``train_loss[i, j]``: the cells' mean final training loss, for the health
    rule. ``judge``: give verdicts (False for a metric that is not an error rate: the numbers only).
    NaN values (failed cells) are ignored; a number that is undefined is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(lrs), len(decays)):
        raise ValueError(f"values have shape {values.shape}, expected ({len(lrs)}, {len(decays)})")
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    positive, log_decays = _log2_positive(decays)
    usable = values[:, positive]
    statuses = tuple(row_statuses(lrs, decays, values, seed_values, train_loss, rules))
    used = np.array([s.used for s in statuses], dtype=bool)
    slope = _slope(log_lr[used], np.array([s.log2_decay for s in statuses])[used])
    argmins = [log_decays[int(np.nanargmin(usable[i]))] for i in np.flatnonzero(used)]
    argmin_slope = _slope(log_lr[used], np.array(argmins))

    cells = [(usable[i, j], log_lr[i], log_decays[j]) for i, j in np.ndindex(usable.shape)]
    cells = sorted((c for c in cells if not math.isnan(c[0])), key=lambda c: c[0])[:top_k]
    correlation = _correlation(np.array([c[1] for c in cells]), np.array([c[2] for c in cells]))

    intervals: dict[str, Interval] = {kind: Interval(kind, note="no seed values") for kind in INTERVALS}
    seeds = min_seeds = 0
    if seed_values is not None:
        seed_values = np.asarray(seed_values, dtype=np.float64)
        # only the cells the statistic uses count: a decay-0 column with more seeds must not lend its count
        judged = seed_values[used][:, positive]
        seeds = _seeds_present(judged)
        counts = np.isfinite(judged).sum(axis=-1)
        min_seeds = int(counts[counts > 0].min()) if (counts > 0).any() else 0
        lr_used = [lr for lr, u in zip(lrs, used, strict=True) if u]
        positive_decays = [d for d, p in zip(decays, positive, strict=True) if p]
        if not math.isfinite(slope):
            intervals = {kind: Interval(kind, n=seeds, note="fewer than two usable lr rows") for kind in INTERVALS}
        elif seeds < 2:
            intervals = {kind: Interval(kind, n=seeds, note="one seed") for kind in INTERVALS}
        else:
            intervals = {
                "whole_seed": _percentile_interval(
                    "whole_seed",
                    whole_seed_bootstrap_slopes(lr_used, positive_decays, judged, resamples, rng_seed),
                    seeds,
                ),
                "per_seed_t": t_interval("per_seed_t", per_seed_slopes(lr_used, positive_decays, judged)),
                "per_cell": _percentile_interval(
                    "per_cell", per_cell_bootstrap_slopes(lr_used, positive_decays, judged, resamples, rng_seed),
                    min_seeds,
                ),
            }
    verdicts = {kind: "" for kind in INTERVALS}
    verdict = ""
    if judge:
        verdicts = {kind: classify(iv.lo, iv.hi, rules.margin) for kind, iv in intervals.items()}
        if int(used.sum()) < rules.min_rows:
            verdict = f"undecided: {int(used.sum())} usable lr rows, fewer than {rules.min_rows}"
        elif seeds < rules.min_seeds:
            verdict = f"undecided: {seeds} seed{'s' if seeds != 1 else ''}, fewer than {rules.min_seeds}"
        elif not intervals[PRIMARY_INTERVAL].defined:
            verdict = f"undecided: no interval ({intervals[PRIMARY_INTERVAL].note})"
        else:
            verdict = verdicts[PRIMARY_INTERVAL]
        if verdict != verdicts[PRIMARY_INTERVAL]:  # the panel cannot be judged: neither can any interval
            verdicts = {kind: verdict for kind in INTERVALS}
    return Coupling(
        slope=slope,
        correlation=correlation,
        rows=int(used.sum()),
        top_k=len(cells),
        seeds=seeds,
        min_seeds=min_seeds,
        resamples=resamples if intervals[PRIMARY_INTERVAL].defined else 0,
        argmin_slope=argmin_slope,
        statuses=statuses,
        intervals=intervals,
        verdicts=verdicts,
        verdict=verdict,
        decay_type=decay_type,
        outcome=_outcome(verdict, decay_type) if judge else "",
        health_applied=any(s.healthy is not None for s in statuses),
        rules=rules,
    )


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


# -- the paired difference of two panels ---------------------------------------------------------
@dataclass(frozen=True)
class PairedDifference:
    """Slope of the decoupled panel minus the slope of the L2 panel of the same family, seed by seed.

    ``seeds``: the seeds both panels have; ``intervals``: ``whole_seed`` (the same seeds drawn for both
    panels) and ``per_seed_t`` (per-seed slope differences); ``verdict``: ``differs`` when the primary
    interval lies above +m (the decoupled optimum moves with the lr by at least m octaves per octave
    less than the L2 one), ``same`` inside (-m, +m), otherwise ``undecided: ...``.
    """

    decoupled: str
    coupled: str
    difference: float
    seeds: int
    intervals: dict[str, Interval]
    verdict: str


def paired_difference(
    decoupled: tuple[str, Sequence[float], Sequence[float], np.ndarray, Sequence[int]],
    coupled: tuple[str, Sequence[float], Sequence[float], np.ndarray, Sequence[int]],
    rules: Rules = Rules(),
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
) -> PairedDifference:
    """The paired difference of two panels, each given as (title, used lrs, decays, seed_values, seed ids).

    Only the seeds both panels ran enter; each panel keeps its own used rows.
    """
    (name_a, lrs_a, decays_a, values_a, ids_a), (name_b, lrs_b, decays_b, values_b, ids_b) = decoupled, coupled
    common = sorted(set(ids_a) & set(ids_b))
    a = np.asarray(values_a, dtype=np.float64)[..., [list(ids_a).index(s) for s in common]]
    b = np.asarray(values_b, dtype=np.float64)[..., [list(ids_b).index(s) for s in common]]
    mean_a, mean_b = (_nanmean_cells(v) for v in (a, b))
    slope_a = _slope(np.log2(lrs_a), [o.log2_decay for o in row_optima(lrs_a, decays_a, mean_a)])
    slope_b = _slope(np.log2(lrs_b), [o.log2_decay for o in row_optima(lrs_b, decays_b, mean_b)])
    difference = slope_a - slope_b
    intervals: dict[str, Interval]
    if len(common) < 2 or not math.isfinite(difference):
        note = "fewer than two shared seeds" if len(common) < 2 else "a panel has no slope"
        intervals = {kind: Interval(kind, n=len(common), note=note) for kind in ("whole_seed", "per_seed_t")}
    else:
        boot = (
            whole_seed_bootstrap_slopes(lrs_a, decays_a, a, resamples, rng_seed)
            - whole_seed_bootstrap_slopes(lrs_b, decays_b, b, resamples, rng_seed)
        )  # the same rng seed: resample k draws the same seeds in both panels
        intervals = {
            "whole_seed": _percentile_interval("whole_seed", boot, len(common)),
            "per_seed_t": t_interval(
                "per_seed_t", per_seed_slopes(lrs_a, decays_a, a) - per_seed_slopes(lrs_b, decays_b, b)
            ),
        }
    primary = intervals["whole_seed"]
    if len(common) < rules.min_seeds:
        verdict = f"undecided: {len(common)} shared seeds, fewer than {rules.min_seeds}"
    elif not primary.defined:
        verdict = f"undecided: no interval ({primary.note})"
    elif primary.lo > rules.margin:
        verdict = "differs"
    elif -rules.margin < primary.lo and primary.hi < rules.margin:
        verdict = "same"
    else:
        verdict = f"undecided: interval straddles {'+' if primary.hi >= rules.margin else '-'}{rules.margin:g}"
    return PairedDifference(name_a, name_b, difference, len(common), intervals, verdict)


def _nanmean_cells(seed_values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(seed_values)
    counts = finite.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.where(finite, seed_values, 0.0).sum(axis=-1) / counts, np.nan)


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
