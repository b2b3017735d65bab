"""Figs. 1/3, Fig. 4 and Appendix B.1 of the replication suite: intervals over seeds and a verdict per claim.

    python docs/replication/summarize.py --runs runs/replication --out docs/replication

Reads each part's ``results.csv`` (``<out>/<part>/results.csv``, where run_suite.sh copies them) and, where the run
directories are still there (``--runs``), the curves that results.csv does not hold: Figs. 1/3's test error and
training loss every 5 epochs, Fig. 4's snapshot errors at the period ends. Those are written to
``<out>/<part>/curves.csv`` and ``<out>/<part>/anytime.csv`` so that a checkout without ``runs/`` regenerates the
same numbers. Prints one line per measurement and writes ``<out>/suite_summary.csv``. Parts not run yet are
reported as missing, not skipped silently.

Intervals: 95 % percentile bootstrap over seeds (``BOOTSTRAP_RESAMPLES`` resamples, fixed RNG, as ``wdlab report``);
a difference resamples both sides independently. Verdict rules, fixed before the runs:

* Fig. 1: AdamW generalizes better when the interval of Adam - AdamW (test error) lies above 0.
* Fig. 3: the same difference at matched training loss: each run's test error interpolated (in log loss, over the
  running minimum of its training loss at the evaluation epochs) at the lowest training loss that every run of both
  optimizers reaches.
* Fig. 4: restarts cost nothing shown when the interval of (snapshot at a period end) - (cosine run of that length)
  contains 0 or lies below it; they cost when it lies above 0.
* B.1: the rows are the run lengths T; the per-row optimum log2 lambda* is ``wdlab report``'s parabola vertex and
  the slope d log2 lambda* / d log2 T is bootstrapped like the report's lr slope. With lambda_norm =
  lambda * sqrt(B * T / b), the slope of log2 lambda_norm* is the raw slope + 0.5. The raw optimum moves when the
  raw interval excludes 0; the normalized one stays put when its interval contains 0 and is at most 1.0 wide (the
  report's decoupling rule). Predictions: normalized decay (the paper) raw -0.5, normalized 0; a decay timescale
  that is a fixed fraction of the run raw -1, normalized -0.5; a fixed timescale in steps (here also in epochs: the
  dataset and batch do not change) raw 0, normalized +0.5. A run length enters the slope only where
  decay acts: its best cell beats its smallest decay (timescale longer than the run) by at least 3 points, the
  headroom Fig. 2's setup check asks for. (Added after the T = 25 row came out underfit, with 0.6 points of
  headroom, and before the T = 50 row ran.) T = 200 (with T = 50, the issue's "T and 4T") was added after T = 50
  and 100 gave an interval too wide to tell the two predictions apart, before it ran.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wdlab.experiments.intervals import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from wdlab.experiments.intervals import per_cell_bootstrap_slopes as bootstrap_slopes
from wdlab.experiments.results import complete_rows, epoch_of_step, read_results, read_scalars
from wdlab.experiments.row_optima import row_optima

LR, WD, WDN, EPOCHS = ("model.optimizer.lr", "model.optimizer.weight_decay", "model.optimizer.weight_decay_norm",
                       "trainer.max_epochs")
NORM_SLOPE_OFFSET = 0.5  # log2 sqrt(T): lambda_norm = lambda * sqrt(B * T / b)
DECOUPLED_MAX_WIDTH = 1.0
MIN_HEADROOM = 0.03  # as Fig. 2's check of the setup: decay must beat (almost) no decay by 3 points to place an optimum
B1_PARTS = ("b1_adamw", "b1_adamw_t50", "b1_adamw_t200")


def _resampled_means(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``BOOTSTRAP_RESAMPLES`` means of ``x`` drawn with replacement."""
    return x[rng.integers(0, len(x), size=(BOOTSTRAP_RESAMPLES, len(x)))].mean(axis=1)


def mean_interval(values: Sequence[float], rng_seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Mean of ``values`` and the 95 % percentile bootstrap interval of the mean."""
    x = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(_resampled_means(x, np.random.default_rng(rng_seed)), [2.5, 97.5])
    return float(x.mean()), float(lo), float(hi)


def difference_interval(
    a: Sequence[float], b: Sequence[float], rng_seed: int = BOOTSTRAP_SEED
) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95 % bootstrap interval (each side resampled on its own)."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(rng_seed)
    lo, hi = np.percentile(_resampled_means(xa, rng) - _resampled_means(xb, rng), [2.5, 97.5])
    return float(xa.mean() - xb.mean()), float(lo), float(hi)


def error_at_loss(losses: Sequence[float], errors: Sequence[float], level: float) -> float:
    """Test error where the running minimum of the training loss first reaches ``level`` (linear in log loss)."""
    loss = np.asarray(losses, dtype=np.float64)
    best = np.minimum.accumulate(loss)
    errs = np.asarray(errors, dtype=np.float64)
    reached = np.nonzero(best <= level)[0]
    if not len(reached):
        return math.nan
    k = int(reached[0])
    if k == 0 or best[k] == level:
        return float(errs[k])
    j = int(np.nonzero(loss[:k] == best[k - 1])[0][-1])  # where the running minimum was set before k
    lo, hi = math.log(loss[k]), math.log(loss[j])
    w = (math.log(level) - lo) / (hi - lo)
    return float(w * errs[j] + (1 - w) * errs[k])


def headroom(seed_values: np.ndarray) -> np.ndarray:
    """Per row: mean error at the smallest decay (the first column) minus the row's best mean error."""
    means = np.nanmean(seed_values, axis=-1)
    return means[:, 0] - np.nanmin(means, axis=1)


def run_length_slope(lengths: Sequence[float], decays: Sequence[float], seed_values: np.ndarray) -> dict[str, float]:
    """B.1: per run length the optimum log2 lambda*, and d log2 lambda* / d log2 T with its bootstrap interval."""
    optima = row_optima(lengths, decays, np.nanmean(seed_values, axis=-1))
    log_t = np.log2(np.asarray(lengths, dtype=np.float64))
    point = float(np.polyfit(log_t, [o.log2_decay for o in optima], 1)[0])
    slopes = bootstrap_slopes(lengths, decays, seed_values)
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return {"slope": point, "lo": float(lo), "hi": float(hi),
            **{f"log2_opt_T{t:g}": o.log2_decay for t, o in zip(lengths, optima, strict=True)},
            "edge": float(any(o.edge for o in optima))}


def _run_dir(runs: Path, part: str, row: dict[str, str]) -> Path:
    return runs / part / Path(row["run_dir"]).name


def _curves(out: Path, runs: Path, part: str, rows: list[dict[str, str]]) -> dict[str, list[tuple[int, float, float]]]:
    """Per seed: (epoch, training loss, test error) at the evaluation epochs, from the events or curves.csv."""
    path = out / part / "curves.csv"
    if all(_run_dir(runs, part, r).is_dir() for r in rows):
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seed", "epoch", "train_loss", "test_err"])
            for r in rows:
                scalars = read_scalars(_run_dir(runs, part, r))
                epochs = epoch_of_step(scalars)
                loss = {epochs[s]: v for s, v in scalars["train/loss"]}
                for step, err in scalars["val/err"]:
                    writer.writerow([r["seed"], epochs[step], loss[epochs[step]], err])
    curves: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    with path.open(newline="") as handle:
        for c in csv.DictReader(handle):
            curves[c["seed"]].append((int(c["epoch"]), float(c["train_loss"]), float(c["test_err"])))
    return {seed: sorted(points) for seed, points in curves.items()}


def _anytime(out: Path, runs: Path, part: str, rows: list[dict[str, str]]) -> dict[int, list[float]] | None:
    """Snapshot test error per period end (epoch) over seeds, from the events or anytime.csv (None: neither exists)."""
    path = out / part / "anytime.csv"
    if all(_run_dir(runs, part, r).is_dir() for r in rows):
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seed", "epoch", "anytime_err"])
            for r in rows:
                for epoch, err in read_scalars(_run_dir(runs, part, r))["anytime/err"]:
                    writer.writerow([r["seed"], epoch, err])
    if not path.is_file():
        return None
    errs: dict[int, list[float]] = defaultdict(list)
    with path.open(newline="") as handle:
        for a in csv.DictReader(handle):
            errs[int(a["epoch"])].append(float(a["anytime_err"]))
    return dict(errs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs/replication"))
    parser.add_argument("--out", type=Path, default=Path("docs/replication"))
    args = parser.parse_args(argv)
    table: list[dict[str, object]] = []
    missing: list[str] = []  # parts whose data is lost, not merely not run yet: the exit status says so

    def load(part: str) -> list[dict[str, str]] | None:
        path = args.out / part / "results.csv"
        if not path.is_file():
            print(f"{part}: missing ({path} not written yet: run docs/replication/run_suite.sh)")
            return None
        rows = read_results(path)
        done = complete_rows(rows)
        if len(done) < len(rows):
            print(f"{part}: {len(rows) - len(done)} of {len(rows)} cells not complete; using the {len(done)} that are")
        return done

    def record(claim: str, measure: str, value: float, lo: float, hi: float, verdict: str, n: str) -> None:
        table.append({"claim": claim, "measure": measure, "value": value, "lo": lo, "hi": hi, "seeds": n,
                      "verdict": verdict})
        print(f"{claim} | {measure}: {value:+.4f} [{lo:+.4f}, {hi:+.4f}] ({n}) -> {verdict}")

    # Figs. 1/3
    adam, adamw = load("fig13_adam"), load("fig13_adamw")
    if adam and adamw:
        for name, rows in (("adam", adam), ("adamw", adamw)):
            m, lo, hi = mean_interval([float(r["final_test_err"]) for r in rows])
            print(f"fig1 {name}: test error {100 * m:.2f} % [{100 * lo:.2f}, {100 * hi:.2f}] over {len(rows)} seeds")
        d, lo, hi = difference_interval([float(r["final_test_err"]) for r in adam],
                                        [float(r["final_test_err"]) for r in adamw])
        verdict = "AdamW better" if lo > 0 else ("Adam better" if hi < 0 else "no difference shown")
        record("fig1", "test error Adam - AdamW", d, lo, hi, verdict, f"{len(adam)} / {len(adamw)} seeds")
        curves = {name: _curves(args.out, args.runs, f"fig13_{name}", rows) for name, rows in (("adam", adam),
                                                                                             ("adamw", adamw))}
        level = max(min(p[1] for p in points) for c in curves.values() for points in c.values())
        at = {name: [error_at_loss([p[1] for p in pts], [p[2] for p in pts], level) for pts in c.values()]
              for name, c in curves.items()}
        for name, errs in at.items():
            m, lo, hi = mean_interval(errs)
            print(f"fig3 {name}: test error at training loss {level:.4f}: {100 * m:.2f} % "
                  f"[{100 * lo:.2f}, {100 * hi:.2f}]")
        d, lo, hi = difference_interval(at["adam"], at["adamw"])
        verdict = "AdamW better" if lo > 0 else ("Adam better" if hi < 0 else "no difference shown")
        record("fig3", f"test error at training loss {level:.4f}, Adam - AdamW", d, lo, hi, verdict,
               f"{len(at['adam'])} / {len(at['adamw'])} seeds")

    # Fig. 4
    for restarts, cosine in (("adamwr", "adamw"), ("sgdwr", "sgdw")):
        wr, cos = load(f"fig4_{restarts}"), load(f"fig4_{cosine}_cosine")
        if not (wr and cos):
            continue
        snapshots = _anytime(args.out, args.runs, f"fig4_{restarts}", wr)
        if snapshots is None:
            missing.append(f"fig4_{restarts}")
            print(f"fig4_{restarts}: missing snapshot errors: neither its run directories under {args.runs} nor "
                  f"{args.out / f'fig4_{restarts}' / 'anytime.csv'} exist; re-run its sweep (run_suite.sh) and "
                  "summarize again")
            continue
        by_length: dict[int, list[float]] = defaultdict(list)
        for r in cos:
            by_length[int(r[EPOCHS])].append(float(r["final_test_err"]))
        for epoch in sorted(by_length):
            if epoch not in snapshots:
                print(f"fig4 {restarts}: no snapshot at epoch {epoch}")
                continue
            d, lo, hi = difference_interval(snapshots[epoch], by_length[epoch])
            ms, mc = float(np.mean(snapshots[epoch])), float(np.mean(by_length[epoch]))
            verdict = "restarts cost" if lo > 0 else "no cost shown"
            measure = f"{restarts} snapshot - {cosine} cosine at epoch {epoch} ({100 * ms:.2f} vs {100 * mc:.2f} %)"
            record("fig4", measure, d, lo, hi, verdict, f"{len(snapshots[epoch])} / {len(by_length[epoch])} seeds")

    # Appendix B.1: the run lengths of b1_adamw (T = 25, 100 epochs), b1_adamw_t50 (T = 50), b1_adamw_t200 (T = 200)
    b1 = [r for part in B1_PARTS for r in (load(part) or [])]
    if b1:
        lengths = sorted({float(r[EPOCHS]) for r in b1})
        decays = sorted({float(r[WD]) for r in b1})
        cells: dict[tuple[float, float], list[float]] = defaultdict(list)
        for r in b1:
            cells[(float(r[EPOCHS]), float(r[WD]))].append(float(r["final_test_err"]))
        width = max(len(v) for v in cells.values())
        seed_values = np.full((len(lengths), len(decays), width), np.nan)
        for (t, wd), errs in cells.items():
            seed_values[lengths.index(t), decays.index(wd), : len(errs)] = errs
        room = headroom(seed_values)
        for t, h in zip(lengths, room, strict=True):
            use = "used" if h >= MIN_HEADROOM else f"left out: under {100 * MIN_HEADROOM:g} points, decay does not act"
            print(f"b1 T = {t:g}: headroom {100 * h:.2f} points (smallest decay - best) -> {use}")
        used = [i for i, h in enumerate(room) if h >= MIN_HEADROOM]
        label = "T = " + ", ".join(f"{lengths[i]:g}" for i in used) if used else "no run length"
        n = f"{width} seeds; {label}"
        if len(used) < 2:
            print("b1: fewer than two run lengths where decay acts: no slope")
            s = {"slope": math.nan, "lo": math.nan, "hi": math.nan}
            raw = norm = "no slope: decay acts at < 2 run lengths"
        else:
            s = run_length_slope([lengths[i] for i in used], decays, seed_values[used])
            edge = " (an optimum at the grid edge)" if s["edge"] else ""
            optima = ", ".join(f"T = {lengths[i]:g}: log2 lambda* {s[f'log2_opt_T{lengths[i]:g}']:.2f}" for i in used)
            print(f"b1 optima: {optima}{edge}")
            raw = "raw optimum moves" if s["lo"] > 0 or s["hi"] < 0 else "raw optimum does not move"
            lo, hi = s["lo"] + NORM_SLOPE_OFFSET, s["hi"] + NORM_SLOPE_OFFSET
            norm = ("normalized optimum stays put" if lo <= 0 <= hi and hi - lo <= DECOUPLED_MAX_WIDTH
                    else "normalized optimum moves" if lo > 0 or hi < 0 else "interval too wide to tell")
        record("b1", "d log2 lambda* / d log2 T (raw)", s["slope"], s["lo"], s["hi"], raw, n)
        lo, hi, slope = (s[k] + NORM_SLOPE_OFFSET for k in ("lo", "hi", "slope"))
        record("b1", "d log2 lambda_norm* / d log2 T", slope, lo, hi, norm, n)

    with (args.out / "suite_summary.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["claim", "measure", "value", "lo", "hi", "seeds", "verdict"])
        writer.writeheader()
        writer.writerows(table)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
