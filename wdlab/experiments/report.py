"""``wdlab report``'s outputs: the heatmaps with their statistics, and the curves of runs.

* **Heatmaps (Fig. 2).** From sweeps' ``results.csv`` (:mod:`wdlab.experiments.heatmaps`): one panel
  per optimizer, drawn by :mod:`wdlab.experiments.plots`, judged by :mod:`wdlab.experiments.coupling`.
  Written: ``heatmap.png``, ``coupling.csv`` (one row per panel: slope, the three intervals, the rows
  used and censored, the verdicts), ``optima.csv`` (one row per lr row), ``pairs.csv`` (the paired
  difference of each decoupled panel and the L2 panel of its family, seed by seed), and the figure as a
  TensorBoard image.
* **Learning and anytime curves** from the TensorBoard event files of runs.
* **The printout** of a panel (:func:`describe_panel`, :func:`describe_pair`): the same lines for
  ``wdlab sweep`` and ``wdlab report``.

No Lightning here; torch only to write the TensorBoard image.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wdlab._io import atomic_write
from wdlab.experiments.coupling import Coupling, PairedDifference, PanelSeeds, paired_difference
from wdlab.experiments.heatmaps import BASIN_POINTS, Heatmap, heatmaps_from_table
from wdlab.experiments.intervals import BOOTSTRAP_RESAMPLES, INTERVALS, PRIMARY_INTERVAL
from wdlab.experiments.plots import plot_anytime_curves, plot_heatmaps, plot_learning_curves
from wdlab.experiments.results import TENSORBOARD_DIR, read_results
from wdlab.experiments.rules import Rules

__all__ = [
    "ANYTIME_PNG",
    "COUPLING_COLUMNS",
    "COUPLING_CSV",
    "FAMILIES",
    "HEATMAP_PNG",
    "LEARNING_CURVES_PNG",
    "OPTIMA_CSV",
    "PAIRS_COLUMNS",
    "PAIRS_CSV",
    "SweepReport",
    "describe_pair",
    "describe_panel",
    "log_figures_to_tensorboard",
    "write_curves_report",
    "write_sweep_report",
]

HEATMAP_PNG = "heatmap.png"
LEARNING_CURVES_PNG = "learning_curves.png"
ANYTIME_PNG = "anytime.png"
COUPLING_CSV = "coupling.csv"
OPTIMA_CSV = "optima.csv"
PAIRS_CSV = "pairs.csv"
#: The paper's families: each decoupled optimizer and the L2 optimizer it is compared with.
FAMILIES = {"sgdw": "sgd", "adamw": "adam"}
#: coupling.csv: the first nine columns are the original ones, in their original order; ``slope_lo`` and
#: ``slope_hi`` are the primary (whole-seed bootstrap) interval.
COUPLING_COLUMNS = (
    "panel", "metric", "slope", "top_k_correlation", "rows", "top_k", "best", "best_lr", "best_decay",
    "slope_lo", "slope_hi", "seeds", "min_seeds", "resamples", "argmin_slope", "edge_rows",
    "headroom", "basin_margin", "basin_cells", "decay_type", "verdict",
    "interval", "per_seed_t_lo", "per_seed_t_hi", "per_cell_lo", "per_cell_hi",
    "verdict_per_seed_t", "verdict_per_cell", "fragile", "outcome", "margin",
    "rows_used", "rows_censored", "health_rule", "resample_reading",
)  # fmt: skip
OPTIMA_COLUMNS = ("panel", "lr", "log2_lr", "log2_decay_star", "edge", "healthy", "censored", "used")
PAIRS_COLUMNS = (
    "decoupled", "coupled", "metric", "difference", "seeds", "whole_seed_lo", "whole_seed_hi",
    "per_seed_t_lo", "per_seed_t_hi", "margin", "verdict", "resample_reading",
)  # fmt: skip
#: What each non-default ``Rules.resample_reading`` does, in the printed panel.
READING_NOTES = {
    "drop": "a row whose optimum a resample censors leaves that resample's slope",
    "reselect": "the health and censoring rules applied again in every resample",
}
#: Suffix of each writer's TensorBoard event files: a rerun replaces the files of its own kind.
_EVENT_SUFFIXES = {"sweep": ".sweep", "curves": ".curves"}


@dataclass(frozen=True)
class SweepReport:
    """What :func:`write_sweep_report` computed: the panels with their statistics, and the pairs."""

    panels: list[tuple[Heatmap, Coupling]]
    pairs: list[PairedDifference]

    def __iter__(self) -> Any:
        return iter(self.panels)


def _number(value: float, empty: bool = False) -> str:
    return "" if empty and not math.isfinite(value) else f"{value:.4f}"


def _best_cell(heatmap: Heatmap) -> tuple[str, str, str]:
    best = heatmap.best_index()
    if best is None:
        return "", "", ""
    i, j = best
    return f"{heatmap.values[i, j]:.4f}", repr(heatmap.lrs[i]), repr(heatmap.decays[j])


def _log2(lr: float) -> str:
    return f"{math.log2(lr):g}"


def _pairs(
    panels: Sequence[tuple[Heatmap, Coupling]], families: Mapping[str, str], resamples: int, rules: Rules
) -> list[PairedDifference]:
    """Each decoupled panel against the L2 panel of its family with the same other grid values."""
    by_key = {(h.optimizer, h.title.removeprefix(h.optimizer)): (h, s) for h, s in panels}
    pairs = []
    for (optimizer, rest), (heatmap, stats) in by_key.items():
        partner = by_key.get((families.get(optimizer, ""), rest))
        if partner is None or heatmap.seed_values is None or partner[0].seed_values is None:
            continue
        pairs.append(paired_difference(_pair_side(heatmap, stats), _pair_side(*partner), rules, resamples))
    return pairs


def _pair_side(heatmap: Heatmap, stats: Coupling) -> PanelSeeds:
    assert heatmap.seed_values is not None
    return PanelSeeds.from_statuses(heatmap.title, heatmap.lrs, heatmap.decays, heatmap.seed_values,
                                    heatmap.seed_ids, stats.statuses, heatmap.seed_train_loss)


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
    rules: Rules | None = None,
    families: Mapping[str, str] | None = None,
) -> SweepReport:
    """Heatmaps of one or more sweeps into ``out``: heatmap.png, coupling.csv, optima.csv, pairs.csv and
    the figure as a TensorBoard image.

    coupling.csv has one row per panel, columns :data:`COUPLING_COLUMNS`: ``best`` (metric units),
    ``headroom`` and ``basin_margin`` in display units (percentage points for error rates; ``headroom``
    empty without a decay-0 column), ``basin_cells`` the number of cells in the basin, ``rows_used``
    the log2 lrs that entered the slope, ``rows_censored`` the others with the reason, the verdicts
    empty for a metric that is not an error rate. optima.csv: every lr row of every panel. pairs.csv:
    :data:`PAIRS_COLUMNS`, one row per family present (:data:`FAMILIES` and ``families``).
    """
    rules = rules or Rules()
    heatmaps: list[Heatmap] = []
    for sweep in sweeps:
        heatmaps.extend(heatmaps_from_table(read_results(sweep), metric, lr_key, decay_key, coupled, decoupled))
    out = Path(out)
    panels = [(h, h.coupling(top, rules, resamples)) for h in heatmaps]
    pairs = _pairs(panels, {**FAMILIES, **(families or {})}, resamples, rules) if heatmaps[0].judged else []
    figure = plot_heatmaps(heatmaps, out / HEATMAP_PNG, top, basin_points=basin_points,
                           stats=[s for _, s in panels])
    with atomic_write(out / COUPLING_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COUPLING_COLUMNS)
        for heatmap, stats in panels:
            seed_t, cell = stats.intervals["per_seed_t"], stats.intervals["per_cell"]
            writer.writerow([
                heatmap.title, metric, _number(stats.slope), _number(stats.correlation), stats.rows, stats.top_k,
                *_best_cell(heatmap), _number(stats.slope_lo), _number(stats.slope_hi), stats.seeds,
                stats.min_seeds, stats.resamples, _number(stats.argmin_slope), stats.edge_rows,
                _number(heatmap.headroom(), empty=True), _number(heatmap.basin_margin(basin_points) * heatmap.scale),
                int(heatmap.basin(basin_points).sum()), stats.decay_type, stats.verdict,
                PRIMARY_INTERVAL, _number(seed_t.lo), _number(seed_t.hi), _number(cell.lo), _number(cell.hi),
                stats.verdicts["per_seed_t"], stats.verdicts["per_cell"],
                int(stats.fragile) if heatmap.judged else "", stats.outcome, f"{rules.margin:g}",
                ";".join(_log2(s.lr) for s in stats.statuses if s.used),
                ";".join(f"{_log2(s.lr)}:{s.why_not_used}" for s in stats.statuses if not s.used),
                "applied" if stats.health_applied else "not applied (no decay-0 column or training loss)",
                rules.resample_reading,
            ])  # fmt: skip
    with atomic_write(out / OPTIMA_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(OPTIMA_COLUMNS)
        for heatmap, stats in panels:
            for status in stats.statuses:
                healthy = "" if status.healthy is None else int(status.healthy)
                writer.writerow([heatmap.title, repr(status.lr), f"{math.log2(status.lr):.4f}",
                                 _number(status.log2_decay, empty=True), int(status.edge), healthy,
                                 status.censored, int(status.used)])
    with atomic_write(out / PAIRS_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PAIRS_COLUMNS)
        for pair in pairs:
            whole, seed_t = pair.intervals["whole_seed"], pair.intervals["per_seed_t"]
            writer.writerow([pair.decoupled, pair.coupled, metric, _number(pair.difference), pair.seeds,
                             _number(whole.lo), _number(whole.hi), _number(seed_t.lo), _number(seed_t.hi),
                             f"{rules.margin:g}", pair.verdict, rules.resample_reading])
    log_figures_to_tensorboard({f"sweep/heatmap/{metric}": figure}, out / TENSORBOARD_DIR, kind="sweep")
    return SweepReport(panels, pairs)


def _signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}" if math.isfinite(value) else "n/a"


def describe_panel(heatmap: Heatmap, stats: Coupling, basin_points: float = BASIN_POINTS) -> list[str]:
    """The printed lines of one panel (``wdlab sweep`` and ``wdlab report``)."""
    units = " pp" if heatmap.scale == 100 else ""
    headroom = heatmap.headroom()
    seeds = f"{heatmap.seeds} seed{'s' if heatmap.seeds != 1 else ''}"
    lines = [
        f"{heatmap.title}: coupling slope {_signed(stats.slope)} ({stats.rows} of {len(heatmap.lrs)} lr rows used), "
        f"top-{stats.top_k} correlation {_signed(stats.correlation)}, {seeds}",
    ]
    for kind in INTERVALS:
        interval = stats.intervals[kind]
        shown = (f"[{_signed(interval.lo)}, {_signed(interval.hi)}]" if interval.defined
                 else f"none ({interval.note})")
        if interval.defined and interval.note:
            shown += f" ({interval.note})"
        verdict = f": {stats.verdicts[kind]}" if heatmap.judged and stats.verdicts[kind] else ""
        lines.append(f"  95% {interval.name}: {shown}{verdict}")
    if stats.rules.resample_reading != "argmin":
        lines.append(f"  resamples read by '{stats.rules.resample_reading}' (rows chosen on all seeds; "
                     f"{READING_NOTES[stats.rules.resample_reading]})")
    left_out = [f"2^{_log2(s.lr)} ({s.why_not_used})" for s in stats.statuses if not s.used]
    health = "" if stats.health_applied else " (health rule not applied: no decay-0 column or training loss)"
    lines.append(f"  rows left out: {', '.join(left_out) or 'none'}{health}")
    lines.append(
        f"  argmin slope {_signed(stats.argmin_slope)}, {stats.edge_rows} edge rows, headroom "
        f"{f'{headroom:+.2f}{units}' if math.isfinite(headroom) else 'n/a (no decay-0 column)'}, "
        f"basin {int(heatmap.basin(basin_points).sum())} cells within "
        f"{heatmap.basin_margin(basin_points) * heatmap.scale:.2f}{units} of the best"
    )
    if heatmap.judged:
        fragile = ", fragile: the intervals disagree" if stats.fragile else ""
        expected = f"; {stats.outcome}" if stats.decay_type else ""
        lines.append(f"  verdict ({stats.decay_type or 'decay type unknown'}, margin {stats.rules.margin:g}): "
                     f"{stats.verdict}{fragile}{expected}")
    return lines


def describe_pair(pair: PairedDifference) -> str:
    """The printed line of a paired difference."""
    whole, seed_t = pair.intervals["whole_seed"], pair.intervals["per_seed_t"]
    shown = [f"{iv.name} [{_signed(iv.lo)}, {_signed(iv.hi)}]" if iv.defined else f"{iv.name}: none ({iv.note})"
             for iv in (whole, seed_t)]
    return (f"{pair.decoupled} - {pair.coupled}: slope difference {_signed(pair.difference)} over {pair.seeds} "
            f"shared seeds; 95% {'; '.join(shown)}: {pair.verdict}")


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
    return written
