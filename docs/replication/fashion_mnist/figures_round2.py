"""Round 2 (Fashion-MNIST): one figure per claim of summarize_round2.py (Figs. 1/3, Fig. 4, Appendix B.1).

``summarize_round2.py``'s ``main`` calls :func:`write_figures`, which writes ``<docs>/figures/{fig13,fig4,b1}.png``
from the files the summary has just read or written (each part's results.csv, ``curves.csv``, ``anytime.csv``),
through the summary's own readers, so that a figure shows exactly the numbers the verdicts rest on. The drawing
functions take those readers' structures and return the :class:`~matplotlib.figure.Figure` (object API only: no
pyplot state is touched).

Every interval drawn is the 95 % t interval over seeds, mean +- t(0.975, n - 1) SD / sqrt(n)
(:func:`wdlab.experiments.intervals.t_interval`), the one the pre-registered rules decide on; with fewer than two
seeds none is drawn. Errors are in percent, differences in percentage points (as the summary's). The figures are
``WIDTH`` inches wide at ``DPI``: 900 px, a README column, where a font shows at its point size (9 pt or more).
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # summarize_round2.py lives beside this file, outside any package
import summarize_round2 as s2  # noqa: E402

from wdlab.experiments.intervals import t_interval  # noqa: E402
from wdlab.experiments.plots import save_figure  # noqa: E402
from wdlab.experiments.results import complete_rows, read_results  # noqa: E402

WIDTH, DPI = 6.0, 150
SMALL = 9  # points: the smallest font used (legends, tick labels, captions)
INTERVAL = "95 % t interval over seeds"
NAMES = {"adam": "Adam", "adamw": "AdamW"}
COLOURS = {"adam": "tab:orange", "adamw": "tab:blue"}
ARM_NAMES = {"norm": "normalized decay", "raw": "fixed raw \u03bb"}
FIGURES = ("fig13.png", "fig4.png", "b1.png")

Curves = Mapping[int, Sequence[s2.Point]]  # per seed, its per-epoch points (summarize_round2.curves)
Snapshots = Mapping[int, Mapping[int, float]]  # per seed, test error (fraction) per period end (anytime)
Lengths = Mapping[int, Mapping[int, float]]  # per cosine run length, test error (fraction) per seed
Fig4Part = tuple[Snapshots, Lengths]


# -- statistics over seeds --------------------------------------------------------------------------
def seed_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values[seed, k]``: the mean over the seeds with a finite value, the ends of its 95 % t
    interval (NaN with fewer than two such seeds) and their number."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    mean, lo, hi = (np.full(values.shape[1], math.nan) for _ in range(3))
    count = np.zeros(values.shape[1], dtype=int)
    for k in range(values.shape[1]):
        column = values[:, k][np.isfinite(values[:, k])]
        interval = t_interval("per_seed_t", column)
        if column.size:
            mean[k] = column.mean()
        lo[k], hi[k], count[k] = interval.lo, interval.hi, interval.n
    return mean, lo, hi, count


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _df(counts: Sequence[int]) -> str:
    """The degrees of freedom the drawn intervals have (``n - 1``), or why there are none."""
    usable = sorted({int(c) - 1 for c in counts if c >= 2})
    if not usable:
        return "none: fewer than 2 seeds"
    return f"{'/'.join(map(str, usable))} df"


def _padded(lo: float, hi: float, pad: float = 0.06) -> tuple[float, float] | None:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    return lo - pad * span, hi + pad * span


def _line(lines: Sequence[s2.Line], claim: str, starts: str = "") -> s2.Line | None:
    return next((x for x in lines if x.claim == claim and x.measure.startswith(starts)), None)


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "\u2212") if math.isfinite(x) else "n/a"


def _decided(line: s2.Line | None, name: str, unit: str = " points", bootstrap: bool = False) -> str:
    """A caption line: the summary's value, the interval its rule decides on (the t interval; for B.1 the
    whole-seed bootstrap) and its verdict."""
    if line is None:
        return ""
    if not math.isfinite(line.value):
        return f"{name}: {line.verdict}"
    lo, hi, kind = (line.boot_lo, line.boot_hi, "whole-seed bootstrap") if bootstrap else (line.t_lo, line.t_hi, "t")
    return f"{name}: {_signed(line.value)}{unit}, 95 % {kind} [{_signed(lo)}, {_signed(hi)}] \u2192 {line.verdict}"


# -- Figs. 1/3 ---------------------------------------------------------------------------------------
def _table(points: Curves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs (every seed's, united) and ``loss[seed, epoch]``, ``test[seed, epoch]`` (test error in %; NaN: none)."""
    epochs = sorted({p[0] for pts in points.values() for p in pts})
    loss, test = (np.full((len(points), len(epochs)), math.nan) for _ in range(2))
    for i, seed in enumerate(sorted(points)):
        for epoch, train_loss, _, test_err in points[seed]:
            loss[i, epochs.index(epoch)] = train_loss
            test[i, epochs.index(epoch)] = 100.0 * test_err
    return np.array(epochs, dtype=np.float64), loss, test


def matched_loss(curves: Mapping[str, Curves]) -> float:
    """The training loss Fig. 3 compares at: the lowest that every run reaches among its epochs with a test error
    (as ``figs_1_3``, over the seeds both sides have)."""
    seeds = set.intersection(*(set(c) for c in curves.values())) if curves else set()
    lowest = [min((p[1] for p in c[s] if math.isfinite(p[3])), default=math.nan) for c in curves.values()
              for s in seeds]
    lowest = [x for x in lowest if math.isfinite(x)]
    return max(lowest) if lowest else math.nan


def draw_fig13(curves: Mapping[str, Curves], lines: Sequence[s2.Line] = ()) -> Figure:
    """Adam vs AdamW at their best cells (``curves``: ``{"adam": ..., "adamw": ...}``, per seed its points).

    (a) test error (%) and (b) training loss (log) against epoch: per optimizer the mean over seeds (line) and the
    95 % t interval over seeds at each epoch (band); (c) the per-epoch mean test error against the mean training
    loss, with the training loss Fig. 3 compares at (dotted). ``lines`` (the summary's): Fig. 1's and Fig. 3's
    paired difference, its t interval and verdict, written below the panels.
    """
    fig = Figure(figsize=(WIDTH, 7.4), layout="constrained")
    axes = fig.subplot_mosaic([["a", "b"], ["c", "c"]], height_ratios=[1, 1.05])
    counts: dict[str, int] = {}
    df: list[int] = []
    top = -math.inf
    for name, points in curves.items():
        epochs, loss, test = _table(points)
        counts[name] = len(points)
        label = f"{NAMES[name]}: mean of {_seeds(len(points))}"
        for key, values, quantity in (("a", test, "test error"), ("b", loss, "training loss")):
            mean, lo, hi, n = seed_stats(values)
            df.extend(n)
            axes[key].plot(epochs, mean, color=COLOURS[name], lw=1.6, label=label, gid=f"{name} {quantity} mean")
            axes[key].fill_between(epochs, lo, hi, color=COLOURS[name], alpha=0.25, lw=0, gid=f"{name} {quantity} band")
            if key == "a":
                # the first tenth of training (errors far above the rest) would squeeze the range compared
                late = slice(len(epochs) // 10, None)
                top = max(top, float(np.nanmax(np.fmax(mean[late], hi[late]), initial=-math.inf)))
        loss_mean, test_mean = seed_stats(loss)[0], seed_stats(test)[0]
        shown = np.isfinite(loss_mean) & np.isfinite(test_mean)
        axes["c"].plot(loss_mean[shown], test_mean[shown], color=COLOURS[name], marker=".", ms=4, lw=1.4,
                       label=label, gid=f"{name} error vs loss")
    level = matched_loss(curves)
    if math.isfinite(level):
        axes["c"].axvline(level, color="black", ls=":", lw=1.2, label=f"loss compared (Fig. 3): {level:.3g}",
                          gid="matched loss")
    bottom = min((float(np.nanmin(line.get_ydata(), initial=math.inf)) for line in axes["a"].get_lines()),
                 default=math.inf)
    bands = [np.nanmin(c.get_paths()[0].vertices[:, 1], initial=math.inf) for c in axes["a"].collections
             if c.get_paths()]
    limits = _padded(min([bottom, *bands]), top)
    if limits:
        axes["a"].set_ylim(*limits)
        axes["c"].set_ylim(*limits)
        # the early epochs above the range shown would stretch the loss axis over points not drawn
        shown_x = [x for line in axes["c"].get_lines() if line.get_gid() != "matched loss"
                   for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True) if y <= limits[1]]
        shown_x += [level] if math.isfinite(level) else []
        if shown_x and min(shown_x) > 0:
            axes["c"].set_xlim(min(shown_x) / 1.25, max(shown_x) * 1.25)
    axes["a"].set(xlabel="epoch", ylabel="test error (%)", title="(a) test error (Fig. 1)")
    axes["b"].set(xlabel="epoch", ylabel="training loss", yscale="log", title="(b) training loss")
    axes["c"].set(xlabel="training loss (mean at each epoch; log)", ylabel="test error (%)", xscale="log",
                  title="(c) test error against training loss (Fig. 3)")
    for ax in axes.values():
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=SMALL)
    axes["c"].legend(fontsize=SMALL, loc="best")
    seeds = (_seeds(next(iter(counts.values()))) if len(set(counts.values())) == 1 else
             ", ".join(f"{NAMES[n]} {_seeds(c)}" for n, c in counts.items()))
    fig.suptitle(f"Figs. 1/3: Adam vs AdamW at their best cells, {seeds}\n"
                 f"line: mean; band: {INTERVAL} ({_df(df)})", fontsize=11)
    caption = [x for x in (_decided(_line(lines, "fig1"), "Fig. 1, Adam \u2212 AdamW"),
                           _decided(_line(lines, "fig3"), "Fig. 3, at the loss compared")) if x]
    if caption:
        fig.supxlabel("\n".join(caption), fontsize=SMALL)
    return fig


# -- Fig. 4 ------------------------------------------------------------------------------------------
def draw_fig4(parts: Mapping[tuple[str, str], Fig4Part | str], margin: float = s2.FIG4_MARGIN) -> Figure:
    """Fig. 4, a row per restarts family and arm (``parts[(restarts, arm)]``: its snapshots and cosine runs by
    length, or why it is not there; a family/arm absent from ``parts`` or given as a string is drawn "not run").

    Left: test error (%) at each period end of the restart run's snapshots and of the cosine runs of exactly that
    length, mean with 95 % t error bars over seeds. Right: per seed (dots) the paired difference snapshot - cosine
    run (points) at every period end after the first (the first period is the cosine run itself), its mean with
    the 95 % t interval, against the pre-registered no-cost margin ``margin`` (summarize_round2.FIG4_MARGIN), with
    the verdict the rule gives under each period end.
    """
    keys = [(restarts, arm) for restarts, _ in s2.RESTARTS for arm in s2.ARMS]
    labels = dict(s2.RESTARTS)
    run = [not isinstance(parts.get(k), tuple) for k in keys]
    fig = Figure(figsize=(WIDTH, 1.2 + sum(0.55 if missing else 2.75 for missing in run)), layout="constrained")
    rows = fig.subfigures(len(keys), 1, height_ratios=[0.55 if missing else 2.75 for missing in run])
    df: list[int] = []
    for row, key in zip(rows, keys, strict=True):
        restarts, arm = key
        # the cosine twin of a restarts optimizer is its name without the R: AdamWR -> AdamW
        title = f"{labels[restarts]} ({ARM_NAMES[arm]}) vs {labels[restarts][:-1]} cosine runs"
        data = parts.get(key)
        if not isinstance(data, tuple):
            why = f" ({data})" if data else ""
            row.text(0.5, 0.5, f"{title}: not run{why}", ha="center", va="center", fontsize=SMALL + 1,
                     wrap=True, gid=f"{restarts} {arm} not run")
            continue
        snapshots, lengths = data
        seeds = len(snapshots)
        df.extend(_draw_fig4_row(row, snapshots, lengths, margin))
        row.suptitle(f"{title}, {_seeds(seeds)}", fontsize=10)
    fig.suptitle(f"Fig. 4: restart snapshots vs cosine runs of that length\nmean and {INTERVAL} ({_df(df)})",
                 fontsize=11)
    handles = [Line2D([], [], color="tab:purple", marker="o", ls="", label="snapshot at a period end"),
               Line2D([], [], color="tab:green", marker="s", ls="", label="cosine run of that length"),
               Line2D([], [], color="grey", marker="o", ls="", alpha=0.5, ms=4, label="per-seed difference"),
               Line2D([], [], color="tab:red", ls="--", label=f"no-cost margin +{margin:g} point")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=SMALL, frameon=False)
    return fig


def _draw_fig4_row(row: Figure, snapshots: Snapshots, lengths: Lengths, margin: float) -> list[int]:
    """One family/arm's two panels; returns the seed counts of the intervals drawn."""
    ax_err, ax_diff = row.subplots(1, 2, width_ratios=[1.1, 1])
    ends = sorted({e for errs in snapshots.values() for e in errs})
    epochs = sorted(set(ends) | set(lengths))
    counts: list[int] = []
    for offset, values, colour, marker, gid in (
            (-0.12, {e: [errs.get(e, math.nan) for errs in snapshots.values()] for e in ends}, "tab:purple", "o",
             "snapshot"),
            (0.12, {e: list(lengths[e].values()) for e in lengths}, "tab:green", "s", "cosine")):
        shown = sorted(values)
        if not shown:
            continue
        mean, lo, hi, n = seed_stats(100.0 * np.array([values[e] for e in shown], dtype=np.float64).T)
        counts.extend(n)
        ax_err.errorbar([epochs.index(e) + offset for e in shown], mean, yerr=_yerr(mean, lo, hi), color=colour,
                        marker=marker, ls="", capsize=3, gid=gid)
    ax_err.set_xticks(range(len(epochs)), [str(e) for e in epochs])
    ax_err.set(xlabel="epoch (period end)", ylabel="test error (%)", xlim=(-0.5, len(epochs) - 0.5))
    # the first period is the cosine run of its length itself: compared only after it, as the summary does
    compared = [end for end in sorted(lengths) if not ends or end > ends[0]]
    ticks = []
    for k, end in enumerate(compared):
        snap = {s: errs[end] for s, errs in snapshots.items() if end in errs}
        diffs, _ = s2.pair(snap, dict(lengths[end]))
        values = np.array(list(diffs.values()), dtype=np.float64)
        ax_diff.plot(k + np.linspace(-0.18, 0.18, len(values)), values, "o", color="grey", alpha=0.5, ms=4,
                     gid=f"diffs {end}")
        interval = t_interval("per_seed_t", values)
        counts.append(interval.n)
        mean = float(values.mean()) if values.size else math.nan
        ax_diff.errorbar([k], [mean], yerr=_yerr(np.array([mean]), np.array([interval.lo]), np.array([interval.hi])),
                         color="black", marker="D", ms=5, capsize=4, lw=1.6, gid=f"difference {end}")
        verdict = s2.fig4_verdict(interval.lo, interval.hi)[0] if interval.defined else "undecided"
        ticks.append(f"epoch {end}\n{verdict}")
    # the margin and 0 always in view, off the frame: the verdict is read against them
    drawn = [y for line in ax_diff.get_lines() for y in line.get_ydata()]
    bars = [y for c in ax_diff.containers for seg in c.lines[2][0].get_segments() for y in seg[:, 1]]
    limits = _padded(float(np.nanmin([0.0, margin, *drawn, *bars])), float(np.nanmax([0.0, margin, *drawn, *bars])))
    if limits:
        ax_diff.set_ylim(*limits)
    ax_diff.axhline(margin, color="tab:red", ls="--", lw=1.2, gid="margin")
    ax_diff.axhline(0.0, color="black", lw=0.8)
    ax_diff.set_xticks(range(len(compared)), ticks)
    ax_diff.set(ylabel="snapshot \u2212 cosine (points)", xlim=(-0.6, max(len(compared), 1) - 0.4))
    for ax in (ax_err, ax_diff):
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(labelsize=SMALL)
    return counts


def _yerr(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    # an undefined interval (one seed) draws no bar rather than failing
    return np.nan_to_num(np.vstack([mean - lo, hi - mean]), nan=0.0)


# -- Appendix B.1 ------------------------------------------------------------------------------------
def draw_b1(lengths: Sequence[float], decays: Sequence[float], seeds: Sequence[int], tables: Mapping[str, np.ndarray],
            checked: Sequence[s2.RunLength], lines: Sequence[s2.Line] = ()) -> Figure:
    """Appendix B.1 (``summarize_round2.b1_tables`` and ``run_lengths``): test error (%) against log2 of the raw
    decay, a line per run length T: the mean over seeds with the 95 % t interval over seeds as a band; a triangle
    at each length's row optimum log2 lambda* (the parabola vertex of the mean test error, as the summary); a
    length that is not well trained (section 3 (a)) dashed and labelled so. ``lines``: the raw slope's value,
    interval and verdict in the title.
    """
    fig = Figure(figsize=(WIDTH, 5.2), layout="constrained")
    ax = fig.subplots()
    positive = np.array(decays, dtype=np.float64) > 0
    x = np.log2(np.array(decays, dtype=np.float64)[positive])
    df: list[int] = []
    lows, means = [], []
    for i, length in enumerate(checked):
        mean, lo, hi, n = seed_stats(100.0 * tables["final_test_err"][i][positive].T)
        df.extend(n)
        lows.append(np.fmin(lo, mean))
        means.append(mean)
        where = (f"log\u2082\u03bb* = {_signed(length.log2_decay)}" if math.isfinite(length.log2_decay) else
                 "no optimum") + (" (grid edge)" if length.edge else "")
        trained = "" if length.well_trained else ", not well trained: left out of the slope"
        epochs = f"T = {length.epochs:g} epoch" + ("" if length.epochs == 1 else "s")
        (drawn,) = ax.plot(x, mean, marker="o", ms=4, lw=1.6, ls="-" if length.well_trained else "--",
                           label=f"{epochs}: {where}{trained}", gid=f"T={length.epochs:g} mean")
        ax.fill_between(x, lo, hi, color=drawn.get_color(), alpha=0.2, lw=0, gid=f"T={length.epochs:g} band")
        if math.isfinite(length.log2_decay):
            ax.plot([length.log2_decay], [np.interp(length.log2_decay, x, mean)], marker="v", ms=10, ls="",
                    color=drawn.get_color(), markeredgecolor="black", gid=f"T={length.epochs:g} optimum")
    if means:
        # far-off decays (errors well above the optimum) would flatten the minima that the optima are read from
        finite = np.concatenate(means)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            limits = _padded(float(np.nanmin(np.concatenate(lows))), float(np.quantile(finite, 0.8)))
            if limits:
                ax.set_ylim(*limits)
    ax.set(xlabel="log\u2082 raw weight decay \u03bb", ylabel="test error (%)")
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=SMALL)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color="grey", alpha=0.3, label=f"band: {INTERVAL}"),
                Line2D([], [], marker="v", ms=9, color="grey", markeredgecolor="black", ls="",
                       label="row optimum (parabola vertex of the mean)")]
    fig.legend(handles=handles, loc="outside lower center", fontsize=SMALL, frameon=False)
    raw = _line(lines, "b1", "d log2 lambda* / d log2 T")
    used = raw.measure.partition("(raw), ")[2] if raw else ""  # the run lengths the slope rests on
    slope = _decided(raw, f"raw slope d log\u2082\u03bb*/d log\u2082T ({used})", unit="", bootstrap=True)
    if raw and math.isfinite(raw.value):
        slope = slope.replace(": ", ":\n", 1)  # value, interval and verdict on a line of their own
    fig.suptitle(f"App. B.1: AdamW, {_seeds(len(seeds))}\nline: mean; band: {INTERVAL} ({_df(df)})"
                 + (f"\n{slope}" if slope else ""), fontsize=10)
    return fig


# -- writing -----------------------------------------------------------------------------------------
def _rows(docs: Path, part: str) -> list[dict[str, str]] | None:
    # summarize_round2.load would print its note on incomplete cells a second time
    path = docs / part
    return complete_rows(read_results(path)) if (path / "results.csv").is_file() else None


def fig4_parts(docs: Path) -> dict[tuple[str, str], Fig4Part | str]:
    """Per restarts family and arm, its snapshot test errors and cosine runs by length, or why they are missing."""
    parts: dict[tuple[str, str], Fig4Part | str] = {}
    for restarts, _ in s2.RESTARTS:
        for arm in s2.ARMS:
            part = f"fig4_{restarts}_{arm}"
            cosine = _rows(docs, f"{part}_cosine")
            # no rows: the reader takes anytime.csv and never looks for (or evaluates) run directories
            snapshots = s2.anytime(docs, docs, part, []) if (docs / part / "results.csv").is_file() else None
            if cosine is None or snapshots is None:
                parts[(restarts, arm)] = ", ".join(
                    p for p, there in ((part, snapshots is not None), (f"{part}_cosine", cosine is not None))
                    if not there) + ": missing"
                continue
            lengths: dict[int, dict[int, float]] = defaultdict(dict)
            for r in cosine:
                lengths[int(float(r[s2.EPOCHS]))][int(r["seed"])] = s2._float(r.get("final_test_err"))
            parts[(restarts, arm)] = (snapshots, dict(lengths))
    return parts


def write_figures(docs: Path, out: Path, lines: Sequence[s2.Line] = ()) -> list[Path]:
    """Draw the three figures from the parts under ``docs`` and save them as PNGs (``DPI``) in ``out``.

    A figure whose data are not there is skipped with one printed line (Fig. 4 is drawn when any family/arm was
    run; the others say "not run"). Returns the paths written.
    """
    figures: dict[str, Figure] = {}
    curves = {name: s2.curves(docs, docs, f"fig13_{name}", []) for name in NAMES}
    lost = [f"fig13_{name}" for name, c in curves.items() if not c]
    if lost:
        print(f"figures: fig13.png not drawn: no curves.csv in {', '.join(lost)}")
    else:
        figures["fig13.png"] = draw_fig13({n: c for n, c in curves.items() if c}, lines)
    parts = fig4_parts(docs)
    if any(isinstance(p, tuple) for p in parts.values()):
        figures["fig4.png"] = draw_fig4(parts)
    else:
        print("figures: fig4.png not drawn: no Fig. 4 part has both its snapshot errors and its cosine runs")
    rows = _rows(docs, "b1_adamw")
    if rows:
        lengths, decays, seeds, tables = s2.b1_tables(rows)
        figures["b1.png"] = draw_b1(lengths, decays, seeds, tables, s2.run_lengths(lengths, decays, tables), lines)
    else:
        print("figures: b1.png not drawn: no complete cell in b1_adamw/results.csv")
    written = []
    if figures:
        out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        save_figure(fig, out / name, dpi=DPI)
        written.append(out / name)
    if written:
        print(f"wrote {', '.join(p.name for p in written)} in {out}")
    return written
