"""``wdlab report``: the paper's figures from sweeps and runs.

* **Heatmaps (Fig. 2).** From a sweep's ``results.csv`` (``wdlab sweep``): test error over learning
  rate x weight decay with log2 axes, the best 10 cells circled, one panel per optimizer, each titled
  with its *coupling* numbers (:func:`coupling`). Written as a PNG and logged to TensorBoard as an image.
* **Learning curves.** From the TensorBoard event files of any set of runs: training loss and test
  error against epoch, one line per run, the ends of the warm-restart periods marked.
* **Anytime curves.** The error at the end of every period (``anytime/err``, logged by the snapshots
  callback) against epoch, one line per run.

::

    wdlab report runs/fig2_sgd runs/fig2_sgdw runs/fig2_adam runs/fig2_adamw --out docs/fig2
    wdlab report runs/quickstart runs/other_run --out reports/curves

Each path is a sweep directory (it holds ``results.csv``: a heatmap panel per optimizer in it) or a
directory of runs (every directory below it with TensorBoard event files is a run: learning and
anytime curves). This module knows nothing of Lightning: it reads CSV and event files
(:mod:`wdlab.experiments.results`). The command is :mod:`wdlab.cli.report`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
ERROR_METRICS = ("final_test_err", "best_test_err")

__all__ = [
    "Coupling",
    "Heatmap",
    "ReportError",
    "coupling",
    "heatmaps_from_table",
    "plot_anytime_curves",
    "plot_heatmaps",
    "plot_learning_curves",
    "write_curves_report",
    "write_sweep_report",
]


class ReportError(ResultsError):
    """A report that cannot be drawn from the given inputs (one line, names the fix)."""


# -- sweep tables and coupling -------------------------------------------------------------------
@dataclass(frozen=True)
class Coupling:
    """How strongly the best weight decay moves with the learning rate in one heatmap.

    ``slope``: least-squares slope of log2(best decay) against log2(lr), the best decay taken per lr
    row (rows where every cell failed or only decay 0 exists are skipped). The paper's claim: about
    -1 when decay and lr are coupled (L2: what matters is their product), about 0 when decoupled.
    ``correlation``: Pearson correlation of log2(lr) and log2(decay) over the ``top_k`` best cells
    (strongly negative for a diagonal basin, near 0 for an axis-aligned one); uses the whole good
    region, so it is less sensitive to noise between neighbouring cells than the per-row argmin.
    Cells with decay 0 have no log2 and take part in neither number.
    """

    slope: float
    correlation: float
    rows: int  # lr rows that entered the slope
    top_k: int  # cells that entered the correlation


def coupling(lrs: Sequence[float], decays: Sequence[float], values: np.ndarray, top_k: int = 10) -> Coupling:
    """Coupling numbers of a heatmap ``values[i, j]`` (lower is better) at ``lrs[i]`` x ``decays[j]``.

    slope = cov(x, y) / var(x) over the rows, x = log2(lr_i), y = log2(decay at argmin_j values[i, j]);
    correlation = cov(x, y) / (std(x) std(y)) over the top_k lowest cells, x = log2 lr, y = log2 decay.
    NaN values (failed cells) are ignored; a number that is undefined (fewer than two rows, or no
    spread along an axis) is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(lrs), len(decays)):
        raise ValueError(f"values have shape {values.shape}, expected ({len(lrs)}, {len(decays)})")
    log_lr = np.log2(np.asarray(lrs, dtype=np.float64))
    positive = np.asarray(decays, dtype=np.float64) > 0
    log_decay = np.full(len(decays), np.nan)
    log_decay[positive] = np.log2(np.asarray(decays, dtype=np.float64)[positive])
    usable = values[:, positive]

    xs, ys = [], []
    for i in range(len(lrs)):
        row = usable[i]
        if np.all(np.isnan(row)):
            continue
        xs.append(log_lr[i])
        ys.append(log_decay[positive][int(np.nanargmin(row))])
    slope = _slope(np.array(xs), np.array(ys))

    cells = [(usable[i, j], log_lr[i], log_decay[positive][j]) for i, j in np.ndindex(usable.shape)]
    cells = sorted((c for c in cells if not math.isnan(c[0])), key=lambda c: c[0])[:top_k]
    correlation = _correlation(np.array([c[1] for c in cells]), np.array([c[2] for c in cells]))
    return Coupling(slope=slope, correlation=correlation, rows=len(xs), top_k=len(cells))


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


@dataclass(frozen=True)
class Heatmap:
    """One panel: ``values[i, j]`` (mean over seeds) at ``lrs[i]`` x ``decays[j]``, both ascending."""

    title: str
    lr_key: str
    decay_key: str
    metric: str
    lrs: tuple[float, ...]
    decays: tuple[float, ...]
    values: np.ndarray
    seeds: int  # the largest number of seeds averaged in one cell

    def coupling(self, top_k: int = 10) -> Coupling:
        return coupling(self.lrs, self.decays, self.values, top_k)


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
        sums = np.zeros((len(lrs), len(decays)))
        counts = np.zeros((len(lrs), len(decays)))
        for row in members:
            if row.get("state") != "complete" or row.get(metric, "") == "":
                continue
            value = float(row[metric])
            if not math.isfinite(value):
                continue
            i, j = lrs.index(float(row[lr_key])), decays.index(float(row[decay_key]))
            sums[i, j] += value
            counts[i, j] += 1
        with np.errstate(invalid="ignore"):
            values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
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
                seeds=int(counts.max()) if counts.size else 0,
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


def plot_heatmaps(heatmaps: Sequence[Heatmap], path: str | os.PathLike[str], top: int = 10) -> Any:
    """Draw the panels side by side as in the paper's Fig. 2 and save a PNG; returns the figure.

    x: weight decay, y: learning rate, both on log2 axes (one column/row per grid value, decay 0 as
    the leftmost column); colour: the metric (error in percent); the ``top`` best cells circled;
    each panel titled with its coupling slope and top-k correlation.
    """
    plt = _pyplot()
    n = len(heatmaps)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), squeeze=False)
    for ax, heatmap in zip(axes[0], heatmaps, strict=True):
        scale = 100.0 if heatmap.metric in ERROR_METRICS else 1.0
        shown = heatmap.values * scale
        finite = shown[np.isfinite(shown)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        image = ax.imshow(
            np.ma.masked_invalid(shown), origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto"
        )
        ax.set_facecolor("#dddddd")  # failed / missing cells
        ax.set_xticks(range(len(heatmap.decays)), [_power_label(d) for d in heatmap.decays], fontsize=7)
        ax.set_yticks(range(len(heatmap.lrs)), [_power_label(v) for v in heatmap.lrs], fontsize=7)
        ax.set_xlabel(f"weight decay ({heatmap.decay_key.split('.')[-1]}, log2)")
        ax.set_ylabel("learning rate (log2)")
        for i, j in np.ndindex(shown.shape):
            if np.isfinite(shown[i, j]) and shown.size <= 144:
                bright = (shown[i, j] - vmin) < 0.5 * (vmax - vmin)  # viridis_r: low values are light
                ax.text(j, i, f"{shown[i, j]:.1f}" if scale == 100 else f"{shown[i, j]:.2g}",
                        ha="center", va="center", fontsize=6, color="black" if bright else "white")
        order = [(shown[i, j], i, j) for i, j in np.ndindex(shown.shape) if np.isfinite(shown[i, j])]
        for rank, (_, i, j) in enumerate(sorted(order)[:top]):
            ax.add_patch(
                plt.Circle((j, i), 0.42, fill=False, edgecolor="red" if rank == 0 else "black", linewidth=1.2)
            )
        stats = heatmap.coupling(top)
        ax.set_title(
            f"{heatmap.title}\nslope {stats.slope:+.2f}, top-{stats.top_k} corr {stats.correlation:+.2f}",
            fontsize=9,
        )
        label = {"final_test_err": "test error (%)", "best_test_err": "best test error (%)"}.get(
            heatmap.metric, heatmap.metric
        )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    fig.tight_layout()
    _save(fig, path)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    with atomic_write(path) as handle:  # a reader never sees half a PNG
        fig.savefig(handle, dpi=120, format="png")


def log_figures_to_tensorboard(figures: dict[str, Any], logdir: str | os.PathLike[str]) -> None:
    """Log each matplotlib figure as a TensorBoard image (IMAGES tab) under its tag."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(logdir))
    try:
        for tag, figure in figures.items():
            writer.add_figure(tag, figure, global_step=0, close=False)
    finally:
        writer.close()


def _run_label(run: Path, runs: Sequence[Path]) -> str:
    common = os.path.commonpath([str(r) for r in runs]) if len(runs) > 1 else str(run.parent)
    label = os.path.relpath(run, common)
    return run.name if label == "." else label


def plot_learning_curves(runs: Sequence[Path], path: str | os.PathLike[str]) -> Any:
    """Training loss and test error against epoch, one line per run; dotted lines at period ends.

    Test error is ``val/err`` per epoch (the evaluation set: the test set unless the run held out a
    validation split) and ``test/err`` at the end; period ends are the epochs of ``anytime/err``.
    """
    plt = _pyplot()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in runs:
        scalars = read_scalars(run)
        epochs = epoch_of_step(scalars)
        label = _run_label(run, runs)
        (line,) = ax_loss.plot(*_by_epoch(scalars.get("train/loss", []), epochs), label=label)
        x, y = _by_epoch(scalars.get("val/err", []), epochs)
        ax_err.plot(x, [100 * v for v in y], color=line.get_color(), label=label)
        for epoch, _ in scalars.get("anytime/err", []):
            for ax in (ax_loss, ax_err):
                ax.axvline(epoch, color=line.get_color(), linestyle=":", linewidth=0.8)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    ax_err.set(xlabel="epoch", ylabel="test error (%)", title="test error (dotted: restarts)")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return fig


def _by_epoch(points: Iterable[tuple[int, float]], epochs: dict[int, int]) -> tuple[list[int], list[float]]:
    pairs = sorted((epochs[step], value) for step, value in points if step in epochs)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_anytime_curves(runs: Sequence[Path], path: str | os.PathLike[str]) -> Any | None:
    """Error at the end of each warm-restart period (``anytime/err``) against epoch, one line per run.

    Returns None (and writes nothing) when no run has anytime points.
    """
    series = {run: read_scalars(run).get("anytime/err", []) for run in runs}
    if not any(series.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for run, points in series.items():
        if points:
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=_run_label(run, runs))
    ax.set(xlabel="epoch (end of period)", ylabel="test error (%)", title="anytime performance", xscale="log")
    ax.grid(alpha=0.3, which="both")
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
) -> list[tuple[Heatmap, Coupling]]:
    """Heatmaps of one or more sweeps into ``out``: heatmap.png, coupling.csv, TensorBoard image."""
    heatmaps: list[Heatmap] = []
    for sweep in sweeps:
        heatmaps.extend(heatmaps_from_table(read_results(sweep), metric, lr_key, decay_key))
    out = Path(out)
    figure = plot_heatmaps(heatmaps, out / HEATMAP_PNG, top)
    results = [(h, h.coupling(top)) for h in heatmaps]
    with atomic_write(out / COUPLING_CSV, "w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["panel", "metric", "slope", "top_k_correlation", "rows", "top_k", "best", "best_lr", "best_decay"]
        writer.writerow(header)
        for heatmap, stats in results:
            best = _best_cell(heatmap)
            writer.writerow([heatmap.title, metric, f"{stats.slope:.4f}", f"{stats.correlation:.4f}", stats.rows,
                             stats.top_k, *best])
    log_figures_to_tensorboard({f"sweep/heatmap/{metric}": figure}, out / TENSORBOARD_DIR)
    _pyplot().close(figure)
    return results


def _best_cell(heatmap: Heatmap) -> tuple[str, str, str]:
    if not np.isfinite(heatmap.values).any():
        return "", "", ""
    i, j = np.unravel_index(np.nanargmin(heatmap.values), heatmap.values.shape)
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
    log_figures_to_tensorboard(figures, out / TENSORBOARD_DIR)
    for figure in figures.values():
        _pyplot().close(figure)
    return written
