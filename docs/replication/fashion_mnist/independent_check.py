"""Independent recomputation of round 2's Fig. 2 statistics from the pre-registration's text alone.

What it is
----------
A second implementation of the statistics PREREGISTRATION.md §5 registers for Fig. 2 (row optima, the rows that
enter the slope, the slope of log2 λ* on log2 α, its three 95 % intervals, the verdicts, and the paired
differences SGDW − SGD and AdamW − Adam), written from §5's text without reading or importing wdlab's code: it
uses the standard library, numpy and scipy only. It reads each panel's ``results.csv`` (only ``state ==
complete`` rows count; every other cell is missing) and prints one table per rule set; ``--out`` also writes it
as CSV. Agreement with ``wdlab report`` on the registered reading is the check; the other two readings are the
robustness analysis the pre-registration's 2026-12-08 entry names. ``wdlab report --resample_reading drop|reselect``
was written afterwards to the definitions below, so its agreement with this script on those two readings checks
the code of both, not the readings' independence.

The rules (§5)
--------------
- Row optimum: the vertex of the parabola in log2 λ through the row's best cell (lowest mean error over the
  seeds, decay > 0) and its two neighbours (:func:`row_optima`).
- Healthy row: its λ = 0 cell's mean final training loss is at most ``loss ratio`` × the lowest λ = 0 mean
  training loss of the panel's rows, and its λ = 0 seeds lie within ``seed spread`` points of each other (in the
  analysed metric). Uncensored row: its best cell is not at the edge of the decay grid, not next to a failed
  (missing) cell and not next to a cell at least ``collapse`` points worse than the best (collapsed).
- Rows used: healthy and uncensored, judged on the seed means of all seeds. Slope: least squares of log2 λ* on
  log2 α over the used rows (:func:`slope`).
- Intervals: whole-seed bootstrap (the primary one: resample the seeds, every cell of a resample from the same
  drawn seeds), per-seed slopes with a t interval, per-cell bootstrap (each cell's seeds resampled on their own).
- Verdict (margin 0.5): coupled if the interval's upper end < −0.5, decoupled if it lies inside (−0.5, +0.5),
  else undecided; fewer than ``min rows`` used rows or fewer than 3 seeds (for the t interval: seeds that gave a
  slope): undecided. Fragile: the three
  intervals' verdicts differ. Pairs (decoupled − L2 panel, over the shared seeds, each panel with its own rows):
  whole-seed bootstrap drawing the same seeds for both panels, per-seed t beside it; "differs" if the interval
  lies above +0.5, "same" if inside (−0.5, +0.5), else undecided; a pair needs ≥ 3 shared seeds and a slope
  (≥ 2 used rows) in each panel.

Rule sets: *registered* (loss ratio 1.5, seed spread 10 points, collapse 10 points, min rows 3) and *relaxed*
(1000, 100 points, 100 points, min rows 2: the rules effectively off, for robustness only). Errors in
``results.csv`` are fractions (0.2254 = 22.54 %); thresholds are given in points and divided by 100.

The three readings
------------------
§5 chooses the rows on all seeds but does not say what a resample (whole-seed or per-cell) or a single seed
(per-seed t) does with a used row whose best cell *in that resample* is censored. The three readings differ only
there; the rows used, the slope and the verdict rules are the same in all three.

- ``argmin`` — the registered, primary analysis, ``wdlab report``'s default: the rows chosen on all
  seeds enter every resample and seed; each row's optimum is found again the same way, the parabola vertex, or
  the best grid decay itself (the argmin) where that resample's best cell is at the grid edge or next to a
  missing cell (no parabola through three cells); collapse and failure are not checked again. A row with no
  cell at all in a resample leaves it.
- ``drop`` — a used row whose optimum is censored in that resample or seed (edge, next to a missing or collapsed
  cell) leaves that resample's (seed's) slope; a resample or seed with fewer than 2 rows left gives no slope and
  is left out of the interval (the count of resamples, or seeds, that gave a slope is printed).
- ``reselect`` — health and censoring applied again inside every resample: whole-seed resamples judge health on
  the drawn seeds (with their repeats) and censoring on their means; a single seed is judged for censoring on
  its own values and for health on all seeds (one seed has no seed spread); a per-cell resample is judged for
  censoring on its means and for health on all seeds. Fewer than 2 rows: no slope, as in ``drop``.

Random numbers
--------------
Whole-seed bootstrap: ``numpy.random.default_rng(0)``, one ``rng.integers(0, n, n)`` call per resample (n: the
panel's seeds); a pair draws the same way over its shared seeds, so with the same seeds a pair's resamples are
its panels' resamples. With these streams the ``argmin`` reading reproduces ``wdlab report``'s slopes, whole-seed
and per-seed t intervals to the printed digit. Per-cell bootstrap: its own stream, ``default_rng(1)``, drawing
each cell's values from its complete seeds; ``wdlab report`` draws per cell from sorted values on another stream,
so the per-cell interval agrees only to Monte Carlo noise, which is large where the slopes have a long tail (SGD's
registered lower end: −1.98 to −2.40 over wdlab's RNG seeds 0–5, −2.16 to −2.49 over eight streams here).

Run
---
    python docs/replication/fashion_mnist/independent_check.py [--docs DIR] [--resamples 2000]
        [--metric final_test_err] [--out CSV]

``--docs`` (default: this script's folder) holds ``fig2_sgd/``, ``fig2_sgdw/``, ``fig2_adam/``, ``fig2_adamw/``,
each with a ``results.csv``; a missing panel is skipped, a panel with cells not yet complete is analysed with
those cells missing and says so. The test ``tests/experiments/test_independent_check.py`` checks the argmin
reading (and the two others) against ``wdlab.experiments.coupling``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

PANELS = {"sgd": "SGD", "sgdw": "SGDW", "adam": "Adam", "adamw": "AdamW"}
PAIRS = (("sgdw", "sgd"), ("adamw", "adam"))  # (decoupled, L2)
READINGS = ("argmin", "drop", "reselect")
MARGIN = 0.5
MIN_SEEDS = 3
LR, DECAY, SEED, STATE, LOSS = "model.optimizer.lr", "model.optimizer.weight_decay", "seed", "state", "final_train_loss"

# Row-optimum codes: OK is the only uncensored one.
OK, EDGE, NEXT_TO_FAILED, NEXT_TO_COLLAPSED, FAILED = range(5)
CODE_NAMES = {OK: "ok", EDGE: "edge", NEXT_TO_FAILED: "next to failed", NEXT_TO_COLLAPSED: "next to collapsed",
              FAILED: "no cells"}


class InputError(Exception):
    """Bad input: the message names the problem and the fix."""


@dataclass(frozen=True)
class Rules:
    """A rule set of §5; thresholds in points of error (10 = 0.10 in results.csv's fractions)."""

    name: str
    loss_ratio: float
    seed_spread_pts: float
    collapse_pts: float
    min_rows: int

    @property
    def seed_spread(self) -> float:
        return self.seed_spread_pts / 100.0

    @property
    def collapse(self) -> float:
        return self.collapse_pts / 100.0


REGISTERED = Rules("registered", 1.5, 10.0, 10.0, 3)
RELAXED = Rules("relaxed", 1000.0, 100.0, 100.0, 2)


@dataclass
class Panel:
    """One panel's cells: ``err``/``loss`` of shape (lrs, decays, seeds), NaN where a cell is not complete.

    ``decays[0]`` is 0 (the health rule's column); ``missing``: cells (× seeds) not complete, by state.
    """

    key: str
    lrs: np.ndarray
    decays: np.ndarray
    seeds: list[int]
    err: np.ndarray
    loss: np.ndarray
    missing: dict[str, int]

    @property
    def label(self) -> str:
        return PANELS[self.key]

    @property
    def lr2(self) -> np.ndarray:
        return np.log2(self.lrs)

    @property
    def wd2(self) -> np.ndarray:
        return np.log2(self.decays[1:])

    def subset(self, seeds: list[int]) -> Panel:
        k = [self.seeds.index(s) for s in seeds]
        return Panel(self.key, self.lrs, self.decays, list(seeds), self.err[..., k], self.loss[..., k], self.missing)


# ---------------------------------------------------------------------------------------------------------------
# Loading


def _number(text: str, path: Path, line: int, column: str) -> float:
    # An empty field in a complete row is a metric the run did not produce: a missing cell, not an input error.
    if text is None or text.strip() == "":
        return np.nan
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}:{line}: column {column!r} holds {text!r}, not a number; "
                         f"fix or regenerate the file (wdlab sweep writes results.csv)") from None


def load_panel(path: Path, key: str, metric: str) -> Panel:
    """Read one panel's results.csv; the grid is every (lr, decay, seed) the file names, whatever its state."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in (LR, DECAY, SEED, STATE, LOSS):
            if column not in header:
                raise InputError(f"{path}: no column {column!r}; point --docs at the folder of Fig. 2's panels")
        if metric not in header:
            raise InputError(f"{path}: no column {metric!r}; pass --metric with one of its error columns "
                             f"(final_test_err, final_val_err)")
        rows = [(i + 2, r) for i, r in enumerate(reader)]
    if not rows:
        raise InputError(f"{path}: no rows; remove the empty file or rerun its sweep")
    cells = [(_number(r[LR], path, n, LR), _number(r[DECAY], path, n, DECAY), _number(r[SEED], path, n, SEED))
             for n, r in rows]
    if any(np.isnan(c).any() for c in cells):
        raise InputError(f"{path}: a row has no lr, decay or seed; fix or regenerate the file")
    lrs = sorted({c[0] for c in cells})
    decays = sorted({c[1] for c in cells})
    seeds = sorted({int(c[2]) for c in cells})
    if lrs[0] <= 0 or decays[0] < 0:
        raise InputError(f"{path}: lrs must be > 0 and decays >= 0; fix the file")
    if decays[0] != 0.0:
        raise InputError(f"{path}: no decay-0 column (the health rule needs it); run the panel's decay-0 cells")
    shape = (len(lrs), len(decays), len(seeds))
    err, loss = np.full(shape, np.nan), np.full(shape, np.nan)
    seen: set[tuple[int, int, int]] = set()
    missing: dict[str, int] = {}
    for (n, r), (lr, wd, seed) in zip(rows, cells, strict=True):
        at = (lrs.index(lr), decays.index(wd), seeds.index(int(seed)))
        if r[STATE] != "complete":
            missing[r[STATE] or "no state"] = missing.get(r[STATE] or "no state", 0) + 1
            continue
        if at in seen:
            raise InputError(f"{path}:{n}: a second complete row for lr {lr:g}, decay {wd:g}, seed {int(seed)}; "
                             f"keep one row per cell")
        seen.add(at)
        err[at] = _number(r[metric], path, n, metric)
        loss[at] = _number(r[LOSS], path, n, LOSS)
    absent = err.size - len(seen) - sum(missing.values())
    if absent > 0:
        missing["not listed"] = absent
    finite = err[np.isfinite(err)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise InputError(f"{path}: {metric} has values outside [0, 1]; errors must be fractions "
                         f"(0.2254 = 22.54 %), convert percentages by dividing by 100")
    return Panel(key, np.array(lrs), np.array(decays), seeds, err, loss, missing)


# ---------------------------------------------------------------------------------------------------------------
# The statistics


def nanmean_last(a: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN where nothing is left (without numpy's empty-slice warning)."""
    ok = np.isfinite(a)
    count = ok.sum(axis=-1)
    total = np.where(ok, a, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def row_optima(y: np.ndarray, x: np.ndarray, collapse: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimum log2 λ* and censoring code of each row of ``y`` (..., m): mean errors at log2 decays ``x`` (m,).

    b = argmin of the row (the first one on ties, NaN cells skipped). The vertex of the parabola through
    (x_{b-1}, y_{b-1}), (x_b, y_b), (x_{b+1}, y_{b+1}) is

        x* = x_b − ½ [(x_b − x_{b−1})² (y_b − y_{b+1}) − (x_b − x_{b+1})² (y_b − y_{b−1})]
                    / [(x_b − x_{b−1}) (y_b − y_{b+1}) − (x_b − x_{b+1}) (y_b − y_{b−1})],

    on a grid of step h:  x* = x_b + h (y_{b−1} − y_{b+1}) / (2 (y_{b−1} − 2 y_b + y_{b+1})). Since y_b is the
    lowest of the three, x* lies within half a step of x_b; a flat triple (denominator 0) gives x_b.

    Codes: EDGE (b is the first or last decay) and NEXT_TO_FAILED (a neighbour is NaN) return x_b, the argmin
    (no parabola can be drawn); NEXT_TO_COLLAPSED (a neighbour ≥ ``collapse`` above y_b) and OK return the
    vertex; FAILED (no cell) returns NaN. Only OK is uncensored.
    """
    m = y.shape[-1]
    missing = np.isnan(y)
    failed = missing.all(axis=-1)
    b = np.where(missing, np.inf, y).argmin(axis=-1)
    bm, bp = np.clip(b - 1, 0, m - 1), np.clip(b + 1, 0, m - 1)
    y0 = np.take_along_axis(y, bm[..., None], axis=-1)[..., 0]
    y1 = np.take_along_axis(y, b[..., None], axis=-1)[..., 0]
    y2 = np.take_along_axis(y, bp[..., None], axis=-1)[..., 0]
    x0, x1, x2 = x[bm], x[b], x[bp]
    edge = ~failed & ((b == 0) | (b == m - 1))
    next_failed = ~failed & ~edge & (np.isnan(y0) | np.isnan(y2))
    with np.errstate(invalid="ignore", divide="ignore"):
        collapsed = ~failed & ~edge & ~next_failed & (np.fmax(y0, y2) >= y1 + collapse)
        num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
        den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
        vertex = np.where(den == 0, x1, x1 - 0.5 * num / den)
    code = np.select([failed, edge, next_failed, collapsed], [FAILED, EDGE, NEXT_TO_FAILED, NEXT_TO_COLLAPSED], OK)
    opt = np.select([failed, edge | next_failed], [np.nan, x1], vertex)
    return opt, code


def slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of y (..., rows) on x (rows,) over the rows where y is finite.

        slope = Σ (x_i − x̄)(y_i − ȳ) / Σ (x_i − x̄)²,  x̄, ȳ over those rows (x: log2 α, y: log2 λ*);

    NaN where fewer than 2 rows are left.
    """
    w = np.isfinite(y)
    n = w.sum(axis=-1)
    xbar = np.where(w, x, 0.0).sum(axis=-1) / np.maximum(n, 1)
    dx = np.where(w, x - xbar[..., None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = (dx * np.where(w, y, 0.0)).sum(axis=-1) / (dx * dx).sum(axis=-1)
    return np.where(n >= 2, b, np.nan)


def healthy(loss0: np.ndarray, err0: np.ndarray, rules: Rules) -> np.ndarray:
    """Health of each row from its λ = 0 cells over a set of seeds: ``loss0``, ``err0`` of shape (..., rows, seeds).

    healthy_i  ⇔  mean_s loss0[i, s] ≤ ratio · min_j mean_s loss0[j, s]  and  max_s err0[i, s] − min_s err0[i, s]
    ≤ seed spread. A row without a λ = 0 cell is unhealthy (NaN compares False).
    """
    mean_loss = nanmean_last(loss0)
    lowest = np.where(np.isnan(mean_loss), np.inf, mean_loss).min(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        spread = np.fmax.reduce(err0, axis=-1) - np.fmin.reduce(err0, axis=-1)
        return (mean_loss <= rules.loss_ratio * lowest) & (spread <= rules.seed_spread)


def whole_seed_draws(n: int, resamples: int) -> np.ndarray:
    """Seed indices (resamples, n) of the whole-seed bootstrap, RNG seed 0.

    One ``integers(0, n, n)`` call per resample, in resample order: the stream §5's registered numbers were drawn
    with (numpy 2.4 gives the same indices from one call of shape (resamples, n); the loop does not rely on it).
    """
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, n, n) for _ in range(resamples)])


def per_cell_means(err: np.ndarray, resamples: int) -> np.ndarray:
    """Per-cell bootstrap means (resamples, lrs, decays): each cell's m complete seeds drawn m times, own stream."""
    rng = np.random.default_rng(1)
    values = np.sort(err, axis=-1)  # complete seeds first, so index k < m draws among them
    m = np.isfinite(values).sum(axis=-1)
    k = rng.integers(0, np.maximum(m, 1)[..., None], size=(resamples, *err.shape))
    drawn = np.take_along_axis(values[None], k, axis=-1)
    take = np.arange(err.shape[-1]) < m[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m > 0, np.where(take, drawn, 0.0).sum(axis=-1) / m, np.nan)


@dataclass
class Selection:
    """The rows chosen on all seeds: health, optimum, censoring code, used, and the slope over the used rows."""

    healthy: np.ndarray
    opt: np.ndarray
    code: np.ndarray
    used: np.ndarray
    slope: float
    seeds: int  # seeds with a value in a used row

    def reasons(self, lr2: np.ndarray) -> str:
        out = []
        for i, x in enumerate(lr2):
            why = [] if self.healthy[i] else ["unhealthy"]
            why += [] if self.code[i] == OK else [CODE_NAMES[int(self.code[i])]]
            out.append(f"{_lr(x)} {'+'.join(why) or 'used'}")
        return ", ".join(out)


def select(panel: Panel, rules: Rules) -> Selection:
    """Choose the rows on the seed means of all seeds and fit the slope over them."""
    health = healthy(panel.loss[:, 0, :], panel.err[:, 0, :], rules)
    opt, code = row_optima(nanmean_last(panel.err)[:, 1:], panel.wd2, rules.collapse)
    used = health & (code == OK)
    seeds = int(np.isfinite(panel.err[used][:, 1:, :]).any(axis=(0, 1)).sum())
    return Selection(health, opt, code, used, float(slope(panel.lr2, np.where(used, opt, np.nan))), seeds)


def resample_slopes(panel: Panel, rules: Rules, reading: str, sel: Selection, means: np.ndarray,
                    health: np.ndarray) -> np.ndarray:
    """Slopes of resamples (or seeds) with seed means ``means`` (R, lrs, decays) under one reading.

    ``health`` (R, lrs) or (lrs,): the health of the rows in each resample, used by ``reselect`` only.
    """
    opt, code = row_optima(means[..., 1:], panel.wd2, rules.collapse)
    if reading == "argmin":
        keep = sel.used & (code != FAILED)
    elif reading == "drop":
        keep = sel.used & (code == OK)
    elif reading == "reselect":
        keep = health & (code == OK)
    else:
        raise ValueError(f"unknown reading {reading!r}")
    return slope(panel.lr2, np.where(keep, opt, np.nan))


@dataclass
class Draws:
    """Slopes of one panel, rule set and reading: whole-seed resamples, seeds, per-cell resamples."""

    whole_seed: np.ndarray
    per_seed: np.ndarray
    per_cell: np.ndarray | None


def panel_draws(panel: Panel, rules: Rules, reading: str, sel: Selection, resamples: int,
                cell_means: np.ndarray | None) -> Draws:
    idx = whole_seed_draws(len(panel.seeds), resamples)
    ws_means = np.moveaxis(nanmean_last(panel.err[..., idx]), -1, 0)
    # Reselect judges health on the drawn seeds; the other readings never look at it.
    ws_health = healthy(np.moveaxis(panel.loss[:, 0, idx], 0, 1), np.moveaxis(panel.err[:, 0, idx], 0, 1), rules)
    ws = resample_slopes(panel, rules, reading, sel, ws_means, ws_health)
    ps = resample_slopes(panel, rules, reading, sel, np.moveaxis(panel.err, -1, 0), sel.healthy)
    pc = None if cell_means is None else resample_slopes(panel, rules, reading, sel, cell_means, sel.healthy)
    return Draws(ws, ps, pc)


def percentile_interval(a: np.ndarray) -> tuple[float, float, int]:
    """95 % percentile interval (2.5th, 97.5th, numpy's linear percentiles) of the draws that gave a slope."""
    a = a[np.isfinite(a)]
    if a.size == 0:
        return np.nan, np.nan, 0
    lo, hi = np.percentile(a, [2.5, 97.5])
    return float(lo), float(hi), int(a.size)


def t_interval(a: np.ndarray) -> tuple[float, float, int]:
    """95 % t interval of the mean of the per-seed slopes: mean ± t_{0.975, n−1} · s / √n (s: ddof 1)."""
    a = a[np.isfinite(a)]
    n = int(a.size)
    if n < 2:
        return np.nan, np.nan, n
    half = stats.t.ppf(0.975, n - 1) * a.std(ddof=1) / np.sqrt(n)
    return float(a.mean() - half), float(a.mean() + half), n


def verdict(lo: float, hi: float, rows: int, seeds: int, min_rows: int) -> str:
    """coupled: hi < −m; decoupled: −m < lo and hi < m; else undecided (also with too few rows or seeds)."""
    if rows < min_rows or seeds < MIN_SEEDS or not (np.isfinite(lo) and np.isfinite(hi)):
        return "undecided"
    if hi < -MARGIN:
        return "coupled"
    if lo > -MARGIN and hi < MARGIN:
        return "decoupled"
    return "undecided"


def pair_verdict(lo: float, hi: float, seeds: int) -> str:
    """differs: lo > +m; same: −m < lo and hi < m; else undecided."""
    if seeds < MIN_SEEDS or not (np.isfinite(lo) and np.isfinite(hi)):
        return "undecided"
    if lo > MARGIN:
        return "differs"
    if lo > -MARGIN and hi < MARGIN:
        return "same"
    return "undecided"


# ---------------------------------------------------------------------------------------------------------------
# Panels, pairs, output

COLUMNS = ("kind", "name", "rules", "reading", "metric", "rows_used", "n_rows", "slope", "ws_lo", "ws_hi", "ws_n",
           "t_lo", "t_hi", "t_seeds", "pc_lo", "pc_hi", "pc_n", "verdict_ws", "verdict_t", "verdict_pc", "fragile",
           "note")


def _lr(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:+.0f}" if float(x).is_integer() else f"{x:+g}"


def panel_result(panel: Panel, rules: Rules, reading: str, sel: Selection, draws: Draws) -> dict:
    rows = int(sel.used.sum())
    ws, t, pc = percentile_interval(draws.whole_seed), t_interval(draws.per_seed), percentile_interval(draws.per_cell)
    verdicts = (verdict(ws[0], ws[1], rows, sel.seeds, rules.min_rows),
                verdict(t[0], t[1], rows, t[2], rules.min_rows),
                verdict(pc[0], pc[1], rows, sel.seeds, rules.min_rows))
    note = f"{rows} rows < {rules.min_rows}" if rows < rules.min_rows else ""
    return dict(kind="panel", name=panel.label, rules=rules.name, reading=reading,
                rows_used=" ".join(_lr(x) for x in panel.lr2[sel.used]), n_rows=rows, slope=sel.slope,
                ws_lo=ws[0], ws_hi=ws[1], ws_n=ws[2], t_lo=t[0], t_hi=t[1], t_seeds=t[2],
                pc_lo=pc[0], pc_hi=pc[1], pc_n=pc[2], verdict_ws=verdicts[0], verdict_t=verdicts[1],
                verdict_pc=verdicts[2], fragile="yes" if len(set(verdicts)) > 1 else "no", note=note)


def pair_result(a: Panel, b: Panel, rules: Rules, reading: str, resamples: int) -> dict:
    """Decoupled panel ``a`` minus L2 panel ``b`` over their shared seeds, each with its own rows."""
    shared = sorted(set(a.seeds) & set(b.seeds))
    out = dict(kind="pair", name=f"{a.label} - {b.label}", rules=rules.name, reading=reading, n_rows=np.nan,
               slope=np.nan, ws_lo=np.nan, ws_hi=np.nan, ws_n=0, t_lo=np.nan, t_hi=np.nan, t_seeds=len(shared),
               verdict_ws="undecided", verdict_t="undecided", note="")
    if len(shared) < MIN_SEEDS:
        out["note"] = f"{len(shared)} shared seeds < {MIN_SEEDS}"
        return out
    # With the same seeds the subsets are the panels themselves and the draws below are the panels' own.
    a, b = a.subset(shared), b.subset(shared)
    sa, sb = select(a, rules), select(b, rules)
    rows = (int(sa.used.sum()), int(sb.used.sum()))
    out["rows_used"] = f"{rows[0]} / {rows[1]}"
    if min(rows) < 2:
        out["note"] = f"no slope: {a.label} {rows[0]} rows, {b.label} {rows[1]} rows"
        return out
    da, db = (panel_draws(p, rules, reading, s, resamples, None) for p, s in ((a, sa), (b, sb)))
    ws, t = percentile_interval(da.whole_seed - db.whole_seed), t_interval(da.per_seed - db.per_seed)
    out.update(slope=sa.slope - sb.slope, ws_lo=ws[0], ws_hi=ws[1], ws_n=ws[2], t_lo=t[0], t_hi=t[1], t_seeds=t[2],
               verdict_ws=pair_verdict(ws[0], ws[1], len(shared)), verdict_t=pair_verdict(t[0], t[1], t[2]))
    few = [f"{p.label} {r} rows" for p, r in zip((a, b), rows, strict=True) if r < rules.min_rows]
    out["note"] = ", ".join(few) + (f" < {rules.min_rows}" if few else "")
    return out


def analyse(panels: dict[str, Panel], metric: str, resamples: int) -> tuple[list[dict], list[str]]:
    """Every panel × rule set × reading and every pair present; returns the result rows and the printed lines."""
    results, lines = [], []
    cell_means = {k: per_cell_means(p.err, resamples) for k, p in panels.items()}
    for rules in (REGISTERED, RELAXED):
        lines += ["", f"rules {rules.name}: health loss ratio {rules.loss_ratio:g}, seed spread "
                  f"{rules.seed_spread_pts:g} points, collapse {rules.collapse_pts:g} points, min rows "
                  f"{rules.min_rows}; {metric}; {resamples} resamples; rows are log2 lr"]
        lines.append(f"{'panel':<14} {'reading':<9} {'rows used':<15} {'slope':>6}  {'whole-seed (n)':<21} "
                     f"{'per-seed t (seeds)':<19} {'per-cell (n)':<21} verdicts ws / t / pc")
        sels = {k: select(p, rules) for k, p in panels.items()}
        for k, p in panels.items():
            lines.append(f"{p.label}: {sels[k].reasons(p.lr2)}")
            for reading in READINGS:
                r = panel_result(p, rules, reading, sels[k], panel_draws(p, rules, reading, sels[k], resamples,
                                                                        cell_means[k]))
                results.append(r)
                lines.append(_panel_line(r))
        for ka, kb in PAIRS:
            if ka in panels and kb in panels:
                for reading in READINGS:
                    r = pair_result(panels[ka], panels[kb], rules, reading, resamples)
                    results.append(r)
                    lines.append(_pair_line(r))
    for r in results:
        r["metric"] = metric
    return results, lines


def _iv(lo: float, hi: float, n: int) -> str:
    return f"[{lo:+.2f}, {hi:+.2f}] {n}" if np.isfinite(lo) else f"[  n/a  ,  n/a  ] {n}"


def _panel_line(r: dict) -> str:
    rows = r["rows_used"].replace(" ", ",") or "none"
    verdicts = " / ".join((r["verdict_ws"], r["verdict_t"], r["verdict_pc"]))
    tail = ("  FRAGILE" if r["fragile"] == "yes" else "") + (f"  ({r['note']})" if r["note"] else "")
    return (f"  {r['name']:<12} {r['reading']:<9} {rows:<15} {r['slope']:>+6.2f}  "
            f"{_iv(r['ws_lo'], r['ws_hi'], r['ws_n']):<21} {_iv(r['t_lo'], r['t_hi'], r['t_seeds']):<19} "
            f"{_iv(r['pc_lo'], r['pc_hi'], r['pc_n']):<21} {verdicts}{tail}")


def _pair_line(r: dict) -> str:
    d = f"{r['slope']:>+6.2f}" if np.isfinite(r["slope"]) else f"{'n/a':>6}"
    verdicts = f"{r['verdict_ws']} / {r['verdict_t']}"
    tail = f"  ({r['note']})" if r["note"] else ""
    return (f"  {r['name']:<12} {r['reading']:<9} {'pair':<15} {d}  {_iv(r['ws_lo'], r['ws_hi'], r['ws_n']):<21} "
            f"{_iv(r['t_lo'], r['t_hi'], r['t_seeds']):<19} {'':<21} {verdicts}{tail}")


def write_csv(path: Path, results: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        w.writeheader()
        for r in results:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and np.isfinite(v) else
                            "" if isinstance(v, float) else v) for k, v in r.items()})


def load_panels(docs: Path, metric: str, say=print) -> dict[str, Panel]:
    if not docs.is_dir():
        raise InputError(f"--docs {docs} is not a folder; pass the folder holding fig2_sgd/, fig2_sgdw/, ...")
    panels = {}
    for key in PANELS:
        path = docs / f"fig2_{key}" / "results.csv"
        if not path.is_file():
            say(f"fig2_{key}: skipped, no {path}")
            continue
        p = load_panel(path, key, metric)
        if p.missing:
            states = ", ".join(f"{n} {s}" for s, n in sorted(p.missing.items()))
            say(f"fig2_{key}: {sum(p.missing.values())} of {p.err.size} cells not complete ({states}), "
                f"analysed as missing")
        panels[key] = p
    if not panels:
        raise InputError(f"no fig2_*/results.csv under {docs}; pass --docs with the folder of Fig. 2's panels")
    return panels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=Path, default=Path(__file__).resolve().parent,
                        help="folder holding fig2_sgd/, fig2_sgdw/, fig2_adam/, fig2_adamw/ (default: this folder)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000, §5)")
    parser.add_argument("--metric", default="final_test_err", help="column of results.csv (default final_test_err)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as CSV here")
    args = parser.parse_args(argv)
    try:
        if args.resamples < 1:
            raise InputError(f"--resamples {args.resamples}: pass a positive number (§5 registers 2000)")
        if args.out is not None and not args.out.parent.is_dir():
            raise InputError(f"--out {args.out}: folder {args.out.parent} does not exist; create it or pick another")
        panels = load_panels(args.docs, args.metric)
        results, lines = analyse(panels, args.metric, args.resamples)
    except InputError as e:
        print(f"independent_check.py: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    if args.out is not None:
        write_csv(args.out, results)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
