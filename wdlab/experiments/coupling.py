"""How the best weight decay moves with the learning rate in a heatmap, how sure we are of it, and the verdict.

numpy only (scipy for the t quantile): no Lightning, no torch, no matplotlib. The numbers of one
panel, ``values[i, j]`` at ``lrs[i]`` x ``decays[j]`` (lower is better: an error rate, or a loss),
with ``seed_values[i, j, s]`` the value of seed ``s`` (the same seed index means the same seed in every
cell of the panel: shared initialization and data order):

* **Row optimum** ``log2 lambda*(alpha)`` (:func:`~wdlab.experiments.row_optima.row_optima`): per lr
  row, the vertex of the parabola in log2(decay) through the row's best cell and its two neighbours.
  Where the best cell is at the edge of the decay grid, or next to a failed cell, there is no parabola:
  the optimum is the argmin and the row is flagged ``edge``. The decay-0 column is not on the log axis and
  never enters the fit.
* **Rows that enter the slope** (:func:`~wdlab.experiments.row_optima.row_statuses`, rules fixed before
  the data, :class:`~wdlab.experiments.rules.Rules`):
  a row is *healthy* when its decay-0 cell trained (mean final training loss at most
  ``health_loss_ratio`` x the lowest decay-0 training loss of the panel's rows) and its decay-0 seeds
  agree (their spread at most ``health_seed_spread``); without a decay-0 column or a training loss the
  health rule is not applied, and the panel says so. A row optimum is *censored* when the row's best
  cell is at the edge of the decay grid or next to a failed or collapsed cell (a cell at least
  ``collapse`` worse than the row's best: its wall biases the parabola's vertex). Only healthy,
  uncensored rows enter the slope.
* **Slope** ``d log2 lambda* / d log2 alpha``: least squares over those rows. About -1 when decay and
  lr are coupled (L2: only their product matters), about 0 when decoupled.
* **Intervals** (95 %), each named by its kind (:data:`~wdlab.experiments.intervals.INTERVALS`):
  ``whole_seed``: percentile bootstrap that draws whole seeds -- all cells of a drawn seed together --
  and recomputes the row optima and the slope over the same rows (the primary one: the seed is the
  unit of replication); ``per_seed_t``: the slope of each seed on its own, mean +- t(0.975, n-1) x SD
  / sqrt(n); ``per_cell``: the bootstrap that draws each cell's seeds independently (kept to show how
  much treating shared seed noise as independent changes the answer). Inside a resample or a seed, a
  used row whose best cell is at the edge enters at its argmin; ``Rules.resample_reading`` ``drop``
  leaves it out instead, ``reselect`` applies the row rules again (:func:`resampled_slopes`).
* **Verdict** (:func:`classify`), equivalence margins fixed in advance (``margin`` m, default 0.5):
  *coupled* when the interval lies entirely below -m, *decoupled* when it lies inside (-m, +m),
  otherwise *undecided* with the reason; also undecided with fewer than ``min_rows`` usable rows or
  fewer than ``min_seeds`` seeds. The verdict of the primary interval is the panel's; a verdict that
  differs between the three intervals is *fragile*.
* **Paired difference** (:func:`paired_difference`): the paper's claim is comparative, so the
  decoupled panel's slope minus the L2 panel's of the same family, seed by seed (whole-seed bootstrap
  with the same seeds drawn for both panels, and per-seed differences with a t interval).
* **Basin** (:func:`~wdlab.experiments.heatmaps.basin_mask`): the cells within a margin of the best
  cell; :func:`~wdlab.experiments.heatmaps.basin_outline` draws it.

The pieces live in their own modules: the rules in :mod:`wdlab.experiments.rules`, row optima and
which rows enter in :mod:`wdlab.experiments.row_optima`, the intervals in
:mod:`wdlab.experiments.intervals`, the basin in :mod:`wdlab.experiments.heatmaps`; this module puts
them together (:func:`coupling`), gives the verdicts (:func:`classify`) and pairs panels
(:func:`paired_difference`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wdlab.experiments.intervals import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    INTERVALS,
    PRIMARY_INTERVAL,
    Interval,
    RowKeeper,
    per_cell_bootstrap_slopes,
    per_seed_slopes,
    percentile_interval,
    seeds_present,
    t_interval,
    whole_seed_bootstrap_slopes,
)
from wdlab.experiments.row_optima import (
    RowStatus,
    censoring,
    healthy_rows,
    least_squares_slope,
    log2_positive,
    row_optima,
    row_statuses,
)
from wdlab.experiments.rules import DEFAULT_RULES, Rules

__all__ = [
    "Coupling",
    "PairedDifference",
    "PanelSeeds",
    "classify",
    "coupling",
    "expected_verdict",
    "paired_difference",
]


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
    the ``top_k`` best cells with decay > 0. ``intervals``: one
    :class:`~wdlab.experiments.intervals.Interval` per kind in :data:`~wdlab.experiments.intervals.INTERVALS`.
    ``verdicts``: the verdict of each interval ("" for a metric that is not an error rate); ``verdict``: the
    primary one's, or why the panel cannot be judged; ``fragile``: the
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
    rules: Rules = DEFAULT_RULES

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


@dataclass(frozen=True)
class PanelSeeds:
    """One panel's per-seed numbers, what its intervals resample (:func:`resampled_slopes`).

    ``lrs`` every row, ``seed_values[i, j, s]`` (NaN: no value), ``used``: the rows chosen on all seeds;
    for ``Rules.resample_reading == "reselect"`` also ``health`` (each row's health on all seeds, None: the
    rule does not apply) and ``seed_train_loss[i, j, s]`` (each seed's final training loss).
    """

    title: str
    lrs: Sequence[float]
    decays: Sequence[float]
    seed_values: np.ndarray
    seed_ids: Sequence[int]
    used: np.ndarray
    health: np.ndarray | None = None
    seed_train_loss: np.ndarray | None = None

    @classmethod
    def from_statuses(
        cls,
        title: str,
        lrs: Sequence[float],
        decays: Sequence[float],
        seed_values: np.ndarray,
        seed_ids: Sequence[int],
        statuses: Sequence[RowStatus],
        seed_train_loss: np.ndarray | None = None,
    ) -> PanelSeeds:
        """The panel with its used rows and health taken from its row statuses (health None where the rule
        was not applied)."""
        health = [s.healthy for s in statuses]
        return cls(title, lrs, decays, seed_values, seed_ids, np.array([s.used for s in statuses], dtype=bool),
                   None if None in health else np.array(health, dtype=bool), seed_train_loss)

    def with_seeds(self, ids: Sequence[int]) -> PanelSeeds:
        """The same panel restricted to the seeds ``ids`` (in that order)."""
        index = [list(self.seed_ids).index(s) for s in ids]
        loss = None if self.seed_train_loss is None else np.asarray(self.seed_train_loss)[..., index]
        return dataclasses.replace(self, seed_values=np.asarray(self.seed_values)[..., index], seed_ids=tuple(ids),
                                   seed_train_loss=loss)


def _row_keeper(panel: PanelSeeds, rows: np.ndarray, rules: Rules) -> RowKeeper | None:
    """Which of ``rows`` enter a resample's slope, by ``rules.resample_reading`` (None: all of them)."""
    if rules.resample_reading == "argmin":
        return None
    _, log_decays = log2_positive(panel.decays)
    if rules.resample_reading == "drop":
        return lambda table, draws: censoring(log_decays, table, rules.collapse) == 0
    zero = np.flatnonzero(np.asarray(panel.decays, dtype=np.float64) == 0)
    health = None if panel.health is None else np.asarray(panel.health, dtype=bool)[rows]
    if health is not None and panel.seed_train_loss is None:
        raise ValueError("the reselect reading needs each seed's training loss (seed_train_loss) for the health rule")

    def keep(table: np.ndarray, draws: np.ndarray | None) -> np.ndarray:
        kept = censoring(log_decays, table, rules.collapse) == 0
        if health is None:
            return kept
        if draws is None:  # a single seed or a per-cell resample: the health of all seeds
            return kept & health
        loss = np.asarray(panel.seed_train_loss, dtype=np.float64)[rows, zero[0]][:, draws]  # (rows, b, seeds)
        values = np.asarray(panel.seed_values, dtype=np.float64)[rows, zero[0]][:, draws]
        return kept & healthy_rows(np.moveaxis(loss, 0, 1), np.moveaxis(values, 0, 1), rules)

    return keep


def resampled_slopes(
    panel: PanelSeeds,
    rules: Rules,
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
    kinds: Sequence[str] = INTERVALS,
) -> dict[str, np.ndarray]:
    """The slopes each kind of interval rests on, by ``rules.resample_reading``: whole-seed resamples, the
    seeds one by one, per-cell resamples (:data:`~wdlab.experiments.intervals.INTERVALS`).

    ``argmin`` and ``drop`` resample the used rows; ``reselect`` every row, and lets the rules choose again.
    """
    rows = np.asarray(panel.used, dtype=bool)
    if rules.resample_reading == "reselect":
        rows = np.ones(len(panel.lrs), dtype=bool)
    lrs = [lr for lr, r in zip(panel.lrs, rows, strict=True) if r]
    table = np.asarray(panel.seed_values, dtype=np.float64)[rows]
    keep = _row_keeper(panel, rows, rules)
    compute = {
        "whole_seed": lambda: whole_seed_bootstrap_slopes(lrs, panel.decays, table, resamples, rng_seed, keep=keep),
        "per_seed_t": lambda: per_seed_slopes(lrs, panel.decays, table, keep=keep),
        "per_cell": lambda: per_cell_bootstrap_slopes(lrs, panel.decays, table, resamples, rng_seed, keep=keep),
    }
    return {kind: compute[kind]() for kind in kinds}


def _interval(kind: str, samples: np.ndarray, n: int, rules: Rules) -> Interval:
    """The interval of ``kind`` from its slopes; under ``drop`` and ``reselect`` over the resamples with a slope."""
    if kind == "per_seed_t":
        return t_interval(kind, samples)
    if rules.resample_reading == "argmin":
        return percentile_interval(kind, samples, n)
    finite = samples[np.isfinite(samples)]
    if not finite.size:
        return Interval(kind, n=n, note="no resample kept two rows")
    interval = percentile_interval(kind, finite, n)
    lost = samples.size - finite.size
    return dataclasses.replace(interval, note=f"{lost} of {samples.size} resamples kept fewer than two rows") if lost \
        else interval


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
    seed_train_loss: np.ndarray | None = None,
    rules: Rules = DEFAULT_RULES,
    judge: bool = True,
) -> Coupling:
    """Coupling numbers of a heatmap ``values[i, j]`` (lower is better) at ``lrs[i]`` x ``decays[j]``.

    slope = cov(x, y) / var(x) over the used rows (:func:`~wdlab.experiments.row_optima.row_statuses`),
    x = log2(lr_i), y = log2 lambda*_i; the intervals from ``seed_values[i, j, s]`` (seed s of cell (i, j); the
    seed index is the
    same seed in every cell); ``train_loss[i, j]``: the cells' mean final training loss, for the health
    rule (``seed_train_loss[i, j, s]``: each seed's, which the ``reselect`` reading needs). ``judge``: give
    verdicts (False for a metric that is not an error rate: the numbers only).
    NaN values (failed cells) are ignored; a number that is undefined is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(lrs), len(decays)):
        raise ValueError(f"values have shape {values.shape}, expected ({len(lrs)}, {len(decays)})")
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    positive, log_decays = log2_positive(decays)
    usable = values[:, positive]
    statuses = tuple(row_statuses(lrs, decays, values, seed_values, train_loss, rules))
    used = np.array([s.used for s in statuses], dtype=bool)
    slope = least_squares_slope(log_lr[used], np.array([s.log2_decay for s in statuses])[used])
    argmins = [log_decays[int(np.nanargmin(usable[i]))] for i in np.flatnonzero(used)]
    argmin_slope = least_squares_slope(log_lr[used], np.array(argmins))

    cells = [(usable[i, j], log_lr[i], log_decays[j]) for i, j in np.ndindex(usable.shape)]
    cells = sorted((c for c in cells if not math.isnan(c[0])), key=lambda c: c[0])[:top_k]
    correlation = _correlation(np.array([c[1] for c in cells]), np.array([c[2] for c in cells]))

    intervals: dict[str, Interval] = {kind: Interval(kind, note="no seed values") for kind in INTERVALS}
    seeds = min_seeds = 0
    if seed_values is not None:
        seed_values = np.asarray(seed_values, dtype=np.float64)
        # only the cells the statistic uses count: a decay-0 column with more seeds must not lend its count
        judged = seed_values[used][:, positive]
        seeds = seeds_present(judged)
        counts = np.isfinite(judged).sum(axis=-1)
        min_seeds = int(counts[counts > 0].min()) if (counts > 0).any() else 0
        if not math.isfinite(slope):
            intervals = {kind: Interval(kind, n=seeds, note="fewer than two usable lr rows") for kind in INTERVALS}
        elif seeds < 2:
            intervals = {kind: Interval(kind, n=seeds, note="one seed") for kind in INTERVALS}
        else:
            panel = PanelSeeds.from_statuses(
                "", lrs, decays, seed_values, tuple(range(seed_values.shape[-1])), statuses, seed_train_loss
            )
            samples = resampled_slopes(panel, rules, resamples, rng_seed)
            n = {"whole_seed": seeds, "per_seed_t": seeds, "per_cell": min_seeds}
            intervals = {kind: _interval(kind, samples[kind], n[kind], rules) for kind in INTERVALS}
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
    decoupled: PanelSeeds,
    coupled: PanelSeeds,
    rules: Rules = DEFAULT_RULES,
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = BOOTSTRAP_SEED,
) -> PairedDifference:
    """The paired difference of two panels over the seeds both ran; each panel keeps its own used rows, and
    its resamples follow ``rules.resample_reading`` as its own intervals do."""
    common = sorted(set(decoupled.seed_ids) & set(coupled.seed_ids))
    a, b = decoupled.with_seeds(common), coupled.with_seeds(common)
    slope_a, slope_b = (_used_rows_slope(side) for side in (a, b))
    difference = slope_a - slope_b
    intervals: dict[str, Interval]
    if len(common) < 2 or not math.isfinite(difference):
        note = "fewer than two shared seeds" if len(common) < 2 else "a panel has no slope"
        intervals = {kind: Interval(kind, n=len(common), note=note) for kind in ("whole_seed", "per_seed_t")}
    else:
        kinds = ("whole_seed", "per_seed_t")
        # the same rng seed: resample k draws the same seeds in both panels
        samples_a, samples_b = (resampled_slopes(side, rules, resamples, rng_seed, kinds) for side in (a, b))
        intervals = {kind: _interval(kind, samples_a[kind] - samples_b[kind], len(common), rules) for kind in kinds}
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
    return PairedDifference(decoupled.title, coupled.title, difference, len(common), intervals, verdict)


def _used_rows_slope(panel: PanelSeeds) -> float:
    """The slope over the used rows of the cells' means over the panel's seeds."""
    lrs = [lr for lr, u in zip(panel.lrs, panel.used, strict=True) if u]
    means = _nanmean_cells(np.asarray(panel.seed_values, dtype=np.float64)[np.asarray(panel.used, dtype=bool)])
    return least_squares_slope(np.log2(lrs), [o.log2_decay for o in row_optima(lrs, panel.decays, means)])


def _nanmean_cells(seed_values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(seed_values)
    counts = finite.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.where(finite, seed_values, 0.0).sum(axis=-1) / counts, np.nan)
