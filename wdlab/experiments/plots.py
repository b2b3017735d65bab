"""The report's figures: heatmap panels (the paper's Fig. 2), learning curves and anytime curves.

matplotlib's object API only (:class:`matplotlib.figure.Figure`, constrained layout, legends placed
``outside``): nothing here touches pyplot's global state or the backend of the process that imports
it, so library users keep their own. Figures are saved atomically (a reader never sees half a PNG).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wdlab._io import atomic_write
from wdlab.experiments.coupling import Coupling
from wdlab.experiments.heatmaps import BASIN_POINTS, ERROR_METRICS, Heatmap, basin_outline
from wdlab.experiments.results import epoch_of_step, read_scalars

__all__ = ["plot_anytime_curves", "plot_heatmaps", "plot_learning_curves", "save_figure"]

#: Heatmap panels per figure row: two keep cell numbers legible at page width.
PANELS_PER_ROW = 2
_OPTIMUM_OFFSET = 0.2  # the lambda* markers sit this far below the middle of their row


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> None:
    """Save ``fig`` as a PNG at ``path`` atomically."""
    with atomic_write(path) as handle:
        fig.savefig(handle, dpi=dpi, format="png")


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
    seeds = f"{heatmap.seeds} seed" + ("s" if heatmap.seeds != 1 else "")  # the panel's; the slope's may be fewer
    primary = stats.primary
    interval = f"95% [{_signed(primary.lo)}, {_signed(primary.hi)}]" if primary.defined else "no interval"
    lines = [
        f"{heatmap.title}{kind}, {seeds}, {stats.rows} rows used",
        f"slope d log\u2082\u03bb*/d log\u2082\u03b1 {_signed(stats.slope)}, {interval}",
    ]
    if heatmap.judged:
        fragile = " (fragile)" if stats.fragile else ""
        lines.append(textwrap.fill(stats.verdict + fragile, 56))
    return "\n".join(lines)


def _colour_range(shown: np.ndarray) -> tuple[float, float]:
    """The informative range: from the best cell to the middle of the cells' spread above it.

    Collapsed cells (far worse than the rest) would otherwise squeeze the differences that matter
    into one colour; they take the top colour and keep their printed number.
    """
    finite = shown[np.isfinite(shown)]
    if not finite.size:
        return 0.0, 1.0
    low = float(finite.min())
    high = float(np.quantile(finite, 0.6))
    return low, max(high, low + 1e-9)


def plot_heatmaps(
    heatmaps: Sequence[Heatmap],
    path: str | os.PathLike[str],
    top: int = 10,
    basin_points: float = BASIN_POINTS,
    stats: Sequence[Coupling] | None = None,
) -> Any:
    """Draw the panels as in the paper's Fig. 2 (two per row) and save a PNG; returns the figure.

    x: weight decay, y: learning rate, both on log2 axes (one column/row per grid value, decay 0 as
    the leftmost column, set off by a white line); colour and number in each cell: the metric (error in
    percent), the colour scale on the informative range (the worst cells share its top colour); red
    outline: the basin; red circle: the best cell; white diamonds: log2 lambda* per lr row, just below
    the row's middle (a cross: at the grid edge, the argmin); a row that does not enter the slope has
    its label struck through with the reason ("edge", "collapse", "failed", "unhealthy") beside it.
    Each panel is titled with its slope, the primary interval and, for error metrics, the verdict.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    if stats is None:
        stats = [h.coupling(top) for h in heatmaps]
    n = max(len(heatmaps), 1)
    per_row = min(PANELS_PER_ROW, n)
    grid_rows = math.ceil(n / per_row)
    columns = max((len(h.decays) for h in heatmaps), default=1)
    rows = max((len(h.lrs) for h in heatmaps), default=1)
    width, height = 2.6 + 0.72 * columns, 2.3 + 0.5 * rows
    fig = _figure(width * per_row, height * grid_rows + 0.6)
    axes = fig.subplots(grid_rows, per_row, squeeze=False).ravel()
    for ax in axes[len(heatmaps):]:
        ax.set_axis_off()
    for ax, heatmap, panel in zip(axes, heatmaps, stats, strict=False):
        shown = heatmap.values * heatmap.scale
        vmin, vmax = _colour_range(shown)
        image = ax.imshow(
            np.ma.masked_invalid(shown), origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto"
        )
        ax.set_facecolor("#dddddd")  # failed / missing cells
        ax.set_xticks(range(len(heatmap.decays)), [_power_label(d) for d in heatmap.decays], fontsize=9)
        ax.set_yticks(range(len(heatmap.lrs)), [_row_label(v, s) for v, s in zip(heatmap.lrs, panel.statuses,
                                                                                  strict=False)], fontsize=9)
        ax.set_xlabel(f"weight decay ({heatmap.decay_key.split('.')[-1]}, log2)")
        ax.set_ylabel("learning rate (log2)")
        for i, j in np.ndindex(shown.shape):
            if np.isfinite(shown[i, j]) and shown.size <= 160:
                bright = (min(shown[i, j], vmax) - vmin) < 0.5 * (vmax - vmin)  # viridis_r: low values are light
                ax.text(j, i + 0.17, f"{shown[i, j]:.1f}" if heatmap.scale == 100 else f"{shown[i, j]:.2g}",
                        ha="center", va="center", fontsize=9, color="black" if bright else "white")
        zero = [j for j, d in enumerate(heatmap.decays) if d == 0]
        if zero and len(zero) < len(heatmap.decays):
            ax.axvline(zero[-1] + 0.5, color="white", linewidth=3)  # decay 0 is not on the log axis
        outline = basin_outline(heatmap.basin(basin_points))
        if outline:
            ax.add_collection(LineCollection(outline, colors="red", linewidths=2.2, capstyle="projecting"))
        _draw_optima(ax, heatmap, panel)
        best = heatmap.best_index()
        if best is not None:  # a marker, not a patch: round whatever the cells' aspect
            cell = min(width / (len(heatmap.decays) + 3), height / (len(heatmap.lrs) + 3))
            ax.plot(best[1], best[0], marker="o", markersize=0.8 * cell * 72, markerfacecolor="none",
                    markeredgecolor="red", markeredgewidth=1.6, linestyle="", zorder=5)
        ax.set_xlim(-0.5, len(heatmap.decays) - 0.5)
        ax.set_ylim(-0.5, len(heatmap.lrs) - 0.5)
        ax.set_title(_panel_title(heatmap, panel), fontsize=10)
        label = {"final_test_err": "test error (%)", "best_test_err": "best test error (%)",
                 "final_val_err": "validation error (%)"}.get(
            heatmap.metric, heatmap.metric
        )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label, extend="max")
    margin = f"{basin_points:g} point" + ("s" if basin_points != 1 else "")
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
    fig.legend(handles=handles, loc="outside lower center", ncol=2 if per_row > 1 else 1, fontsize=9,
               frameon=False)
    save_figure(fig, path)
    return fig


_REASON_TAGS = {
    "optimum at the grid edge": "edge",
    "optimum next to a failed cell": "failed",
    "optimum next to a collapsed cell": "collapse",
    "unhealthy": "unhealthy",
    "no finite cell": "empty",
}


def _row_label(lr: float, status: Any) -> str:
    label = _power_label(lr)
    if status is None or status.used:
        return label
    return f"({_REASON_TAGS.get(status.why_not_used, 'not used')}) {label}"


def _draw_optima(ax: Any, heatmap: Heatmap, stats: Coupling) -> None:
    """log2 lambda* per row at its place on the decay axis (interpolated between the columns), just below
    the row's middle so that it does not cover the cells' numbers; rows left out of the slope hollow."""
    positive = [j for j, d in enumerate(heatmap.decays) if d > 0]
    if not positive:
        return
    log_decays = np.log2([heatmap.decays[j] for j in positive])
    points = [
        (float(np.interp(s.log2_decay, log_decays, positive)), i, s.edge, s.used)
        for i, s in enumerate(stats.statuses)
        if math.isfinite(s.log2_decay)
    ]
    if not points:
        return
    y = [p[1] - _OPTIMUM_OFFSET for p in points]
    ax.plot([p[0] for p in points], y, color="white", linewidth=1.2, alpha=0.9, zorder=3)
    for (x, _, edge, used), row in zip(points, y, strict=True):
        ax.plot(x, row, marker="X" if edge else "D", markersize=7 if edge else 6, markeredgecolor="black",
                markeredgewidth=0.9, markerfacecolor="white" if used else "none", linestyle="", zorder=4)


def _run_label(run: Path, runs: Sequence[Path]) -> str:
    common = os.path.commonpath([str(r) for r in runs]) if len(runs) > 1 else str(run.parent)
    label = os.path.relpath(run, common)
    return run.name if label == "." else label


def plot_learning_curves(runs: Sequence[Path], path: str | os.PathLike[str]) -> Any:
    """Training loss and test error against epoch, one line per run; dotted lines at period ends.

    Test error is ``val/err`` per epoch (the evaluation set: the test set unless the run held out a
    validation split) and ``test/err`` at the end; period ends are the epochs of ``anytime/err``. The
    legend (one entry per run) sits below the two plots, outside them.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogFormatter

    fig = _figure(11, 4.6)
    ax_loss, ax_err = fig.subplots(1, 2)
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
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4) or 1, fontsize=8,
               frameon=False)
    save_figure(fig, path)
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
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    fig = _figure(6, 4.2)
    ax = fig.subplots()
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
    save_figure(fig, path)
    return fig
