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
  much treating shared seed noise as independent changes the answer).
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
    per_cell_bootstrap_slopes,
    per_seed_slopes,
    percentile_interval,
    seeds_present,
    t_interval,
    whole_seed_bootstrap_slopes,
)
from wdlab.experiments.row_optima import RowStatus, least_squares_slope, log2_positive, row_optima, row_statuses
from wdlab.experiments.rules import DEFAULT_RULES, Rules

__all__ = [
    "Coupling",
    "PairedDifference",
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
    rules: Rules = DEFAULT_RULES,
    judge: bool = True,
) -> Coupling:
    """Coupling numbers of a heatmap ``values[i, j]`` (lower is better) at ``lrs[i]`` x ``decays[j]``.

    slope = cov(x, y) / var(x) over the used rows (:func:`~wdlab.experiments.row_optima.row_statuses`),
    x = log2(lr_i), y = log2 lambda*_i; the intervals from ``seed_values[i, j, s]`` (seed s of cell (i, j); the
    seed index is the
    same seed in every cell); ``train_loss[i, j]``: the cells' mean final training loss, for the health
    rule. ``judge``: give verdicts (False for a metric that is not an error rate: the numbers only).
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
        lr_used = [lr for lr, u in zip(lrs, used, strict=True) if u]
        positive_decays = [d for d, p in zip(decays, positive, strict=True) if p]
        if not math.isfinite(slope):
            intervals = {kind: Interval(kind, n=seeds, note="fewer than two usable lr rows") for kind in INTERVALS}
        elif seeds < 2:
            intervals = {kind: Interval(kind, n=seeds, note="one seed") for kind in INTERVALS}
        else:
            intervals = {
                "whole_seed": percentile_interval(
                    "whole_seed",
                    whole_seed_bootstrap_slopes(lr_used, positive_decays, judged, resamples, rng_seed),
                    seeds,
                ),
                "per_seed_t": t_interval("per_seed_t", per_seed_slopes(lr_used, positive_decays, judged)),
                "per_cell": percentile_interval(
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
    rules: Rules = DEFAULT_RULES,
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
    slope_a = least_squares_slope(np.log2(lrs_a), [o.log2_decay for o in row_optima(lrs_a, decays_a, mean_a)])
    slope_b = least_squares_slope(np.log2(lrs_b), [o.log2_decay for o in row_optima(lrs_b, decays_b, mean_b)])
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
            "whole_seed": percentile_interval("whole_seed", boot, len(common)),
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
